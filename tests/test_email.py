"""Email against aiosmtpd on loopback: STARTTLS or implicit TLS, AUTH, and the MIME parts of the mail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from pipeline.domain.integrations import EmailConfig
from senders.base import DeliveryError, SenderContext
from senders.catalog import create_sender
from tests.channel_servers import MailServer, self_signed_certificate
from tests.test_channels import EXTERNAL_URL, alert, notification

# The implicit-TLS and plain test servers take AUTH without STARTTLS, which aiosmtpd warns about.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def starttls_server(certificate) -> Iterator[MailServer]:
    server = MailServer(*certificate, user="alerts", password="s3cret").start()
    yield server
    server.stop()


def email_config(server: MailServer, certificate, **settings) -> EmailConfig:
    return EmailConfig.model_validate({
        "to": "oncall@example.test, Team Lead <lead@example.test>", "from": "alerts@example.test",
        "smarthost": f"127.0.0.1:{server.port}", "auth_username": "alerts", "auth_password": "s3cret",
        "tls_config": {"ca_file": str(certificate[0])}, **settings,
    })


async def send(config: EmailConfig, *alerts) -> None:
    async with aiohttp.ClientSession() as http:
        await create_sender(config, SenderContext(http, EXTERNAL_URL)).send(notification(*alerts))


async def test_starttls_auth_and_mime_parts(starttls_server, certificate, tmp_path):
    (tmp_path / "password").write_text("s3cret\n")
    config = email_config(starttls_server, certificate, auth_password=None,
                          auth_password_file=str(tmp_path / "password"), headers={"X-Tenant": "shop"}, language="ko")
    await send(config, alert("a", summary="디스크 <가득> & 느림"), alert("b", "resolved"))
    [mail] = starttls_server.mails
    assert mail.tls and mail.login == "alerts"
    assert mail.sender == "alerts@example.test" and mail.recipients == ["oncall@example.test", "lead@example.test"]
    message = mail.message
    assert message["Subject"] == "[발생:1] PodCrash (shop, critical)" and message["X-Tenant"] == "shop"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "요약: 디스크 <가득> & 느림" in text and "해결됨 PodCrash" in text
    assert "디스크 &lt;가득&gt; &amp; 느림" in html and '<a href="http://prometheus.test/graph?pod=a">' in html
    assert f'<a href="{EXTERNAL_URL}">' in html


async def test_implicit_tls(certificate):
    server = MailServer(*certificate, user="alerts", password="s3cret", implicit_tls=True).start()
    try:
        await send(email_config(server, certificate, force_implicit_tls=True))
        [mail] = server.mails
        assert mail.tls and mail.login == "alerts"
    finally:
        server.stop()


async def test_wrong_password_is_not_retryable(starttls_server, certificate):
    with pytest.raises(DeliveryError) as failed:
        await send(email_config(starttls_server, certificate, auth_password="wrong"))
    assert not failed.value.retryable and "535" in str(failed.value) and "wrong" not in str(failed.value)
    assert failed.value.reason == "auth"
    assert starttls_server.mails == []


async def test_require_tls_refuses_a_server_without_starttls(certificate):
    plain = MailServer(*certificate, user="alerts", password="s3cret", tls=False).start()
    try:
        with pytest.raises(DeliveryError):
            await send(email_config(plain, certificate))
        assert plain.mails == []
        await send(email_config(plain, certificate, require_tls=False))  # allowed explicitly: sent in clear
        assert len(plain.mails) == 1 and not plain.mails[0].tls
    finally:
        plain.stop()


async def test_unreachable_server_is_retryable(certificate):
    from pipeline.kafka.broker import free_port

    config = EmailConfig.model_validate({"to": "a@example.test", "from": "b@example.test",
                                         "smarthost": f"127.0.0.1:{free_port()}", "timeout": "2s"})
    with pytest.raises(DeliveryError) as failed:
        await send(config)
    assert failed.value.retryable

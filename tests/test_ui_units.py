"""The web UI's parts that need no browser: sealed sessions, keys, languages, redirects, the editor."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from pipeline.domain.config.ui import SESSION_KEY_ENV, UISettings
from pipeline.domain.principals import Principal
from pipeline.domain.scope import Forbidden, narrowed
from pipeline.ingest.ui import i18n
from pipeline.ingest.ui.alerts import with_label
from pipeline.ingest.ui.pages import local_page
from pipeline.ingest.ui.session import Session, SessionCodec
from pipeline.ingest.ui.silences import SilenceForm

KEY, OTHER = "k" * 40, "o" * 40
TEMPLATES = Path(__file__).resolve().parent.parent / "pipeline" / "ui" / "templates"


def test_a_sealed_session_opens_only_untouched_with_a_known_key_and_within_its_lifetime():
    codec = SessionCodec([KEY], lifetime=3600)
    session = Session.new("alice")
    token = codec.seal(session)
    assert codec.open(token) == session
    assert "alice" not in token and session.csrf not in token  # encrypted, not only signed
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    assert codec.open(tampered) is None
    assert SessionCodec([OTHER], 3600).open(token) is None
    assert codec.open(token, now=time.time() + 3601) is None
    assert codec.open("not a token") is None


def test_key_rotation_opens_sessions_sealed_with_the_old_key():
    old = SessionCodec([OTHER], 3600).seal(Session.new("bob"))
    rotated = SessionCodec([KEY, OTHER], 3600)
    assert rotated.open(old) is not None
    assert SessionCodec([KEY], 3600).open(rotated.seal(Session.new("bob"))) is not None


def test_a_log_in_gets_a_new_session_id_and_token():
    before, after = Session.new(), Session.new("alice")
    assert before.sid != after.sid and before.csrf != after.csrf and after.user == "alice"


def test_session_keys_from_a_file_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(SESSION_KEY_ENV, raising=False)
    assert UISettings().session_keys == []
    keys = tmp_path / "keys"
    keys.write_text(f"{KEY}\n{OTHER}\n")
    assert UISettings(session_key_file=str(keys)).session_keys == [KEY, OTHER]
    monkeypatch.setenv(SESSION_KEY_ENV, KEY)
    assert UISettings().session_keys == [KEY]
    keys.write_text("short\n")
    with pytest.raises(ValueError, match="at least 32 characters"):
        UISettings(session_key_file=str(keys))
    with pytest.raises(ValueError, match="cannot read"):
        UISettings(session_key_file=str(tmp_path / "missing"))
    assert KEY not in repr(UISettings()) and KEY not in str(UISettings().model_dump())


def test_language_packs_have_the_same_words_and_cover_the_templates():
    def words(language: str) -> set[str]:
        text = (i18n.PACKS / f"{language}.yaml").read_text(encoding="utf-8")
        return {line.partition(":")[0] for line in text.splitlines() if line and not line.startswith("#")}

    english = words("en")
    singular = {word for word in english if word.endswith("_one")}  # English's "1 alert" forms only
    assert words("ko") == words("zh") == english - singular
    used = {word for path in TEMPLATES.glob("*.j2") for word in re.findall(r"\bt\('([a-z0-9_]+)'", path.read_text())}
    prefixed = {word for word in used if word.endswith("_")}
    assert used - prefixed <= english, sorted(used - prefixed - english)
    for prefix in prefixed:
        assert any(word.startswith(prefix) for word in english), prefix
    assert i18n.translator("en")("n_alerts", n=1) == "1 alert" and i18n.translator("ko")("n_alerts", n=1) == "알림 1건"


class FakeRequest:
    def __init__(self, query: dict[str, str], cookies: dict[str, str], accept: str):
        self.query, self.cookies, self.headers = query, cookies, {"Accept-Language": accept}


@pytest.mark.parametrize(("query", "cookies", "accept", "chosen"), [
    ({}, {}, "ko-KR,ko;q=0.9,en;q=0.8", "ko"),
    ({}, {}, "fr-FR,zh-CN;q=0.7,en;q=0.5", "zh"),
    ({}, {}, "fr", "en"),
    ({}, {"ap_lang": "zh"}, "ko", "zh"),
    ({"lang": "ko"}, {"ap_lang": "zh"}, "en", "ko"),
    ({"lang": "xx"}, {}, "", "en"),
])
def test_the_language_is_the_query_then_the_cookie_then_the_browser(query, cookies, accept, chosen):
    assert i18n.choose(FakeRequest(query, cookies, accept), "en") == chosen  # type: ignore[arg-type]


@pytest.mark.parametrize(("target", "expected"), [
    ("/ui/silences?state=expired", "/ui/silences?state=expired"),
    ("//evil.example/ui/", None),
    ("https://evil.example/", None),
    ("/ui/\\evil", None),
    ("/api/v2/silences", None),
    (None, None),
])
def test_after_log_in_or_a_save_only_pages_of_the_ui(target, expected):
    assert local_page(target) == expected


def test_a_clicked_label_is_added_to_the_filter_once():
    assert with_label("", "namespace", "team-a") == '{namespace="team-a"}'
    assert with_label('{severity="critical"}', "namespace", "a") == '{severity="critical", namespace="a"}'
    assert with_label('{namespace="a"}', "namespace", "a") == '{namespace="a"}'
    assert with_label("{broken", "job", 'x"y') == '{job="x\\"y"}'


def test_the_silence_editor_reads_durations_and_names_the_bad_row():
    form = SilenceForm(matchers=[("alertname", "=", "X"), ("", "=", "")], starts="2030-01-01T00:00:00Z", ends="2h",
                       comment="c")
    silence = form.to_silence(Principal("alice", "tenant", "team-a"), auth_on=True)
    assert silence.ends_at - silence.starts_at == 7200 and silence.created_by == "alice"
    assert [str(m) for m in silence.matchers] == ['alertname="X"']
    with pytest.raises(ValueError, match="matcher 2"):
        SilenceForm(matchers=[("a", "=", "1"), ("b", "=~", "(")]).parsed_matchers()
    with pytest.raises(ValueError, match="comment"):
        SilenceForm(matchers=[("a", "=", "1")], ends="1h").to_silence(Principal("x", "admin"), auth_on=True)
    open_form = SilenceForm(matchers=[("a", "=", "1")], ends="1h", comment="c", created_by="someone")
    assert open_form.to_silence(Principal("anonymous", "admin"), auth_on=False).created_by == "someone"
    assert open_form.to_silence(Principal("root", "admin"), auth_on=True).created_by == "root"


def test_only_an_admin_narrows_to_another_tenant():
    admin, alice = Principal("root", "admin"), Principal("alice", "tenant", "team-a")
    assert narrowed(admin, "team-b") == Principal("root", "tenant", "team-b")
    assert narrowed(alice, "team-a") is alice
    with pytest.raises(Forbidden):
        narrowed(alice, "team-b")


def test_a_new_silence_never_starts_ahead_of_now():
    now = 1_800_000_000.9  # a start rounded up would be pending for a tenth of a second
    starts, ends = SilenceForm.blank(now).times()
    assert starts == 1_800_000_000 <= now and ends - starts == 7200

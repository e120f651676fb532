"""Alertmanager's ``--web.config.file`` (prometheus/exporter-toolkit): TLS and basic-auth users.

The same file an Alertmanager runs with works here, so that Prometheus' ``alerting.alertmanagers``
``tls_config``/``basic_auth`` and amtool's ``--http.config.file`` need no change. Keys we cannot honour
are refused rather than ignored: a TLS option that silently does nothing is a hole.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from pipeline.domain.integration_base import StrictModel

_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
             "TLS13": ssl.TLSVersion.TLSv1_3}
#: exporter-toolkit's client_auth_type values Python's ssl can enforce (it cannot ask for a certificate
#: without verifying it, so RequestClientCert and RequireAnyClientCert are refused).
_CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}


class TLSServerConfig(StrictModel):
    cert_file: str
    key_file: str
    client_auth_type: Literal["NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"] = "NoClientCert"
    client_ca_file: str | None = None
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] | None = None


class HTTPServerConfig(StrictModel):
    #: Accepted for compatibility; aiohttp serves HTTP/1.1 only.
    http2: bool = True
    #: Headers added to every answer (exporter-toolkit's security headers).
    headers: dict[str, str] = Field(default_factory=dict)


class WebConfig(StrictModel):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    #: user -> bcrypt hash, as ``htpasswd -nBC 10 user`` prints it.
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context, or None for plain HTTP; raises ValueError naming a bad file."""
        tls = self.tls_server_config
        if tls is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = _VERSIONS[tls.min_version]
        if tls.max_version:
            context.maximum_version = _VERSIONS[tls.max_version]
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file)
            if tls.client_ca_file:
                context.load_verify_locations(tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"tls_server_config: cannot load the certificate, key or client CA: {exc}") from None
        context.verify_mode = _CLIENT_AUTH[tls.client_auth_type]
        if context.verify_mode != ssl.CERT_NONE and not tls.client_ca_file:
            raise ValueError(f"tls_server_config: client_auth_type {tls.client_auth_type} needs client_ca_file")
        return context


def load_web_config(path: Path) -> WebConfig:
    """Read and check the file (relative paths in it are relative to it, as exporter-toolkit reads them)."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        config = WebConfig.model_validate(raw)
    except OSError as exc:
        raise ValueError(f"cannot read the web config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: "
                             f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: {problems}") from None
    tls = config.tls_server_config
    if tls is not None:
        for name in ("cert_file", "key_file", "client_ca_file"):
            value = getattr(tls, name)
            if value and not Path(value).is_absolute():
                setattr(tls, name, str(path.parent / value))
    for user, hashed in config.basic_auth_users.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ValueError(f"{path}: basic_auth_users.{user}: expected a bcrypt hash ($2y$...), not a password")
    config.ssl_context()  # refuse a bad certificate at load, not at the first connection
    return config

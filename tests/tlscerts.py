"""Certificates made by a test with openssl: a CA, and leaf certificates for 127.0.0.1 signed by it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path

    def pem(self) -> Path:
        """Key and certificate in one PEM file (Kafka's PEM keystore)."""
        path = self.cert.with_suffix(".pem")
        path.write_text(self.key.read_text() + self.cert.read_text())
        return path


class TestCA:
    """A throw-away CA in ``directory``; :meth:`issue` signs certificates valid for 127.0.0.1 and localhost,
    usable by servers and clients alike (the subject CN names a client principal)."""

    __test__ = False  # not a test class for pytest

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert, self.key = self.dir / "ca.crt", self.dir / "ca.key"
        _openssl("req", "-x509", *_EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test-ca",
                 cwd=self.dir)

    def issue(self, name: str, common_name: str) -> Pair:
        ext = self.dir / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
        _openssl("req", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={common_name}",
                 cwd=self.dir)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name, cwd=self.dir)
        return Pair(self.dir / f"{name}.crt", self.dir / f"{name}.key")

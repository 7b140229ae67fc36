"""Optional HTTPS with a self-signed certificate made at first start.

Uses the ``cryptography`` package when it is installed, otherwise the ``openssl`` command. The
key is 0600 under ``<data-dir>/tls/``; the certificate's SHA-256 fingerprint is logged and shown in
the panel so that the operator can check it against what the browser shows.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.admin.secretfiles import write_secret
from app.errors import ConfigError

_DAYS = 3650


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    fingerprint: str


def fingerprint(cert_pem: bytes) -> str:
    der = ssl.PEM_cert_to_DER_cert(cert_pem.decode())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _with_cryptography(cn: str) -> tuple[bytes, bytes]:
    import datetime
    import importlib

    # Imported by name: an optional package, typed as Any where it is absent.
    x509: Any = importlib.import_module("cryptography.x509")
    hashes: Any = importlib.import_module("cryptography.hazmat.primitives.hashes")
    serialization: Any = importlib.import_module("cryptography.hazmat.primitives.serialization")
    ec: Any = importlib.import_module("cryptography.hazmat.primitives.asymmetric.ec")
    NameOID: Any = importlib.import_module("cryptography.x509.oid").NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return bytes(cert.public_bytes(serialization.Encoding.PEM)), bytes(key_pem)


def _with_openssl(cn: str) -> tuple[bytes, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        key_path, cert_path = Path(tmp) / "key.pem", Path(tmp) / "cert.pem"
        try:
            subprocess.run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    str(_DAYS),
                    "-subj",
                    f"/CN={cn}",
                    "-keyout",
                    str(key_path),
                    "-out",
                    str(cert_path),
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ConfigError(f"cannot make a TLS certificate with openssl: {exc}") from exc
        return cert_path.read_bytes(), key_path.read_bytes()


def ensure_certificate(tls_dir: Path) -> TlsFiles:
    """The certificate and key, made now if they do not exist yet."""
    cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
    if not (cert.exists() and key.exists()):
        cn = socket.gethostname() or "appliance"
        try:
            cert_pem, key_pem = _with_cryptography(cn)
        except ImportError:
            cert_pem, key_pem = _with_openssl(cn)
        write_secret(key, key_pem)
        tls_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        cert.write_bytes(cert_pem)
        os.chmod(cert, 0o644)
    return TlsFiles(cert, key, fingerprint(cert.read_bytes()))

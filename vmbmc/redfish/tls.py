"""A self-signed certificate for the HTTPS listener when none is given (contracts §6).

Written to a fresh temporary directory (in a pod: the emptyDir at /tmp, the root filesystem being
read-only), key file mode 0600. ECDSA P-256: fast to generate and accepted by Go, urllib3 and curl.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_certificate(
    names: tuple[str, ...] = (), directory: str | os.PathLike[str] | None = None, days: int = 825
) -> tuple[Path, Path]:
    """Generate a certificate and key; returns (cert_path, key_path).

    `names` are extra DNS names or IP addresses for the subjectAltName, besides localhost,
    127.0.0.1, ::1 and this host's name.
    """
    out = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="vmbmc-tls-"))
    key = ec.generate_private_key(ec.SECP256R1())
    hostname = socket.gethostname()
    alt: list[x509.GeneralName] = []
    for name in dict.fromkeys(("localhost", hostname, "127.0.0.1", "::1", *names)):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vmbmc"),
        x509.NameAttribute(NameOID.COMMON_NAME, (names[0] if names else hostname)[:64]),
    ])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = out / "tls.crt", out / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ))
    return cert_path, key_path

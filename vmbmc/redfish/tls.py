"""A self-signed certificate for the HTTPS listener when none is given (`--tls-cert`/`--tls-key` absent).

Written to a fresh temporary directory (in a pod: the emptyDir at /tmp, the root filesystem being
read-only), key file mode 0600. ECDSA P-256: fast to generate and accepted by Go, urllib3 and curl.

A kbmc generates it in a short-lived child process (`self_signed_certificate_apart`): importing
`cryptography` would add ~10 MiB to the RSS of every kbmc pod for a job done once (docs/kbmc.md, "Memory").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

CHILD_TIMEOUT = 60.0


def self_signed_certificate(
    names: tuple[str, ...] = (), directory: str | os.PathLike[str] | None = None, days: int = 825
) -> tuple[Path, Path]:
    """Generate a certificate and key; returns (cert_path, key_path).

    `names` are extra DNS names or IP addresses for the subjectAltName, besides localhost,
    127.0.0.1, ::1 and this host's name.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="vmbmc-tls-"))
    key = ec.generate_private_key(ec.SECP256R1())
    hostname = socket.gethostname()
    alt: list[x509.GeneralName] = []
    for name in dict.fromkeys(("localhost", hostname, "127.0.0.1", "::1", *names)):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vmbmc"),
            x509.NameAttribute(NameOID.COMMON_NAME, (names[0] if names else hostname)[:64]),
        ]
    )
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
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return cert_path, key_path


async def self_signed_certificate_apart(names: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """`self_signed_certificate(names)` run by a child process (`python -m vmbmc.redfish.tls DIR NAME...`)
    into a fresh temporary directory; returns (cert_path, key_path)."""
    out = Path(tempfile.mkdtemp(prefix="vmbmc-tls-"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",  # not the working directory on sys.path: a folder named `vmbmc` there would shadow us
        "-m",
        "vmbmc.redfish.tls",
        str(out),
        *names,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        err = f"no certificate within {CHILD_TIMEOUT:g} s".encode()
    if proc.returncode != 0:
        shutil.rmtree(out, ignore_errors=True)
        raise RuntimeError(
            f"generating a self-signed certificate failed: {err.decode(errors='replace').strip()}"
        )
    return out / "tls.crt", out / "tls.key"


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m vmbmc.redfish.tls DIRECTORY [NAME...]")
    self_signed_certificate(tuple(sys.argv[2:]), sys.argv[1])

"""Self-signed certificate authorities and certificates for TLS tests (the ``cryptography`` package).

Example::

    ca = CertificateAuthority("test ca")
    ca.write_ca(tmp / "ca.pem")
    ca.issue("jobmanager", ips=["127.0.0.1"]).write(tmp / "jm.pem")   # chain + key in one PEM
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))


@dataclass
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def write(self, path: Path) -> Path:
        """One PEM file holding the certificate and the private key (what a keystore key names)."""
        key = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM) + key)
        path.chmod(0o600)
        return path


class CertificateAuthority:
    """A self-signed CA that issues server-and-client certificates for IP addresses and names."""

    def __init__(self, common_name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        builder = _validity(x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
                            .public_key(self.key.public_key()).serial_number(x509.random_serial_number()))
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False), critical=True)
        self.cert = builder.sign(self.key, hashes.SHA256())

    def write_ca(self, path: Path) -> Path:
        """The CA certificate as PEM (what a truststore key names)."""
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(self, common_name: str, ips: list[str] = (), dns: list[str] = ()) -> Issued:  # type: ignore[assignment]
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        names += [x509.DNSName(d) for d in dns]
        builder = _validity(x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(self.cert.subject)
                            .public_key(key.public_key()).serial_number(x509.random_serial_number()))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        return Issued(builder.sign(self.key, hashes.SHA256()), key)

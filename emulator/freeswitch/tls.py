"""Local certificates for SIP over secure WebSocket (and the DTLS fingerprint of SDP answers).

The real client always dials ``wss://serverName:serverPort``, so the emulator serves TLS by default
with certificates it makes itself on first start: a local CA (``cometbench-ca.pem``) and a server
certificate for ``127.0.0.1``, ``::1`` and ``localhost`` (plus any configured public name) signed by
it, kept in the certificate directory (beside the state file; a fresh temporary directory for a
``:memory:`` state).  To make a browser accept the server:

* trust the CA: import ``cometbench-ca.pem`` (Chromium: ``certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n
  cometbench -i cometbench-ca.pem``; node: ``NODE_EXTRA_CA_CERTS=cometbench-ca.pem``); or
* tell the browser to ignore certificate errors (Playwright ``ignore_https_errors=True``, Chromium
  ``--ignore-certificate-errors``).

The media certificate whose SHA-256 fingerprint goes into ``a=fingerprint`` is a separate
self-signed EC key, as WebRTC endpoints use.

For a virtual run (``fixed_lengths=True``) the CA and server keys are RSA-2048 and the serial numbers
have a fixed length, so every TLS handshake has the same length from one run to the next (an ECDSA
signature's DER length varies by a byte or two): under link conditions with a bandwidth limit,
handshake bytes cost time, and a virtual run must give the same journal for the same seed.  RSA key
generation is slow, so one process makes its RSA keys once and signs fresh certificates with them.
Real time keeps EC P-256 keys, whose handshakes cost a fraction of RSA's CPU.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "cometbench-ca.pem"
CA_KEY_FILE = "cometbench-ca.key"
CERT_FILE = "server.pem"
KEY_FILE = "server.key"


@dataclass
class Certificates:
    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    media_fingerprint: str  # "AB:CD:..." SHA-256 of the media (DTLS) certificate

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the local CA (tests, virtual clients)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_cert))
        return ctx


_KEYS: dict[str, rsa.RSAPrivateKey] = {}


def _rsa_key(role: str) -> rsa.RSAPrivateKey:
    """This process's RSA-2048 key for ``role`` (made once; generation takes tens of milliseconds)."""
    key = _KEYS.get(role)
    if key is None:
        key = _KEYS[role] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key


def _serial() -> int:
    """A random serial number of a fixed DER length (63 bits, the top one set)."""
    return x509.random_serial_number() >> 96 | (1 << 62)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cometbench"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(path: Path, key: PrivateKeyTypes) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def fingerprint(cert: x509.Certificate) -> str:
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def ensure_certificates(directory: str | Path, names: list[str] | None = None, *,
                        fixed_lengths: bool = False) -> Certificates:
    """Load the CA and server certificate from ``directory``, making them if missing or if the
    server certificate does not cover ``names``; ``fixed_lengths``: RSA keys and fixed-length serials
    (a virtual run, see the module docstring)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    wanted = sorted({"127.0.0.1", "::1", "localhost", *(names or [])})
    now = _dt.datetime.now(_dt.UTC)
    ca_path, ca_key_path = directory / CA_FILE, directory / CA_KEY_FILE
    if ca_path.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        ca_key = cast(CertificateIssuerPrivateKeyTypes,   # the CA key this module wrote (RSA or EC)
                      serialization.load_pem_private_key(ca_key_path.read_bytes(), None))
    else:
        ca_key = _rsa_key("ca") if fixed_lengths else ec.generate_private_key(ec.SECP256R1())
        ca_cert = (x509.CertificateBuilder().subject_name(_name("cometbench local CA")).issuer_name(
            _name("cometbench local CA")).public_key(ca_key.public_key()).serial_number(_serial())
            .not_valid_before(now - _dt.timedelta(days=1)).not_valid_after(now + _dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(ca_key, hashes.SHA256()))
        _write_key(ca_key_path, ca_key)
        ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    fresh = False
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            have = ({str(v) for v in san.get_values_for_type(x509.IPAddress)}
                    | set(san.get_values_for_type(x509.DNSName)))
        except x509.ExtensionNotFound:
            have = set()
        fresh = not set(wanted) <= have or cert.not_valid_after_utc < now + _dt.timedelta(days=7)
    else:
        fresh = True
    if fresh:
        key = _rsa_key("server") if fixed_lengths else ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(wanted[0])).issuer_name(ca_cert.subject)
                .public_key(key.public_key()).serial_number(_serial())
                .not_valid_before(now - _dt.timedelta(days=1)).not_valid_after(now + _dt.timedelta(days=825))
                .add_extension(_san(wanted), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(ca_key, hashes.SHA256()))
        _write_key(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    media_key = ec.generate_private_key(ec.SECP256R1())
    media = (x509.CertificateBuilder().subject_name(_name("cometbench-media")).issuer_name(_name("cometbench-media"))
             .public_key(media_key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - _dt.timedelta(days=1)).not_valid_after(now + _dt.timedelta(days=30))
             .sign(media_key, hashes.SHA256()))
    return Certificates(directory, ca_path, cert_path, key_path, fingerprint(media))

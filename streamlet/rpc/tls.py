"""TLS for the REST API and the internal connections (RPC and data plane), from the configuration.

Flink's key names, with PEM files where Flink has Java keystores:

* ``security.ssl.rest.enabled``: the REST API serves HTTPS with ``security.ssl.rest.keystore``
  (a PEM file with the certificate chain and the private key); clients (the CLI) verify it with
  ``security.ssl.rest.truststore`` (PEM CA certificates; unset: the system's CAs);
* ``security.ssl.internal.enabled``: RPC (``wss://``) and data connections use mutual TLS 1.2:
  every process presents ``security.ssl.internal.keystore`` and accepts only peers whose
  certificate ``security.ssl.internal.truststore`` verifies, in both directions;
* ``security.ssl.verify-hostname``: clients check the peer's certificate names the address they
  connect to (an IP address needs an IP subject alternative name).

Contexts are built once per process at start (file reads, blocking) and are immutable after.
A file that is missing or not PEM is a :class:`~streamlet.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import ssl
from typing import Any, Mapping

from streamlet.errors import ConfigError


def _load_chain(ctx: ssl.SSLContext, path: str | None, key: str) -> None:
    if not path:
        raise ConfigError(f"{key} is not set; give it a PEM file with the certificate chain and the private key")
    try:
        ctx.load_cert_chain(path)
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path!r} does not exist; give a PEM file with the certificate and the key") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{key}: cannot load {path!r} as a PEM certificate chain with its private key: {exc}") from None


def _load_trust(ctx: ssl.SSLContext, path: str | None, key: str) -> None:
    if not path:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH if ctx.check_hostname else ssl.Purpose.CLIENT_AUTH)
        return
    try:
        ctx.load_verify_locations(cafile=path)
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path!r} does not exist; give a PEM file with the CA certificates") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{key}: cannot load {path!r} as PEM CA certificates: {exc}") from None


def rest_server_context(conf: Mapping[str, Any]) -> ssl.SSLContext | None:
    """The REST API's server context, or None when ``security.ssl.rest.enabled`` is false."""
    if not conf["security.ssl.rest.enabled"]:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, conf["security.ssl.rest.keystore"], "security.ssl.rest.keystore")
    return ctx


def rest_client_context(conf: Mapping[str, Any]) -> ssl.SSLContext | None:
    """What a REST client (the CLI) verifies the JobManager with, or None without REST TLS."""
    if not conf["security.ssl.rest.enabled"]:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = bool(conf["security.ssl.verify-hostname"])
    _load_trust(ctx, conf["security.ssl.rest.truststore"], "security.ssl.rest.truststore")
    return ctx


def internal_contexts(conf: Mapping[str, Any]) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """``(server, client)`` contexts of RPC and data connections (mutual TLS), or ``(None, None)``."""
    if not conf["security.ssl.internal.enabled"]:
        return None, None
    keystore, truststore = conf["security.ssl.internal.keystore"], conf["security.ssl.internal.truststore"]
    if not truststore:
        raise ConfigError("security.ssl.internal.truststore is not set; internal TLS is mutual, give the PEM "
                          "file of the CA that signed every jobmanager's and taskmanager's certificate")
    # TLS 1.2, as Flink's default security.ssl.protocol: a peer whose certificate is refused then
    # learns it in the handshake (an alert naming the reason), where TLS 1.3 only closes the
    # connection after it, which looks like a peer that is not up yet and would be retried forever
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = server.maximum_version = ssl.TLSVersion.TLSv1_2
    server.verify_mode = ssl.CERT_REQUIRED
    _load_chain(server, keystore, "security.ssl.internal.keystore")
    _load_trust(server, truststore, "security.ssl.internal.truststore")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.check_hostname = bool(conf["security.ssl.verify-hostname"])
    _load_chain(client, keystore, "security.ssl.internal.keystore")
    _load_trust(client, truststore, "security.ssl.internal.truststore")
    return server, client


def describe_failure(exc: BaseException, peer: str, key: str) -> str | None:
    """A user-facing reason when ``exc`` (raised opening a connection to ``peer``) is a TLS
    failure that retrying cannot fix (an untrusted certificate, a refused one), else None.

    ``key`` names the truststore key to fix (``security.ssl.internal.truststore`` ...).
    """
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__ or getattr(cause, "os_error", None)
    if cause is None:
        return None
    # aiohttp wraps the ssl error in its own (which is an ssl.CertificateError too)
    cause = getattr(cause, "certificate_error", None) or getattr(cause, "os_error", None) or cause
    if isinstance(cause, ssl.SSLCertVerificationError):
        why = getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or str(cause)
        return (f"tls: the certificate of {peer} is not trusted ({why}); set {key} "
                "to the CA that signed it (and check security.ssl.verify-hostname against its names)")
    reason = str(getattr(cause, "reason", "") or cause)
    if "ALERT" in reason.upper() or "CERTIFICATE" in reason.upper():
        return (f"tls: {peer} refused this process's certificate ({reason}); set "
                f"{key.replace('truststore', 'keystore')} to a certificate signed by the CA {peer} trusts")
    if "WRONG_VERSION_NUMBER" in reason.upper() or "RECORD_LAYER" in reason.upper():
        return f"tls: {peer} does not speak TLS ({reason}); enable TLS on both sides or on neither"
    return None

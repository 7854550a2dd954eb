"""Bearer-token checks shared by the RPC server, the REST API and the data plane.

Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac


def bearer_ok(header: str | None, token: str | None) -> bool:
    """True when no token is configured, or ``header`` is ``Bearer <token>``."""
    if token is None:
        return True
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


def bearer_header(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header presenting ``token`` (empty without a token)."""
    return {"Authorization": f"Bearer {token}"} if token else {}

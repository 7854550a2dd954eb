"""Errors of the connectors."""

from __future__ import annotations

from streamlet.errors import FatalError


class ConnectorError(FatalError):
    """A connector cannot read or write its data (a missing or unreadable file, a bad replay line).

    The message names the source or sink node id, the file (and line or byte where it helps) and
    what to do about it.
    """

"""free_port: a free port, never one the process was given before (two calls in a row, a REST
and an RPC port, once got the same port and the jobmanager failed to bind the second)."""

from __future__ import annotations

import socket

from streamlet.runtime.minicluster import free_port


def test_ports_are_free_and_never_repeat() -> None:
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # free: bindable

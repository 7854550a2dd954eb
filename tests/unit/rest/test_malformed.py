"""Malformed requests that aiohttp parses on demand answer 400, never 500 (found by schemathesis)."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from streamlet.rest.app import create_app


class _Gateway:
    async def submit(self, submission: object) -> str:
        raise AssertionError("a malformed request must not reach the gateway")


def test_a_multipart_part_with_an_invalid_header_is_a_400() -> None:
    boundary = "b" * 16
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"".encode()
            + b"\xf3\xa9\xbc\xbf\x1b\x0eA\x12\xf1\xbe\x9c\x88C" + f"\"\r\n\r\nx\r\n--{boundary}--\r\n".encode())

    async def go() -> tuple[int, dict]:
        async with TestClient(TestServer(create_app(_Gateway()))) as client:  # type: ignore[arg-type]
            resp = await client.post("/jobs", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            return resp.status, await resp.json()

    status, answer = asyncio.run(go())
    assert status == 400, answer
    assert answer["errors"][0].startswith("malformed request")

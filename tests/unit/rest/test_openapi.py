"""The OpenAPI document: valid OpenAPI 3.1, rendered from the route table the app mounts, and the
copy in docs/ is current."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from streamlet.rest.app import create_app
from streamlet.rest.routes import ROUTES
from streamlet.rest.routes.meta import document_text
from streamlet.rest.spec import as_route, openapi_document

DOCS = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_document_is_valid_openapi() -> None:
    validate(openapi_document(ROUTES, "0"))


def test_every_route_is_in_the_document_and_mounted() -> None:
    doc = openapi_document(ROUTES, "0")
    app = create_app(object())  # type: ignore[arg-type]
    mounted = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    for entry in ROUTES:
        route = as_route(entry)
        assert route.method.lower() in doc["paths"][route.path]
        assert (route.method, route.path) in mounted
        assert (route.method, "/v1" + route.path) in mounted


def test_docs_copy_is_current() -> None:
    assert DOCS.read_text() == document_text(), "regenerate: python -m streamlet.rest > docs/openapi.json"


def test_served_document_equals_the_rendered_one() -> None:
    async def go() -> dict:
        async with TestClient(TestServer(create_app(object()))) as client:  # type: ignore[arg-type]
            resp = await client.get("/openapi.json")
            assert resp.status == 200
            return await resp.json()

    served = asyncio.run(go())
    assert served == openapi_document(ROUTES, served["info"]["version"])

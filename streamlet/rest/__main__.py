"""``python -m streamlet.rest``: print the OpenAPI document (docs/openapi.json is this output)."""

import sys

from streamlet.rest.routes.meta import document_text

sys.stdout.write(document_text())

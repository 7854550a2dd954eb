"""User functions of clicks.yaml.

``clickfns:from_csv`` in the pipeline is an import path: streamlet finds this module because it
sits next to the pipeline file (the pipeline's directory comes first on the import path).
"""


def from_csv(r):
    """A CSV row (every value a string) as a click record shaped like the JSON ones."""
    return {"user": r["user"], "page": r["page"], "ms": int(r["ms"]),
            "tags": r["tags"].split("|") if r["tags"] else []}

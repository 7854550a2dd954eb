"""streamlet: a distributed stream processor with the architecture of Apache Flink.

Public API::

    from streamlet import StreamEnvironment
    env = StreamEnvironment("wordcount")
    lines = env.source("lines", type="file", path="words.txt")
    words = lines.flat_map("words", "[{'word': w} for w in r.split()]")
    words.key_by("word").aggregate("counts", {"n": "count"}).sink("out", type="print")
    env.execute()
"""

from __future__ import annotations

from typing import Any

from streamlet.version import __version__
__all__ = ["StreamEnvironment", "__version__"]


def __getattr__(name: str) -> Any:
    # keep `import streamlet` cheap: the API is imported on first use
    if name == "StreamEnvironment":
        from streamlet.api.environment import StreamEnvironment

        return StreamEnvironment
    raise AttributeError(name)

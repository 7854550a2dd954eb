"""Limits of the REST API on what a client sends: :class:`RestLimits`.

Checked before the body is read when the client announces its size (``Content-Length``), and
while it is read otherwise, so an oversized request costs nothing but the refusal.  Each value is
a configuration key (see :mod:`streamlet.config`); errors name it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from streamlet.config import OPTIONS

_D = {o.key: o.default for o in OPTIONS}


@dataclass(frozen=True)
class RestLimits:
    """What one request may carry; defaults are the declared ones."""

    #: ``rest.server.max-content-length``: a whole request body, in bytes
    max_content_length: int = _D["rest.server.max-content-length"]
    #: ``rest.server.read-timeout``: seconds a client has to send its body
    read_timeout: float = 30.0
    #: ``web.upload.max-file-size``: one file submitted with a job
    max_file_size: int = _D["web.upload.max-file-size"]
    #: ``web.upload.max-files``: files submitted with one job
    max_files: int = _D["web.upload.max-files"]
    #: ``pipeline.yaml.max-bytes``: the pipeline YAML (also checked by the loader)
    max_yaml_bytes: int = _D["pipeline.yaml.max-bytes"]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RestLimits:
        """The limits of a :class:`~streamlet.config.Configuration`."""
        return cls(config["rest.server.max-content-length"], config["rest.server.read-timeout"],
                   config["web.upload.max-file-size"], config["web.upload.max-files"],
                   config["pipeline.yaml.max-bytes"])

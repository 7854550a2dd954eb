"""The version of streamlet (one place; the package facade and the REST API read it)."""

__version__ = "0.1.0"

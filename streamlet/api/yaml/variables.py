"""Pipeline variables: ``${NAME}`` and ``${NAME:-default}`` in YAML values.

Substitution runs on the parsed document, so comments and quoting are never touched:

* ``${NAME}`` is replaced by the variable's value; an unset variable without a default is an
  error naming it, the file and the key;
* ``${NAME:-default}`` uses ``default`` when ``NAME`` is unset or empty (as the shell does);
* a value that is exactly one reference takes the YAML type of what it is replaced by
  (``events: ${EVENTS:-1000}`` is the int 1000); a reference inside a longer string is text;
* ``$${`` stands for a literal ``${``.

Variables come from the environment, overridden by ``--set NAME=value`` (``run``, ``validate``,
``submit``).  ``streamlet submit`` resolves them on the client (the JobManager's environment is
never read), see :func:`resolve_text`.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import yaml

from streamlet.errors import PipelineDefinitionError

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_REF = re.compile(r"\$\$\{|\$\{(" + _NAME + r")(?::-([^}]*))?\}|\$\{[^}]*\}?")
_WHOLE = re.compile(r"\$\{(" + _NAME + r")(?::-([^}]*))?\}")


def parse_sets(pairs: list[str] | None) -> dict[str, str]:
    """``["A=1", "B=x"]`` from ``--set`` flags to a dict; raises naming a malformed pair."""
    out: dict[str, str] = {}
    for p in pairs or []:
        name, eq, value = p.partition("=")
        name = name.strip()
        if not eq or not re.fullmatch(_NAME, name):
            raise PipelineDefinitionError(f"--set {p!r}: expected NAME=VALUE with NAME a variable name, "
                                          "e.g. --set OUT_DIR=/tmp/out")
        out[name] = value
    return out


def _lookup(name: str, default: str | None, variables: Mapping[str, str], where: str) -> str:
    value = variables.get(name)
    if value is None or (value == "" and default is not None):
        if default is None:
            raise PipelineDefinitionError(
                f"variable {name!r} is not set; set it in the environment, pass --set {name}=VALUE, "
                f"or give a default: ${{{name}:-default}}", where)
        return default
    return value


def _substitute_str(text: str, variables: Mapping[str, str], where: str) -> Any:
    if "$" not in text:
        return text
    whole = _WHOLE.fullmatch(text)
    if whole is not None:
        value = _lookup(whole.group(1), whole.group(2), variables, where)
        if value == "":
            return value
        try:
            typed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return typed if isinstance(typed, (str, int, float, bool)) or typed is None else value

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        if m.group(1) is None:
            raise PipelineDefinitionError(
                f"malformed variable reference {m.group(0)!r}; write ${{NAME}} or ${{NAME:-default}}, "
                "or $${ for a literal ${", where)
        return _lookup(m.group(1), m.group(2), variables, where)

    return _REF.sub(repl, text)


def substitute(data: Any, variables: Mapping[str, str], where: str) -> Any:
    """``data`` (a parsed YAML document) with every reference in its values replaced.

    ``where`` is the file name; errors add the key path (``q5.yaml: sinks.out.path``).
    Mapping keys are left as they are.
    """
    def walk(value: Any, path: str) -> Any:
        if isinstance(value, str):
            return _substitute_str(value, variables, f"{where}: {path}" if path else where)
        if isinstance(value, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    return walk(data, "")


def _escape(data: Any) -> Any:
    if isinstance(data, str):
        return data.replace("${", "$${")
    if isinstance(data, dict):
        return {k: _escape(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_escape(v) for v in data]
    return data


def resolve_text(text: str, variables: Mapping[str, str], source_file: str = "<pipeline>",
                 limits: Any = None) -> str:
    """The pipeline YAML with every variable resolved (for ``submit``: resolved on the client).

    Literal ``${`` in the result is written ``$${`` again, so parsing the result once more
    (on the JobManager) gives the same values.  Comments are not kept.  ``limits`` are the
    :class:`~streamlet.api.limits.PipelineLimits` of loading (default: the defaults).
    """
    from streamlet.api.limits import DEFAULT_LIMITS
    from streamlet.api.yaml.loader import parse_yaml

    data = substitute(parse_yaml(text, source_file, limits or DEFAULT_LIMITS), variables, source_file)
    return yaml.safe_dump(_escape(data), sort_keys=False, allow_unicode=True)

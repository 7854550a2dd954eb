"""Pipeline variables ``${NAME}`` / ``${NAME:-default}``: substitution, typing, errors, resolve for submit."""

from __future__ import annotations

import pytest

from streamlet.api.yaml.loader import loads, parse_yaml
from streamlet.api.yaml.variables import parse_sets, resolve_text, substitute
from streamlet.errors import PipelineDefinitionError

PIPE = """
name: ${NAME:-vars}
sources:
  gen:
    type: datagen
    rows: ${ROWS:-10}   # ${IN_A_COMMENT} is never read
    fields: {id: {kind: sequence}}
sinks:
  out: {input: gen, type: file, path: "${OUT_DIR:-out}/part"}
"""


def test_defaults_and_values_with_types() -> None:
    p = loads(PIPE, "p.yaml", variables={})
    assert p.name == "vars"
    assert p.sources[0].params["rows"] == 10  # a whole-value reference takes the YAML type
    assert p.sinks[0].params["path"].endswith("out/part")
    p = loads(PIPE, "p.yaml", variables={"NAME": "x", "ROWS": "25", "OUT_DIR": "/tmp/o"})
    assert (p.name, p.sources[0].params["rows"], p.sinks[0].params["path"]) == ("x", 25, "/tmp/o/part")
    # set but empty: the default applies, as in the shell's ${X:-d}
    assert loads(PIPE, "p.yaml", variables={"ROWS": ""}).sources[0].params["rows"] == 10


def test_substitute_rules() -> None:
    v = {"A": "1", "B": "text", "T": "true", "E": ""}
    assert substitute({"x": "${A}", "y": "${B}", "z": "${T}", "w": "n${A}", "e": "${E}"}, v, "f") == \
        {"x": 1, "y": "text", "z": True, "w": "n1", "e": ""}
    assert substitute(["$${A}", "a$b", "${A}-${B}"], v, "f") == ["${A}", "a$b", "1-text"]
    assert substitute({"k": {"deep": ["${MISSING:-d e f}"]}}, {}, "f") == {"k": {"deep": ["d e f"]}}


@pytest.mark.parametrize("value,match", [
    ("${MISSING}", "variable 'MISSING' is not set; set it in the environment, pass --set MISSING=VALUE"),
    ("${1BAD}", "malformed variable reference"),
    ("a ${OPEN", "malformed variable reference"),
])
def test_errors_name_the_variable_file_and_key(value: str, match: str) -> None:
    with pytest.raises(PipelineDefinitionError, match=match) as info:
        substitute({"sinks": {"out": {"path": value}}}, {}, "q.yaml")
    assert str(info.value).startswith("q.yaml: sinks.out.path: ")


def test_parse_sets() -> None:
    assert parse_sets(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    for bad in ("novalue", "1A=2", "=3"):
        with pytest.raises(PipelineDefinitionError, match="expected NAME=VALUE"):
            parse_sets([bad])


def test_resolve_text_round_trips_for_submit() -> None:
    text = resolve_text(PIPE + "transforms: {t: {input: gen, map: \"dict(r, s='$${LIT}')\"}}\n",
                        {"ROWS": "3"}, "p.yaml")
    data = parse_yaml(text)
    assert data["sources"]["gen"]["rows"] == 3
    # parsed again (as the jobmanager does, with no variables) the literal survives as ${LIT}
    p = loads(text, "p.yaml", variables={})
    assert p.transforms[0].function.expr == "dict(r, s='${LIT}')"

"""The loader and the expression compiler against hostile or broken input: every case is a
PipelineDefinitionError naming the place and the fix, never another exception."""

from __future__ import annotations

import time

import pytest

from streamlet.api.expressions import compile_expression
from streamlet.api.limits import PipelineLimits
from streamlet.api.planner import plan
from streamlet.api.yaml.loader import loads
from streamlet.errors import PipelineDefinitionError, PipelineLimitError

SOURCE = "sources: {g: {type: datagen, rows: 3, fields: {k: {kind: sequence}}}}\n"


def pipeline(map_expr: str) -> str:
    return SOURCE + f"transforms: {{m: {{input: g, map: {map_expr!r}}}}}\nsinks: {{o: {{input: m, type: blackhole}}}}\n"


@pytest.mark.parametrize("text, fragment", [
    ("sources: &a {x: *a}", "recursive structures are not allowed"),
    ("name: " + "1" * 5000, "malformed YAML value"),          # int() refuses > 4300 digits
    ("name: !!set {a}", "'tag:yaml.org,2002:set' is not supported"),
    ("name: !!binary aGk=", "'tag:yaml.org,2002:binary' is not supported"),
    ("{[1]: 2}", "a map key must be a string or a number"),
    ("a: 1\na: 2", "duplicate key 'a' (line 2)"),
    ("a: 1\n---\nb: 2", "malformed YAML at line 2"),
    ("name: [\n", "malformed YAML"),
])
def test_broken_yaml_is_a_definition_error(text: str, fragment: str) -> None:
    with pytest.raises(PipelineDefinitionError) as info:
        loads(text, "p.yaml")
    assert fragment in str(info.value) and str(info.value).startswith("p.yaml")


def test_a_timestamp_stays_a_string() -> None:
    p = loads("name: 2001-12-14\n" + SOURCE + "sinks: {o: {input: g, type: blackhole}}\n", "p.yaml")
    assert p.name == "2001-12-14"


def test_alias_expansion_is_bounded_while_composing() -> None:
    # 10 ** 8 elements from 9 lines; refused after reading them, in milliseconds
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(7))
    t0 = time.perf_counter()
    with pytest.raises(PipelineLimitError) as info:
        loads(text, "bomb.yaml")
    assert time.perf_counter() - t0 < 0.5
    assert info.value.key == "pipeline.yaml.max-nodes" and "line 5" in str(info.value)
    # counted by hand: root map 1, key a 1, &a list 3 (itself and two x), key b 1, list 1, and
    # each *a 3 more: 13 values; 13 loads (then the unknown top-level key is refused), 12 does not
    small = "a: &a [x, x]\nb: [*a, *a]\n"
    with pytest.raises(PipelineDefinitionError, match="unknown key 'a'"):
        loads(small, "small.yaml", limits=PipelineLimits(max_values=13))
    with pytest.raises(PipelineLimitError):
        loads(small, "small.yaml", limits=PipelineLimits(max_values=12))


@pytest.mark.parametrize("expr, fragment", [
    ("__import__('os').system('id')", "'__import__' is not available"),
    ("open('/etc/passwd').read()", "'open' is not available"),
    ("r.__class__", "reads the attribute '__class__'"),
    ("exit()", "'exit' is not available"),
    ("eval('1')", "'eval' is not available"),
    ("foo(r)", "unknown name 'foo'"),
    ("(y := r)", "uses ':='"),
    ("-" * 3000 + "r", "nested too deeply"),
    ("(" * 300 + "r" + ")" * 300, "does not compile"),
    ("r\0", "cannot contain null bytes"),
    ("import os", "does not compile"),
])
def test_expressions_are_restricted(expr: str, fragment: str) -> None:
    with pytest.raises(PipelineDefinitionError) as info:
        compile_expression(expr, "p.yaml: transforms.m.map")
    assert fragment in str(info.value) and str(info.value).startswith("p.yaml: transforms.m.map")


def test_expressions_keep_their_meaning_in_normal_form() -> None:
    f = compile_expression("[x * 2 for x in r['xs']]  # doubled", "w")
    assert f.expr == "[x * 2 for x in r['xs']]"
    assert compile_expression("sorted(r, key=lambda k: -k)", "w").expr == "sorted(r, key=lambda k: -k)"
    assert compile_expression("math.sqrt(r['x'])", "w").expr == "math.sqrt(r['x'])"
    assert compile_expression("dict(a, v=a['v'] + b['v'])", "w", "reduce").expr == "dict(a, v=a['v'] + b['v'])"
    with pytest.raises(PipelineDefinitionError, match="unknown name 'r'"):
        compile_expression("r", "w", "reduce")


def test_a_long_expression_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(PipelineLimitError) as info:
        loads(pipeline("r + " * 50 + "r"), "p.yaml", limits=PipelineLimits(max_expression_length=100))
    assert info.value.key == "pipeline.expression.max-length" and "transforms.m.map" in str(info.value)


def test_a_chain_longer_than_the_recursion_limit_plans() -> None:
    n = 1500
    transforms = "".join(f"  t{i}: {{input: {'g' if i == 0 else f't{i - 1}'}, map: r}}\n" for i in range(n))
    text = SOURCE + "transforms:\n" + transforms + f"sinks: {{o: {{input: t{n - 1}, type: blackhole}}}}\n"
    limits = PipelineLimits(max_nodes=2000)
    graph = plan(loads(text, "chain.yaml", limits=limits), limits=limits)
    assert len(graph.vertices) == 1 and len(graph.vertices[0].operators) == n + 2


def test_unions_of_unions_are_bounded() -> None:
    # u_i = union(u_{i-1}, u_{i-1}) doubles the physical inputs per level: 2 ** 40 at the end
    unions = "".join(f"  u{i}: {{union: [{'g' if i == 0 else f'u{i - 1}'}, {'g' if i == 0 else f'u{i - 1}'}]}}\n"
                     for i in range(40))
    text = SOURCE + "transforms:\n" + unions + "  m: {input: u39, map: r}\nsinks: {o: {input: m, type: blackhole}}\n"
    t0 = time.perf_counter()
    with pytest.raises(PipelineLimitError) as info:
        plan(loads(text, "u.yaml"))
    assert info.value.key == "pipeline.max-channels" and time.perf_counter() - t0 < 1.0


def test_operator_specs_times_subtasks_are_bounded() -> None:
    values = "[" + ", ".join(["abcdefgh"] * 1000) + "]"
    text = (f"parallelism: 100\nsources: {{g: {{type: datagen, fields: {{c: {{kind: choice, values: {values}}}}}}}}}\n"
            "sinks: {o: {input: g, type: blackhole}}\n")
    with pytest.raises(PipelineLimitError) as info:
        plan(loads(text, "big.yaml"), limits=PipelineLimits(max_deployment_bytes=1_000_000))
    assert info.value.key == "rpc.max-message-size"
    assert len(plan(loads(text, "big.yaml")).vertices) == 1

"""The expression compiler: a YAML string into a :class:`FunctionDef` (an expression or an import path).

An inline expression is Python, compiled on the client and again on the TaskManager into the
fused loop of its operator chain (:mod:`streamlet.operators.codegen`).  Before that, it is:

1. bounded: at most ``pipeline.expression.max-length`` characters, and a nesting the Python
   compiler can take (deeper is refused, not a ``RecursionError``);
2. parsed as one expression (``eval`` mode: no statements, no imports);
3. restricted: every name it reads must be in scope (:data:`SCOPES`: ``r``, or ``a`` and ``b``
   for ``reduce``, or ``l`` and ``r`` for a join's ``where``/``select``), a module of :data:`~streamlet.udf.EXPRESSION_GLOBALS`, a builtin of
   :data:`SAFE_BUILTINS`, or bound inside the expression (comprehension variables, lambda
   parameters); no attribute starting with ``_`` (so no ``r.__class__``), no ``:=``;
4. normalised (``ast.unparse``): comments are gone, so the text can be pasted into generated code.

These rules keep an expression a function of its record.  They are **not a sandbox**: a pipeline
may also name import paths and ship Python files, which run with the TaskManager's rights
(docs/operations.md, "What a pipeline can do").
"""

from __future__ import annotations

import ast
import builtins
from typing import Any

from streamlet.api.limits import DEFAULT_LIMITS, PipelineLimits
from streamlet.api.yaml.schema import FunctionDef
from streamlet.errors import PipelineDefinitionError
from streamlet.udf import EXPRESSION_GLOBALS

#: names an expression of each kind reads its input through
SCOPES: dict[str, tuple[str, ...]] = {"record": ("r",), "reduce": ("a", "b"), "join": ("l", "r")}

#: builtins an expression may call: pure functions and types; nothing that imports, evaluates
#: code, opens files, reads or writes attributes by name, or ends the process
SAFE_BUILTINS = frozenset({
    "abs", "all", "any", "ascii", "bin", "bool", "bytes", "callable", "chr", "complex", "dict", "divmod",
    "enumerate", "filter", "float", "format", "frozenset", "hasattr", "hash", "hex", "int", "isinstance",
    "issubclass", "iter", "len", "list", "map", "max", "min", "next", "oct", "ord", "pow", "range", "repr",
    "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "type", "zip",
    "True", "False", "None", "ValueError", "TypeError", "KeyError",
})
_HINT = "write a Python expression over the record r, e.g. \"r['price'] * 2\", or an import path 'package.module:function'"


def looks_like_import_path(text: str) -> bool:
    """True for ``package.module:name`` (``name`` may be dotted)."""
    if text.count(":") != 1:
        return False
    mod, name = text.split(":")
    return all(p.isidentifier() for p in mod.split(".")) and all(p.isidentifier() for p in name.split("."))


def compile_expression(expr: Any, where: str, scope: str = "record",
                       limits: PipelineLimits = DEFAULT_LIMITS) -> FunctionDef:
    """A :class:`FunctionDef` from a YAML value: ``pkg.mod:name`` or a Python expression.

    Raises :class:`PipelineDefinitionError` (never anything else) naming ``where`` and the fix.
    """
    if not isinstance(expr, str) or not expr.strip():
        raise PipelineDefinitionError(f"expected a Python expression or an import path, got {expr!r}; {_HINT}",
                                      where)
    if len(expr) > limits.max_expression_length:
        raise limits.exceeded("max_expression_length", f"the expression has {len(expr)} characters", where)
    text = expr.strip()
    if looks_like_import_path(text):
        return FunctionDef(path=text)
    try:
        tree = ast.parse(text, mode="eval")
        # the parser accepts a few constructs the compiler then refuses; compile to be sure
        compile(tree, where, "eval")
    except SyntaxError as exc:
        raise PipelineDefinitionError(
            f"expression {_short(text)} does not compile: {exc.msg} (column {exc.offset}); {_HINT}", where) from None
    except (RecursionError, MemoryError) as exc:
        raise PipelineDefinitionError(
            f"expression {_short(text)} is nested too deeply to compile ({type(exc).__name__}); "
            "split it, or move it into a function named by an import path", where) from None
    except ValueError as exc:  # e.g. a NUL character
        raise PipelineDefinitionError(f"expression {_short(text)} cannot be compiled: {exc}; {_HINT}", where) from None
    _check_names(tree, text, where, SCOPES[scope])
    try:
        normal = ast.unparse(tree)
    except (RecursionError, MemoryError, ValueError) as exc:
        raise PipelineDefinitionError(
            f"expression {_short(text)} is nested too deeply ({type(exc).__name__}); simplify it", where) from None
    return FunctionDef(expr=normal)


def _short(text: str) -> str:
    return repr(text if len(text) <= 200 else text[:200] + "...")


def _check_names(tree: ast.AST, text: str, where: str, scope: tuple[str, ...]) -> None:
    bound: set[str] = set(scope)
    loads: list[ast.Name] = []
    try:
        nodes = list(ast.walk(tree))
    except RecursionError:  # ast.walk is iterative, but be safe about future versions
        raise PipelineDefinitionError(f"expression {_short(text)} is nested too deeply; simplify it", where) from None
    for node in nodes:
        if isinstance(node, ast.NamedExpr):
            raise PipelineDefinitionError(
                f"expression {_short(text)} uses ':='; assignments are not allowed in inline expressions, "
                "use a function named by an import path instead", where)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise PipelineDefinitionError(
                f"expression {_short(text)} reads the attribute {node.attr!r}; attributes starting with '_' "
                "are not available in inline expressions", where)
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loads.append(node)
            else:
                bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    available = bound | set(EXPRESSION_GLOBALS) | SAFE_BUILTINS
    for name in loads:
        if name.id not in available:
            if name.id.startswith("_") or (hasattr(builtins, name.id) and name.id not in SAFE_BUILTINS):
                why = f"{name.id!r} is not available in inline expressions (no imports, eval, open or attribute access by name)"
            else:
                why = f"unknown name {name.id!r}"
            raise PipelineDefinitionError(
                f"expression {_short(text)}: {why}; expressions can use {', '.join(scope)}, "
                f"{', '.join(sorted(EXPRESSION_GLOBALS))} and pure builtins such as len, str, int, sorted; "
                "anything else belongs in a function named by an import path", where)

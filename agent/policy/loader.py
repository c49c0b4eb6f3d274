"""The policy loader: YAML with line numbers, `${VAR}` expansion from the environment, and one error per problem
that names the file, the line and the field, with the value shown as written (never a secret it expands to)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarint import HexCapsInt, HexInt

from agent.errors import Issue, PolicyError
from agent.policy.fields import ENV_VAR_REF
from agent.policy.models import Policy
from agent.telemetry import redact_text, redact_url

_M = TypeVar("_M", bound=BaseModel)
# A location in the policy: mapping keys and list indexes, as in pydantic's error locations.
_Loc = tuple[str | int, ...]


def load_policy(path: str | Path, env: Mapping[str, str] | None = None) -> Policy:
    """Returns the validated policy in the file `path`, `${VAR}` expanded from `env` (default: os.environ).

    Raises PolicyError with one issue per problem found in the file.
    """
    return parse_policy(read_text(path), str(path), env)


def read_text(path: str | Path) -> str:
    """Returns the UTF-8 text of an input file; PolicyError (one issue naming the file) when it cannot be read."""
    source = str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError([Issue(source, None, "", "no such file")]) from None
    except UnicodeDecodeError:
        raise PolicyError([Issue(source, None, "", "expected UTF-8 text")]) from None
    except OSError as error:
        raise PolicyError([Issue(source, None, "", f"cannot read ({error.strerror})")]) from None


def parse_policy(text: str, source: str = "<policy>", env: Mapping[str, str] | None = None) -> Policy:
    """Returns the validated policy in the YAML `text`; `source` names it in errors.

    Raises PolicyError with one issue per problem: YAML syntax (then nothing else), duplicate keys, unset
    environment variables and every validation error, ordered by line.
    """
    return parse_model(text, Policy, source, env)


def parse_model(
    text: str, model: type[_M], source: str, env: Mapping[str, str] | None = None, what: str = "policy sections"
) -> _M:
    """Returns `model` validated from the YAML `text` the way `parse_policy` validates a policy (the same
    file:line errors, `${VAR}` expansion and duplicate-key checks), for other YAML inputs such as the backtest's
    portfolio files. Raises PolicyError with one issue per problem."""
    reader = YAML()
    reader.allow_duplicate_keys = True  # reported by _duplicate_keys, with their paths, among the rest
    try:
        document = YAML().compose(text)
        tree = reader.load(text)
    except MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else None
        context = f" ({error.context} at line {error.context_mark.line + 1})" if error.context_mark else ""
        raise PolicyError([Issue(source, line, "", _one_line(f"invalid YAML: {error.problem}{context}"))]) from None
    except YAMLError as error:
        raise PolicyError([Issue(source, None, "", _one_line(f"invalid YAML: {error}"))]) from None
    issues = list(_duplicate_keys(document, (), source))
    if not isinstance(tree, CommentedMap):
        line = tree.lc.line + 1 if isinstance(tree, CommentedSeq) else 1
        expected = f"expected a mapping of {what} (got {_shown(tree)})"
        raise PolicyError([Issue(source, line, "", expected)])
    unset: dict[_Loc, list[str]] = {}
    data = _expanded(tree, (), env if env is not None else os.environ, unset)
    for loc, names in unset.items():
        line, _ = _locate(tree, loc)
        for name in names:
            issues.append(Issue(source, line, _dotted(loc), f"environment variable {name} is not set"))
    try:
        value = model.model_validate(data)
    except ValidationError as error:
        for detail in error.errors():
            issue = _issue(detail, tree, source, model)
            if issue is not None and detail["loc"] not in unset:
                issues.append(issue)
    if issues:
        raise PolicyError(sorted(issues, key=lambda issue: issue.line or 0))
    return value


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _duplicate_keys(node: Node | None, path: _Loc, source: str) -> Iterator[Issue]:
    if isinstance(node, MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line and key != "<<":
                message = f"expected each key once (first at line {first_line[key]})"
                yield Issue(source, line, _dotted((*path, key)), message)
            first_line.setdefault(key, line)
            yield from _duplicate_keys(value_node, (*path, key), source)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*path, index), source)


def _expanded(value: Any, loc: _Loc, env: Mapping[str, str], unset: dict[_Loc, list[str]]) -> Any:
    """Returns `value` as plain Python data with `${VAR}` expanded; names of unset variables go to `unset`."""
    if isinstance(value, dict):
        return {key: _expanded(item, (*loc, key), env, unset) for key, item in value.items()}
    if isinstance(value, list):
        return [_expanded(item, (*loc, index), env, unset) for index, item in enumerate(value)]
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                unset.setdefault(loc, []).append(name)
                return match.group(0)
            return env[name]

        return ENV_VAR_REF.sub(substitute, str(value))
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


_ABSENT = object()


def _locate(tree: CommentedMap, loc: tuple[Any, ...]) -> tuple[int, Any]:
    """Returns the 1-based line of the deepest part of `loc` present in `tree`, and the value written in the
    file at `loc` (before `${VAR}` expansion), or _ABSENT when `loc` is not all there."""
    line, node = tree.lc.line + 1, tree
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line, node = node.lc.key(part)[0] + 1, node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, node = node.lc.item(part)[0] + 1, node[part]
        else:
            return line, _ABSENT
    return line, node


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the key of this entry", which the path already names
            continue
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


_TYPES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", "≥"), "less_than": ("lt", "<"),
           "less_than_equal": ("le", "≤")}  # fmt: skip


def _issue(error: ErrorDetails, tree: CommentedMap, source: str, root: type[BaseModel] = Policy) -> Issue | None:
    """Returns the error as an issue on the line where the file writes it, or None when it only echoes the
    errors of the items of a list (pydantic checks a tuple's length after dropping its invalid items)."""
    kind, ctx = error["type"], error.get("ctx", {})
    # A tagged union's tag ("<band>") is pydantic's, not the file's.
    loc = tuple(p for p in (*error["loc"], *ctx.get("at", ())) if not (isinstance(p, str) and p.startswith("<")))
    line, written = _locate(tree, loc)
    if kind == "too_short" and isinstance(written, list) and len(written) >= ctx["min_length"]:
        return None
    if kind == "missing":
        return Issue(source, line, _dotted(loc), "required field missing")
    if kind == "extra_forbidden":
        allowed = ", ".join(_model_at(loc[:-1], root).model_fields)
        return Issue(source, line, _dotted(loc), f"unknown field; expected one of {allowed}")
    if kind in _TYPES:
        expected = f"expected {_TYPES[kind]}"
    elif kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        expected = f"expected a number {sign} {ctx[key]}"
    elif kind == "too_short":
        expected = f"expected at least {ctx['min_length']} item{'s' if ctx['min_length'] > 1 else ''}"
    elif kind == "literal_error":
        expected = f"expected {ctx['expected']}"
    else:
        expected = error["msg"].removeprefix("Value error, ").replace("Input should be ", "expected ")
    # A whole mapping is not worth quoting when the problem is in its content rather than its type.
    if written is _ABSENT or (isinstance(written, dict | list) and written and kind not in _TYPES):
        return Issue(source, line, _dotted(loc), expected)
    return Issue(source, line, _dotted(loc), f"{expected} (got {_shown(written)})")


def _shown(written: Any) -> str:
    """Returns a value as written in the file, for an error message: short, URLs redacted."""
    if isinstance(written, dict):
        return "a mapping" if written else "an empty mapping"
    if isinstance(written, list):
        return "a list" if written else "an empty list"
    if written is None:
        return "nothing"
    if isinstance(written, bool):
        return str(written).lower()
    if isinstance(written, HexInt | HexCapsInt):
        return f"the number {int(written):#x}"
    if isinstance(written, str):
        text = redact_url(written) if "://" in written else redact_text(written)
        return repr(text if len(text) <= 60 else text[:59] + "…")
    return repr(written)


def _model_at(loc: tuple[Any, ...], root: type[BaseModel] = Policy) -> type[BaseModel]:
    """Returns the model class that validates the value at `loc` of a `root` (a policy by default)."""
    annotation: Any = root
    for part in loc:
        options = _alternatives(annotation)
        model = next((a for a in options if isinstance(a, type) and issubclass(a, BaseModel)
                      and part in a.model_fields), None)
        if model is not None:
            annotation = model.model_fields[part].annotation
        else:  # tuple[X, ...] or dict[K, X]: the items are X
            container = next(a for a in options if get_origin(a) in (dict, tuple))
            annotation = get_args(container)[-1 if get_origin(container) is dict else 0]
    model = next(a for a in _alternatives(annotation) if isinstance(a, type) and issubclass(a, BaseModel))
    return model


def _alternatives(annotation: Any) -> list[Any]:
    """Returns the types a value may have under `annotation`: Annotated and None stripped, unions spread."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):
        return [a for arg in get_args(annotation) if arg is not type(None) for a in _alternatives(arg)]
    return [annotation]

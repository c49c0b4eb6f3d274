"""The YAML policy: pydantic models, a loader whose errors name file, line and field, and the JSON schema.

A policy is meant to be reviewed and committed by its owner, so secrets stay out of it: any string may hold
`${VAR}` references, expanded from the environment at load time. Error messages show values as written in the
file (the reference, never its expansion) and reduce URLs to `scheme://host/…`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit

from eth_utils import is_checksum_address, to_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarint import HexCapsInt, HexInt

from agent.errors import Issue, PolicyError
from agent.telemetry import redact_text, redact_url

_VAR = r"[A-Za-z_][A-Za-z0-9_]*"
_ENV_REF = re.compile(rf"\$\{{({_VAR})\}}")
_ENV_REF_SCHEMA = rf"\$\{{{_VAR}\}}"
_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_M = TypeVar("_M", bound=BaseModel)
# A location in the policy: mapping keys and list indexes, as in pydantic's error locations.
_Loc = tuple[str | int, ...]
_NAME = r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}"


def _problem(message: str, *at: str | int) -> PydanticCustomError:
    """Returns a validation error that points at the sub-field `at` of the value being validated, so that a
    cross-field check (min < max) is reported on the line of the offending field rather than its parent."""
    return PydanticCustomError("policy", message, {"at": at})


def _quoted_address(value: Any) -> Any:
    # YAML reads an unquoted 0x… as a hexadecimal number.
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("expected an address in quotes: YAML reads an unquoted 0x… as a number")
    return value


def _checksummed(value: str) -> str:
    if not _HEX_ADDRESS.fullmatch(value):
        raise ValueError("expected an address: 0x followed by 40 hex digits")
    if not is_checksum_address(value):
        raise ValueError(f"expected the EIP-55 checksummed address {to_checksum_address(value)}")
    return value


def _rpc_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ValueError("expected an http(s):// or ws(s):// URL")
    return value


def _matching(pattern: str, what: str) -> Callable[[str], str]:
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise ValueError(f"expected {what}")
        return value

    return check


Address = Annotated[
    str,
    BeforeValidator(_quoted_address),
    AfterValidator(_checksummed),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": f"^(0x[0-9a-fA-F]{{40}}|{_ENV_REF_SCHEMA})$",
            "description": "EIP-55 checksummed address, in quotes",
        }
    ),
]
RpcUrl = Annotated[
    str,
    AfterValidator(_rpc_url),
    WithJsonSchema({"type": "string", "pattern": f"^((https?|wss?)://|{_ENV_REF_SCHEMA})"}),
]
Name = Annotated[
    str,
    AfterValidator(_matching(_NAME, "a name of letters, digits and . _ / - (at most 64)")),
    WithJsonSchema({"type": "string", "pattern": f"^{_NAME}$"}),
]
Instrument = Literal["perp", "aave_borrow", "spot_swap", "options"]


class _Model(BaseModel):
    # Attribute docstrings become field descriptions in the JSON schema, for editors.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class AaveV3(_Model):
    """An Aave v3 market, found through its PoolAddressesProvider."""

    pool_addresses_provider: Address


class UniswapV3(_Model):
    """Uniswap v3 periphery contracts, and optionally the factory and the pools the agent may trade in."""

    position_manager: Address
    """NonfungiblePositionManager."""
    swap_router: Address
    quoter: Address
    """QuoterV2."""
    factory: Address | None = None
    pools: dict[Name, Address] = Field(default_factory=dict)
    """Label (e.g. WETH-USDC-500) → pool address."""


class Chainlink(_Model):
    """Chainlink AggregatorV3 price feeds, and the L2 sequencer uptime feed where there is one."""

    feeds: dict[Name, Address] = Field(min_length=1)
    """Token symbol → USD price feed."""
    max_age_s: PositiveInt = 3600
    """A price older than this is stale: nothing is sent."""
    sequencer_uptime_feed: Address | None = None
    grace_period_s: NonNegativeInt = 3600
    """Seconds to wait after the sequencer is back up."""


class Perps(_Model):
    """A perpetual-futures venue: its market on the portfolio's underlying."""

    market: Address
    """The market contract (the local reference venue: PerpMarket)."""
    venue: Literal["local"] = "local"
    """Which venue adapter reads and trades it."""


class Options(_Model):
    """An options venue: European options on the portfolio's underlying."""

    market: Address
    """The market contract (the local reference venue: OptionsMarket)."""
    venue: Literal["local"] = "local"
    """Which venue adapter reads and trades it."""


class Protocols(_Model):
    """The protocols the agent reads and trades on one chain; each is optional, at least one is required."""

    aave_v3: AaveV3 | None = None
    uniswap_v3: UniswapV3 | None = None
    chainlink: Chainlink | None = None
    perps: Perps | None = None
    options: Options | None = None

    def names(self) -> list[str]:
        """Returns the names of the configured protocols, in declaration order."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class Chain(_Model):
    """One chain: its id, its RPC endpoints and the protocols used on it."""

    name: Name
    chain_id: PositiveInt
    # repr=False: an RPC URL often carries an API key.
    rpc: tuple[RpcUrl, ...] = Field(min_length=1, repr=False)
    """Endpoints, tried in order: failover."""
    protocols: Protocols

    @model_validator(mode="after")
    def _has_a_protocol(self) -> Chain:
        if not self.protocols.names():
            allowed = ", ".join(Protocols.model_fields)
            raise _problem(f"expected at least one protocol of {allowed}", "protocols")
        return self


class Portfolio(_Model):
    """The account whose positions are managed, the risk factor of its Greeks, and its chains."""

    name: Name
    account: Address
    underlying: Name
    """Token symbol of the risk factor the Greeks are taken against, e.g. WETH."""
    chains: tuple[Chain, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _chains_unique(self) -> Portfolio:
        first_of: dict[int, int] = {}
        for index, chain in enumerate(self.chains):
            if chain.chain_id in first_of:
                first = first_of[chain.chain_id]
                message = f"expected each chain once: chain id {chain.chain_id} is already chains[{first}]"
                raise _problem(message, "chains", index, "chain_id")
            first_of[chain.chain_id] = index
        return self


class _Band(_Model):
    min: float
    target: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> _Band:
        if not self.min < self.max:
            raise _problem(f"expected a value above min ({self.min:g})", "max")
        if not self.min < self.target:
            raise _problem(f"expected a value above min ({self.min:g})", "target")
        if not self.target < self.max:
            raise _problem(f"expected a value below max ({self.max:g})", "target")
        return self


def _above_one(value: float) -> float:
    if value <= 1.0:
        raise ValueError("expected a health factor above 1: at 1 the position can be liquidated")
    return value


# Closer than this, a small move after a repay (or boost) trips the trigger again: the two chase each other.
_HF_MIN_GAP = 0.05


class HealthFactorBand(_Band):
    """Repay when the health factor falls below min, back to target; with boost, re-lever above max."""

    min: Annotated[
        float, AfterValidator(_above_one), WithJsonSchema({"type": "number", "exclusiveMinimum": 1})
    ]
    boost: bool = False
    """Re-lever when the health factor rises above max."""

    @model_validator(mode="after")
    def _triggers_apart_from_target(self) -> HealthFactorBand:
        gap = _HF_MIN_GAP * self.target
        if self.target - self.min < gap:
            raise _problem(
                f"expected min and target at least 5% of target apart (min ≤ {self.target - gap:.4g}): "
                "closer, repay and boost would chase each other",
                "min",
            )
        if self.boost and self.max - self.target < gap:
            raise _problem(
                f"expected max and target at least 5% of target apart when boost is on "
                f"(max ≥ {self.target + gap:.4g}): closer, repay and boost would chase each other",
                "max",
            )
        return self


class GreekBand(_Band):
    """A band in desk units (USD)."""

    target: float = 0.0
    """Default: 0 when 0 is inside (min, max), else the midpoint."""

    @model_validator(mode="before")
    @classmethod
    def _default_target(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "target" in data:
            return data
        try:
            low, high = float(data["min"]), float(data["max"])
        except (KeyError, TypeError, ValueError):
            return data  # the field validators report it
        return {**data, "target": 0.0 if low < 0 < high else (low + high) / 2}


class Bands(_Model):
    """Trigger when a figure leaves [min, max]; trade back to target. At least one band is required."""

    health_factor: HealthFactorBand | None = None
    """Aave's health factor: liquidation below 1."""
    delta_usd: GreekBand | None = None
    """dV/dS·S, USD."""
    gamma_usd_1pct: GreekBand | None = None
    """Change of delta_usd for a 1% move of the underlying, USD."""
    vega_usd_1vol: GreekBand | None = None
    """Change of value for one vol point, USD."""

    def names(self) -> list[str]:
        """Returns the names of the bands that are set, in declaration order."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]

    @model_validator(mode="after")
    def _at_least_one(self) -> Bands:
        if not self.names():
            raise _problem(f"expected at least one band of {', '.join(type(self).model_fields)}")
        return self


class Triggers(_Model):
    """When a cycle runs and when it may act."""

    interval_s: PositiveFloat = 12.0
    """Seconds between two cycles."""
    max_hedge_age_s: PositiveInt = 86400
    """Re-hedge at least this often."""
    price_move_pct: PositiveFloat = 2.0
    """Re-assess at once after a move of the underlying this large."""
    cooldown_s: NonNegativeFloat = 60.0
    """Minimum seconds between two actions."""


class Hedging(_Model):
    """What the planner may use, and the smallest trade worth its cost."""

    instruments: tuple[Instrument, ...] = Field(
        default=("perp", "aave_borrow", "spot_swap", "options"), min_length=1
    )
    max_slippage_bps: PositiveFloat = Field(default=30.0, le=10_000)
    min_trade_usd: NonNegativeFloat = 500.0

    @model_validator(mode="after")
    def _instruments_unique(self) -> Hedging:
        twice = sorted({item for item in self.instruments if self.instruments.count(item) > 1})
        if twice:
            raise _problem(f"expected each instrument once ({', '.join(twice)} repeated)", "instruments")
        return self


class Limits(_Model):
    """Caps the guard enforces on every plan."""

    max_notional_per_tx_usd: PositiveFloat = 250_000.0
    max_daily_turnover_usd: PositiveFloat = 2_000_000.0
    max_gas_price_gwei: PositiveFloat = 200.0
    gas_cap_lift_hf: NonNegativeFloat = 0.1
    """The gas cap is ignored while the health factor is below 1 + this: better an expensive repay than a
    liquidation."""

    @model_validator(mode="after")
    def _turnover_covers_one_tx(self) -> Limits:
        if self.max_daily_turnover_usd < self.max_notional_per_tx_usd:
            raise _problem(
                f"expected at least max_notional_per_tx_usd ({self.max_notional_per_tx_usd:g})",
                "max_daily_turnover_usd",
            )
        return self


class Execution(_Model):
    """How transactions are sent; dry-run records what would have been sent and sends nothing."""

    mode: Literal["dry-run", "live"] = "dry-run"
    confirmations: PositiveInt = 1
    replace_after_s: PositiveFloat = 30.0
    """Bump the fees of a transaction still pending after this long."""
    deadline_s: PositiveFloat = 600.0
    """Cancel an intent still pending after this long."""

    @model_validator(mode="after")
    def _replace_before_deadline(self) -> Execution:
        if self.replace_after_s >= self.deadline_s:
            raise _problem(f"expected less than deadline_s ({self.deadline_s:g})", "replace_after_s")
        return self


class Policy(_Model):
    """A Ballast policy: the portfolio, its risk bands, and how the agent may act to keep it inside them.
    Any string may hold ${VAR} references, expanded from the environment at load time."""

    version: Literal[1]
    portfolio: Portfolio
    bands: Bands
    triggers: Triggers = Field(default_factory=Triggers)
    hedging: Hedging = Field(default_factory=Hedging)
    limits: Limits = Field(default_factory=Limits)
    execution: Execution = Field(default_factory=Execution)


def policy_json_schema() -> dict[str, Any]:
    """Returns the JSON schema (draft 2020-12) of the policy file, generated from the models."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **Policy.model_json_schema()}


def policy_json_schema_text() -> str:
    """Returns the schema as committed in config/policy.schema.json: indented, sorted keys, final newline."""
    return json.dumps(policy_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


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

        return _ENV_REF.sub(substitute, str(value))
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
    loc = (*error["loc"], *ctx.get("at", ()))
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
        annotation = _unwrapped(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = annotation.model_fields[part].annotation
        else:  # tuple[X, ...] or dict[K, X]: the items are X
            annotation = get_args(annotation)[-1 if get_origin(annotation) is dict else 0]
    model = _unwrapped(annotation)
    assert isinstance(model, type) and issubclass(model, BaseModel), loc
    return model


def _unwrapped(annotation: Any) -> Any:
    """Returns X for Annotated[X, …] and for X | None."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, UnionType):
            annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
        else:
            return annotation

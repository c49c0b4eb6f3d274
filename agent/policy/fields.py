"""The policy's field types: checksummed addresses, Morpho market ids, RPC URLs, names, and the base model every
section uses (the sim's portfolio files use it too)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from eth_utils import is_checksum_address, to_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

_VAR = r"[A-Za-z_][A-Za-z0-9_]*"
# A `${VAR}` reference, expanded by the loader; the schemas accept one wherever they check a value's form.
ENV_VAR_REF = re.compile(rf"\$\{{({_VAR})\}}")
_ENV_REF_SCHEMA = rf"\$\{{{_VAR}\}}"
_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_NAME = r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}"


def field_error(message: str, *at: str | int) -> PydanticCustomError:
    """Returns a validation error that points at the sub-field `at` of the value being validated, so that a
    cross-field check (min < max) is reported on the line of the offending field rather than its parent."""
    return PydanticCustomError("policy", message, {"at": at})


def _quoted_address(value: Any) -> Any:
    # YAML reads an unquoted 0x… as a hexadecimal number.
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("expected an address in quotes: YAML reads an unquoted 0x… as a number")
    return value


def _quoted_market_id(value: Any) -> Any:
    try:
        return _quoted_address(value)
    except ValueError:
        raise ValueError("expected a market id in quotes: YAML reads an unquoted 0x… as a number") from None


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
MarketId = Annotated[
    str,
    BeforeValidator(_quoted_market_id),
    AfterValidator(_matching(r"0x[0-9a-fA-F]{64}", "a market id: 0x followed by 64 hex digits")),
    AfterValidator(str.lower),
    WithJsonSchema({"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$",
                    "description": "Morpho Blue market id (bytes32, 0x-hex), in quotes"}),
]
Instrument = Literal["perp", "aave_borrow", "spot_swap", "options"]


class StrictModel(BaseModel):
    # The base of every section: an unknown (misspelt) key is an error rather than ignored, a parsed value is
    # frozen, and attribute docstrings become field descriptions in the JSON schema, for editors.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

"""Who signs: an encrypted keystore (password from the environment or a file), a plain key for the local chain only,
or any other `Signer` (a remote signer implements the same protocol).

The key never leaves this module: it is not in any repr, log line, metric, error or journal row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog
from eth_account import Account
from eth_account.signers.local import LocalAccount

from agent.errors import UserInputError
from agent.settings import Settings

log = structlog.get_logger(__name__)

LOCAL_CHAIN_IDS = frozenset({31337})


class SignerError(UserInputError):
    """No usable key: missing, undecryptable, or a plain key for a chain that is not local. Never holds a secret."""


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A signed transaction: its raw bytes (what is broadcast and journaled) and its hash (0x hex)."""

    raw: bytes
    tx_hash: str


class Signer(Protocol):
    """Signs EIP-1559 transactions for one account."""

    @property
    def address(self) -> str: ...

    def sign(self, tx: dict[str, Any]) -> SignedTx: ...


class LocalSigner:
    """Signs in-process with a decrypted key held only inside the eth-account object."""

    __slots__ = ("_account",)

    def __init__(self, account: LocalAccount) -> None:
        self._account = account

    @property
    def address(self) -> str:
        return str(self._account.address)

    def sign(self, tx: dict[str, Any]) -> SignedTx:
        signed = self._account.sign_transaction(tx)
        return SignedTx(bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex())

    def __repr__(self) -> str:
        return f"LocalSigner({self.address})"


def keystore_password(settings: Settings) -> str:
    """Returns the keystore password: `BALLAST_KEYSTORE_PASSWORD`, else the first line of
    `BALLAST_KEYSTORE_PASSWORD_FILE`. Raises SignerError when neither is set."""
    if settings.keystore_password is not None:
        return settings.keystore_password.get_secret_value()
    path = settings.keystore_password_file
    if path is None:
        raise SignerError("keystore password missing: set BALLAST_KEYSTORE_PASSWORD or BALLAST_KEYSTORE_PASSWORD_FILE")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SignerError(f"{path}: cannot read the keystore password ({error.strerror})") from None
    return text.splitlines()[0] if text else ""


def keystore_signer(keystore: Path, password: str) -> LocalSigner:
    """Returns a signer for the account of an encrypted JSON keystore. Raises SignerError (without the password)."""
    try:
        encrypted = json.loads(keystore.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SignerError(f"{keystore}: cannot read the keystore ({type(error).__name__})") from None
    try:
        key = Account.decrypt(encrypted, password)
    except ValueError:
        raise SignerError(f"{keystore}: wrong password or corrupt keystore") from None
    return LocalSigner(Account.from_key(key))


def load_signer(settings: Settings, chain_id: int, account: str | None = None,
                accept: Callable[[str], bool] | None = None) -> Signer:
    """Returns the signer the settings configure for `chain_id` and `account`: the keystore if set, else
    `BALLAST_PRIVATE_KEY`, which is accepted for a local chain only (with a warning). Of several comma-separated
    keys, the one of `account` is used, or the first whose address `accept` takes (a keeper of a Safe's module).

    Raises SignerError when no key is configured, no configured key is `account`'s, or a plain key is configured for
    a chain that is not local.
    """
    if settings.keystore is not None:
        return keystore_signer(settings.keystore, keystore_password(settings))
    if settings.private_key is not None:
        if chain_id not in LOCAL_CHAIN_IDS:
            raise SignerError(
                f"BALLAST_PRIVATE_KEY is refused for chain id {chain_id}: use an encrypted keystore "
                "(BALLAST_KEYSTORE) on any chain but the local one"
            )
        signers = [LocalSigner(Account.from_key(k)) for k in settings.private_key.get_secret_value().split(",")]
        signer = next((s for s in signers if (account is None or s.address.lower() == account.lower())
                       and (accept is None or accept(s.address))), None)
        if signer is None:
            wanted = f"account {account}" if account else "an address the executor accepts (a keeper of the module)"
            raise SignerError(f"BALLAST_PRIVATE_KEY holds no key of {wanted}")
        log.warning("signing with a plain private key: local chain only", chain_id=chain_id, account=signer.address)
        return signer
    raise SignerError("no signing key: set BALLAST_KEYSTORE (and its password), or BALLAST_PRIVATE_KEY on a local "
                      "chain")

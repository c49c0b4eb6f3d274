"""Pure parts of execution: fee policy, intent ids, the recipe-calls migration, signer key sources, revert reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from web3.exceptions import ContractLogicError

from agent.chain.fees import MAX_BUMPS, FeeCapExceeded, Fees, bumped, fees_for, gas_cap_wei, replacement_fees
from agent.chain.signer import SignerError, keystore_signer, load_signer
from agent.execution.executor import revert_reason
from agent.execution.journal import MIGRATIONS, Journal, intent_id
from agent.policy import Limits
from agent.settings import Settings

GWEI = 10**9
KEY = "0x" + "11" * 32


@given(st.integers(1, 10**13), st.integers(1, 10**13))
def test_a_bump_raises_both_fee_fields_by_at_least_ten_percent_plus_one_wei(fee: int, tip: int) -> None:
    previous = Fees(max(fee, tip), tip)
    new = bumped(previous)
    assert new.max_fee_per_gas_wei >= previous.max_fee_per_gas_wei * 11 // 10 + 1
    assert new.max_priority_fee_per_gas_wei >= previous.max_priority_fee_per_gas_wei * 11 // 10 + 1
    assert new.max_fee_per_gas_wei >= new.max_priority_fee_per_gas_wei


def test_gas_cap_holds_unless_the_health_factor_is_near_one() -> None:
    limits = Limits(max_gas_price_gwei=50, gas_cap_lift_hf=0.1)
    assert fees_for(20 * GWEI, 2 * GWEI, gas_cap_wei(limits, 1.5)) == Fees(42 * GWEI, 2 * GWEI)
    assert fees_for(40 * GWEI, 2 * GWEI, gas_cap_wei(limits, 1.5)) == Fees(50 * GWEI, 2 * GWEI)
    with pytest.raises(FeeCapExceeded, match="above the gas cap 50 gwei"):
        fees_for(60 * GWEI, 2 * GWEI, gas_cap_wei(limits, 1.5))
    assert fees_for(60 * GWEI, 2 * GWEI, gas_cap_wei(limits, 1.05)) == Fees(122 * GWEI, 2 * GWEI)


def test_replacements_stop_at_the_cap_or_after_the_last_bump() -> None:
    previous = Fees(48 * GWEI, 2 * GWEI)
    assert replacement_fees(previous, None, 0, 100 * GWEI) == bumped(previous)
    assert replacement_fees(previous, None, 0, 50 * GWEI) is None
    assert replacement_fees(previous, None, MAX_BUMPS, None) is None


def test_a_journal_of_the_first_schema_gains_recipe_calls_and_keeps_its_rows(tmp_path: Path) -> None:
    # Given a journal written by the first schema (revision 0001), with one intent
    db = tmp_path / "journal.sqlite"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(sa.text(
            "INSERT INTO intents (id, portfolio, plan_id, chain, chain_id, account, action_index, step, kind, mode, "
            "state, to_address, data, snapshot_block, created_at, updated_at) VALUES ('old', 'p', 'x', 'c', 1, '0xA', "
            "0, 0, 'repay', 'live', 'confirmed', '0xB', '0x', 7, 1.0, 2.0)"))
    engine.dispose()

    # When it is opened now, then the intent is still there, without calls, and a recipe can list its calls
    journal = Journal(db)
    old = journal.intent("old")
    assert old is not None and (old.state, old.calls, old.recipe_calls()) == ("confirmed", None, [])
    journal.add_intent(id="new", portfolio="p", plan_id="y", chain="c", chain_id=1, account="0xK", action_index=0,
                       step=0, kind="recipe", mode="live", to_address="0xM", data="0x", value_wei="0",
                       description="", notional_usd=1.0, snapshot_block=8, plan_reason="", action_reason="",
                       calls='[{"action": 0, "kind": "repay", "to": "0xP", "data": "0x", "description": "repay"}]')
    new = journal.intent("new")
    assert new is not None and [c["kind"] for c in new.recipe_calls()] == ["repay"]


def test_intent_ids_are_deterministic_and_distinct_per_step() -> None:
    ids = {intent_id("p", "plan", 10, a, s) for a in range(3) for s in range(2)}
    assert len(ids) == 6 and intent_id("p", "plan", 10, 0, 0) == intent_id("p", "plan", 10, 0, 0)


def test_plain_key_is_refused_off_the_local_chain_without_showing_it() -> None:
    settings = Settings(_env_file=None, private_key=SecretStr(KEY))  # type: ignore[call-arg]
    assert load_signer(settings, 31337).address == Account.from_key(KEY).address
    with pytest.raises(SignerError) as refused:
        load_signer(settings, 1)
    assert "chain id 1" in str(refused.value) and KEY[2:] not in str(refused.value)
    assert KEY[2:] not in repr(load_signer(settings, 31337))


def test_keystore_is_decrypted_with_its_password_and_a_wrong_one_is_named(tmp_path: Path) -> None:
    keystore = tmp_path / "key.json"
    keystore.write_text(json.dumps(Account.encrypt(KEY, "correct horse", iterations=2)))
    assert keystore_signer(keystore, "correct horse").address == Account.from_key(KEY).address
    with pytest.raises(SignerError, match="wrong password") as refused:
        keystore_signer(keystore, "wrong")
    assert "wrong" not in str(refused.value).replace("wrong password", "")


def test_revert_reasons_name_aave_codes_and_decode_error_strings() -> None:
    error_string = "0x08c379a0" + (
        "0000000000000000000000000000000000000000000000000000000000000020"
        "0000000000000000000000000000000000000000000000000000000000000002"
        "3335000000000000000000000000000000000000000000000000000000000000")
    assert revert_reason(ContractLogicError("execution reverted", data=error_string)) == \
        "35 (HEALTH_FACTOR_LOWER_THAN_LIQUIDATION_THRESHOLD)"
    assert revert_reason(ContractLogicError("execution reverted: STF")) == "STF"

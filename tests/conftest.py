"""Shared fixtures: one anvil with the deployed local world per test session, reverted to a clean snapshot around
every test that uses it, an in-process eth-tester chain for ABI-level tests, and journals on SQLite and on a real
PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from web3 import Web3

from agent.localnet import Anvil, Localnet, build_localnet
from agent.localnet.chain import LocalChain
from agent.localnet.policies import render_policy
from agent.policy import Policy, parse_policy
from tests.postgres import PostgresServer, postgres_server

TESTS_DIR = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test by its folder (unit, chain, e2e, faults) so `-m` selects them."""
    for item in items:
        folder = Path(str(item.fspath)).relative_to(TESTS_DIR).parts[0]
        if folder in ("unit", "chain", "e2e", "faults"):
            item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture(scope="session")
def _localnet_session() -> Iterator[Localnet]:
    with Anvil() as node:
        localnet = build_localnet(node.url, node.chain_id)
        # Test set-up may act as a demo Safe (`chain.send(fn, safe)`) without its owner's signature; the agent's
        # own transactions are signed with real keys and gain nothing from this.
        w3 = Web3(Web3.HTTPProvider(node.url))
        for safe in localnet.demo_accounts.values():
            w3.provider.make_request("anvil_impersonateAccount", [safe])
            w3.provider.make_request("anvil_setBalance", [safe, hex(10**21)])
        yield localnet


@pytest.fixture
def localnet(_localnet_session: Localnet) -> Iterator[Localnet]:
    """The deployed and seeded local world, restored to its freshly seeded state after the test."""
    w3 = Web3(Web3.HTTPProvider(_localnet_session.rpc_url))
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    base_fee = w3.eth.get_block("pending")["baseFeePerGas"]
    try:
        yield _localnet_session
    finally:
        # anvil consumes a snapshot when it reverts to it: the next test takes a new one.
        assert w3.provider.make_request("evm_revert", [snapshot])["result"] is True
        # The revert restores the blocks but not anvil's next base fee: a test that raised it would leak it.
        w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(base_fee)])


@pytest.fixture
def chain(localnet: Localnet) -> LocalChain:
    """A transaction helper on the local world (unlocked dev accounts, raises on revert)."""
    return LocalChain(Web3(Web3.HTTPProvider(localnet.rpc_url)))


@pytest.fixture
def demo_policy(localnet: Localnet) -> Callable[[str], Policy]:
    """Return the ready-to-use policy `ballast localnet up` writes for a demo portfolio ("leveraged-long", …)."""

    def policy(name: str) -> Policy:
        return parse_policy(render_policy(name, localnet.demo_accounts[name], localnet), f"{name}.yaml")

    return policy


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (started on first use, stopped at the end)."""
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """`BALLAST_DB` of a fresh, empty journal: a SQLite file, then a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "journal.sqlite")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.url(f"journal_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def tester_w3() -> Web3:
    """An in-process EVM (eth-tester with py-evm) for ABI-level tests that need no deployed protocol."""
    from web3 import EthereumTesterProvider

    return Web3(EthereumTesterProvider())

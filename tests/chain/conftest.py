"""Fixtures of the chain tests that drive the executor: a web3 on the local world, and blocks mined only on request
(transactions wait in the mempool until the test calls `anvil_mine`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web3 import Web3

from agent.localnet import Localnet
from tests.chain.execution_support import rpc


@pytest.fixture
def w3(localnet: Localnet) -> Web3:
    return Web3(Web3.HTTPProvider(localnet.rpc_url))


@pytest.fixture
def automine_off(w3: Web3) -> Iterator[None]:
    rpc(w3, "evm_setAutomine", False)
    try:
        yield
    finally:
        rpc(w3, "evm_setAutomine", True)

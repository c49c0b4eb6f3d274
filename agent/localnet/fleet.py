"""Seed a fleet of Aave accounts (some with a Uniswap v3 LP position) on the local world, fast, for the fleet
tests and benchmarks, and the policy that watches each.

How it stays fast for a thousand accounts: anvil impersonates every account (no keys), one JSON-RPC batch gives
each account gas money and sends its one transaction (`approveDelegation` of its debt to the seeder), and the
`FleetSeeder` contract (`deploy/localnet/contracts/FleetSeeder.sol`) supplies collateral and borrows on behalf of
dozens of accounts per transaction. Automine is off while the batches go in; blocks are mined until the pool is
empty. About 2 transactions per account and a handful of blocks in all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from eth_account import Account
from web3 import Web3

from agent.localnet.anvil import LocalnetError
from agent.localnet.chain import LocalChain
from agent.localnet.seed import LP_FEE, token_units
from agent.localnet.world import TICK_SPACING, tick_for_weth_price
from agent.policy import Policy, parse_policy

if TYPE_CHECKING:
    from agent.localnet import Localnet

ACCOUNTS_PER_TX = 40  # supply + borrow on behalf cost ~400k gas per account: 40 fit in anvil's 30M block
LP_PER_TX = 40
TX_GAS = 28_000_000
LP_RANGE_USD = (1_600.0, 2_500.0)
_GAS_MONEY_WEI = hex(10**18)


@dataclass(frozen=True)
class FleetAccount:
    """One seeded account: WETH supplied to Aave, USDC borrowed, optionally idle USDC and an LP position."""

    address: str
    supply_weth: float
    borrow_usdc: float
    idle_usdc: float = 0.0
    lp: bool = False


def fleet_addresses(count: int, first: int = 0) -> list[str]:
    """Return `count` distinct addresses nobody holds a key for (anvil impersonates them)."""
    return [Web3.to_checksum_address(f"0xf1ee7{i:035x}") for i in range(first, first + count)]


def keyed_account(index: int) -> tuple[str, str]:
    """Return (address, private key) of a fleet account that can sign (local chain only: the key is derived from a
    public label)."""
    key = Web3.keccak(text=f"ballast fleet account {index}")
    return Account.from_key(key).address, Web3.to_hex(key)


def borrow_for_health_factor(supply_weth: float, health_factor: float, weth_usd: float = 2_000.0) -> float:
    """Return the USDC debt that gives `supply_weth` of collateral the health factor `health_factor` (WETH's
    liquidation threshold is 82.5%)."""
    return supply_weth * weth_usd * 0.825 / health_factor


def seed_fleet(localnet: Localnet, accounts: Sequence[FleetAccount]) -> None:
    """Seed every account on the local world (see the module docstring); raises `LocalnetError` if any
    transaction reverted."""
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url, request_kwargs={"timeout": 120}))
    chain = LocalChain(w3)
    world, deployer = localnet.world, localnet.accounts[0].address
    seeder = chain.deploy("FleetSeeder", sender=deployer)
    pool = chain.at("Pool", world.contracts["Pool"])
    usdc, weth = world.tokens["USDC"], world.tokens["WETH"]
    debt_token = chain.at("VariableDebtToken", pool.functions.getReserveData(usdc).call()[10])
    url = localnet.rpc_url
    _rpc_batch(url, [("anvil_autoImpersonateAccount", [True])]
               + [("anvil_setBalance", [a.address, _GAS_MONEY_WEI]) for a in accounts])
    _rpc_batch(url, [("evm_setAutomine", [False])])
    try:
        delegations = [_tx(a.address, debt_token.address, debt_token.encode_abi(
            "approveDelegation", [seeder.address, token_units("USDC", a.borrow_usdc)]), 120_000) for a in accounts]
        _mine_all(url, _send_all(url, delegations))
        seeds = []
        for lo in range(0, len(accounts), ACCOUNTS_PER_TX):
            chunk = [(a.address, token_units("WETH", a.supply_weth), token_units("USDC", a.borrow_usdc))
                     for a in accounts[lo:lo + ACCOUNTS_PER_TX]]
            seeds.append(_tx(deployer, seeder.address, seeder.encode_abi("seedAave", [pool.address, weth, usdc, chunk]),
                             TX_GAS))
        usdc_token = chain.at("MintableERC20", usdc)
        mints = [_tx(deployer, usdc, usdc_token.encode_abi("mint", [a.address, token_units("USDC", a.idle_usdc)]),
                     100_000) for a in accounts if a.idle_usdc]
        # One kind at a time: anvil drops the small transactions queued behind block-sized ones of one sender.
        for sends in (seeds, mints, _lp_sends(localnet, seeder.address, deployer, [a for a in accounts if a.lp])):
            if sends:
                _mine_all(url, _send_all(url, sends))
    finally:
        _rpc_batch(url, [("evm_setAutomine", [True]), ("anvil_autoImpersonateAccount", [False])])


def _lp_sends(localnet: Localnet, seeder: str, deployer: str, owners: Sequence[FleetAccount]) -> list[Any]:
    world = localnet.world
    chain = LocalChain(Web3(Web3.HTTPProvider(localnet.rpc_url)))
    manager = world.contracts["NonfungiblePositionManager"]
    token0, token1 = sorted((world.tokens["WETH"], world.tokens["USDC"]), key=lambda a: int(a, 16))
    ticks = sorted(tick_for_weth_price(p, world, TICK_SPACING[LP_FEE]) for p in LP_RANGE_USD)
    amounts = {world.tokens["WETH"]: token_units("WETH", 1), world.tokens["USDC"]: token_units("USDC", 2_000)}
    seeder_contract = chain.at("FleetSeeder", seeder)
    sends = []
    for lo in range(0, len(owners), LP_PER_TX):
        params = [(token0, token1, LP_FEE, ticks[0], ticks[1], amounts[token0], amounts[token1], 0, 0, a.address,
                   2**64) for a in owners[lo:lo + LP_PER_TX]]
        sends.append(_tx(deployer, seeder, seeder_contract.encode_abi("seedLp", [manager, params]), TX_GAS))
    return sends


def _tx(sender: str, to: str, data: str, gas: int) -> tuple[str, list[Any]]:
    return "eth_sendTransaction", [{"from": sender, "to": to, "data": data, "gas": hex(gas)}]


def _send_all(url: str, sends: Sequence[tuple[str, list[Any]]]) -> list[str]:
    """Send transactions in one batch with explicit nonces (anvil hands a batch's concurrent sends of one sender
    the same pending nonce, and the later replaces the earlier); return their hashes."""
    senders = sorted({params[0]["from"] for _m, params in sends})
    counts = _rpc_batch(url, [("eth_getTransactionCount", [s, "pending"]) for s in senders])
    nonces = {sender: int(count, 16) for sender, count in zip(senders, counts, strict=True)}
    numbered = []
    for method, (tx,) in sends:
        numbered.append((method, [{**tx, "nonce": hex(nonces[tx["from"]])}]))
        nonces[tx["from"]] += 1
    return [str(h) for h in _rpc_batch(url, numbered)]


def _rpc_batch(url: str, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
    """Send `calls` as one JSON-RPC batch; return their results in order, or raise the first error."""
    body: list[Any] = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
    replies = sorted(requests.post(url, json=body, timeout=300).json(), key=lambda r: r["id"])
    for reply in replies:
        if "error" in reply:
            raise LocalnetError(f"{calls[reply['id']][0]}: {reply['error'].get('message', reply['error'])}")
    return [reply["result"] for reply in replies]


def _mine_all(url: str, hashes: Sequence[str]) -> None:
    """Mine blocks until every transaction of `hashes` has a receipt; raise if any reverted."""
    for _ in range(10 + len(hashes)):
        _rpc_batch(url, [("anvil_mine", ["0x1"])])
        receipts = _rpc_batch(url, [("eth_getTransactionReceipt", [h]) for h in hashes])
        if all(r is not None for r in receipts):
            failed = [h for h, r in zip(hashes, receipts, strict=True) if r["status"] != "0x1"]
            if failed:
                raise LocalnetError(f"{len(failed)} seeding transactions reverted, first {failed[0]}")
            return
    raise LocalnetError("seeding transactions were not mined")


def fleet_policy(localnet: Localnet, name: str, account: str, lp: bool = False, mode: str = "dry-run",
                 interval_s: float = 12, health_factor_target: float = 1.8, module: str | None = None) -> Policy:
    """Return the policy of one fleet account: its Aave account (and LP positions) priced by the local feeds, kept
    inside a health-factor band of [1.5, 3.0] with target `health_factor_target` (1.8); executed through the
    keeper `module` of its Safe when given, else directly."""
    contracts = localnet.world.contracts
    feeds = ", ".join(f'{symbol}: "{address}"' for symbol, address in localnet.world.feeds.items())
    uniswap = (f'\n        uniswap_v3: {{position_manager: "{contracts["NonfungiblePositionManager"]}", swap_router: '
               f'"{contracts["SwapRouter"]}", quoter: "{contracts["QuoterV2"]}"}}') if lp else ""
    executor = f'{{kind: safe_module, module: "{module}"}}' if module else "{kind: direct}"
    return parse_policy(f"""\
version: 1
portfolio:
  name: {name}
  account: "{account}"
  executor: {executor}
  underlying: WETH
  chains:
    - name: localnet
      chain_id: {localnet.world.chain_id}
      rpc: ["{localnet.rpc_url}"]
      protocols:
        aave_v3: {{pool_addresses_provider: "{contracts["PoolAddressesProvider"]}"}}{uniswap}
        chainlink: {{max_age_s: 3600, feeds: {{{feeds}}}}}
bands:
  health_factor: {{min: 1.5, target: {health_factor_target:g}, max: 3.0, boost: false}}
triggers: {{interval_s: {interval_s:g}, max_hedge_age_s: 86400, price_move_pct: 2.0, cooldown_s: 60}}
hedging: {{instruments: [aave_borrow, spot_swap], max_slippage_bps: 30, min_trade_usd: 500}}
limits: {{max_notional_per_tx_usd: 250000, max_daily_turnover_usd: 2000000, max_gas_price_gwei: 200}}
execution: {{mode: {mode}, confirmations: 1, replace_after_s: 30, deadline_s: 600}}
""", f"{name}.yaml")


def fleet_policies(localnet: Localnet, accounts: Sequence[FleetAccount], **kwargs: Any) -> list[Policy]:
    """Return one policy per account, named fleet-<index>; parsed once per kind and copied (parsing a thousand
    YAML files would take longer than the seeding)."""
    templates = {lp: fleet_policy(localnet, "fleet", accounts[0].address, lp, **kwargs) for lp in (False, True)}
    return [templates[a.lp].model_copy(update={"portfolio": templates[a.lp].portfolio.model_copy(
        update={"name": f"fleet-{i}", "account": a.address})}) for i, a in enumerate(accounts)]

"""Contract artifacts for the local world: the protocols' npm build outputs, and the project's own Solidity (the
local reference venues and the production keeper module) compiled offline with the pinned npm `solc` (cached by
source hash, never committed)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from functools import cache
from typing import Any

from agent.localnet.anvil import LOCALNET_DIR, LocalnetError

NODE_MODULES = LOCALNET_DIR / "node_modules"
CONTRACTS_DIR = LOCALNET_DIR / "contracts"
PRODUCTION_CONTRACTS_DIR = LOCALNET_DIR.parents[1] / "contracts"
BUILD_DIR = LOCALNET_DIR / "build"

# Where each npm artifact lives, by the name the deployer uses.
NPM_ARTIFACTS = {
    # Aave v3.0 (@aave/core-v3)
    "PoolAddressesProvider": "@aave/core-v3/artifacts/contracts/protocol/configuration/PoolAddressesProvider.sol",
    "ACLManager": "@aave/core-v3/artifacts/contracts/protocol/configuration/ACLManager.sol",
    "Pool": "@aave/core-v3/artifacts/contracts/protocol/pool/Pool.sol",
    "PoolConfigurator": "@aave/core-v3/artifacts/contracts/protocol/pool/PoolConfigurator.sol",
    "DefaultReserveInterestRateStrategy":
        "@aave/core-v3/artifacts/contracts/protocol/pool/DefaultReserveInterestRateStrategy.sol",
    "AToken": "@aave/core-v3/artifacts/contracts/protocol/tokenization/AToken.sol",
    "StableDebtToken": "@aave/core-v3/artifacts/contracts/protocol/tokenization/StableDebtToken.sol",
    "VariableDebtToken": "@aave/core-v3/artifacts/contracts/protocol/tokenization/VariableDebtToken.sol",
    "AaveOracle": "@aave/core-v3/artifacts/contracts/misc/AaveOracle.sol",
    "AaveProtocolDataProvider": "@aave/core-v3/artifacts/contracts/misc/AaveProtocolDataProvider.sol",
    "MintableERC20": "@aave/core-v3/artifacts/contracts/mocks/tokens/MintableERC20.sol",
    **{
        lib: f"@aave/core-v3/artifacts/contracts/protocol/libraries/logic/{lib}.sol"
        for lib in (
            "SupplyLogic", "BorrowLogic", "LiquidationLogic", "EModeLogic", "BridgeLogic", "FlashLoanLogic",
            "PoolLogic", "ConfiguratorLogic",
        )
    },
    # Uniswap v3 (@uniswap/v3-core, @uniswap/v3-periphery)
    "UniswapV3Factory": "@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol",
    "UniswapV3Pool": "@uniswap/v3-core/artifacts/contracts/UniswapV3Pool.sol",
    "NonfungiblePositionManager": "@uniswap/v3-periphery/artifacts/contracts/NonfungiblePositionManager.sol",
    "SwapRouter": "@uniswap/v3-periphery/artifacts/contracts/SwapRouter.sol",
    "QuoterV2": "@uniswap/v3-periphery/artifacts/contracts/lens/QuoterV2.sol",
    # Safe 1.4.1 (@safe-global/safe-contracts)
    "Safe": "@safe-global/safe-contracts/build/artifacts/contracts/Safe.sol",
    "SafeProxyFactory": "@safe-global/safe-contracts/build/artifacts/contracts/proxies/SafeProxyFactory.sol",
    "MultiSendCallOnly": "@safe-global/safe-contracts/build/artifacts/contracts/libraries/MultiSendCallOnly.sol",
    "CompatibilityFallbackHandler":
        "@safe-global/safe-contracts/build/artifacts/contracts/handler/CompatibilityFallbackHandler.sol",
}


@dataclass(frozen=True)
class Artifact:
    """A contract's ABI and creation bytecode (hex, 0x-prefixed), with its unresolved library links."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    link_references: dict[str, list[int]]  # library name -> byte offsets into the creation code

    def linked(self, libraries: dict[str, str]) -> str:
        """Return the creation bytecode with every library placeholder replaced by its deployed address."""
        code = self.bytecode[2:]
        for library, offsets in self.link_references.items():
            address = libraries[library][2:].lower()
            for start in offsets:
                code = code[: 2 * start] + address + code[2 * start + 40 :]
        return "0x" + code


@cache
def artifact(name: str) -> Artifact:
    """Return the named contract's artifact, from the npm packages or from the project's own sources."""
    if name in NPM_ARTIFACTS:
        path = NODE_MODULES / NPM_ARTIFACTS[name] / f"{name}.json"
        if not path.exists():
            raise LocalnetError(f"missing artifact {path}: run `npm ci` in {LOCALNET_DIR}")
        raw = json.loads(path.read_text())
        links = {
            library: [ref["start"] for ref in refs]
            for by_file in raw.get("linkReferences", {}).values()
            for library, refs in by_file.items()
        }
        return Artifact(name, raw["abi"], raw["bytecode"], raw["deployedBytecode"], links)
    compiled = _compiled_local_contracts()
    if name not in compiled:
        raise LocalnetError(f"unknown contract {name!r}")
    entry = compiled[name]
    return Artifact(name, entry["abi"], entry["bytecode"], entry["deployedBytecode"], {})


@cache
def _compiled_local_contracts() -> dict[str, Any]:
    """Compile deploy/localnet/contracts/*.sol and contracts/*.sol with npm solc, reusing the cached output while
    sources are unchanged."""
    digest = hashlib.sha256()
    for source in [*sorted(CONTRACTS_DIR.glob("*.sol")), *sorted(PRODUCTION_CONTRACTS_DIR.glob("*.sol"))]:
        digest.update(source.parent.name.encode() + b"/" + source.name.encode() + b"\0" + source.read_bytes())
    digest.update((LOCALNET_DIR / "compile.cjs").read_bytes())
    digest.update((LOCALNET_DIR / "package-lock.json").read_bytes())
    cached = BUILD_DIR / f"contracts-{digest.hexdigest()[:16]}.json"
    if cached.exists():
        result: dict[str, Any] = json.loads(cached.read_text())
        return result
    try:
        completed = subprocess.run(
            ["node", str(LOCALNET_DIR / "compile.cjs")], capture_output=True, check=False, timeout=300
        )
    except FileNotFoundError as exc:
        raise LocalnetError("node not found: Node.js is needed to compile the local reference contracts") from exc
    if completed.returncode != 0:
        first = (completed.stderr.decode(errors="replace").strip().splitlines() or ["solc failed"])[0]
        raise LocalnetError(f"compiling {CONTRACTS_DIR} and {PRODUCTION_CONTRACTS_DIR}: {first}")
    BUILD_DIR.mkdir(exist_ok=True)
    for stale in BUILD_DIR.glob("contracts-*.json"):
        stale.unlink()
    cached.write_bytes(completed.stdout)
    result = json.loads(completed.stdout)
    return result

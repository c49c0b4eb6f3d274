"""Policies for pure planner tests: one account on the local chain with Aave, and the sections a test sets."""

from __future__ import annotations

from agent.policy import Policy, parse_policy

OWNER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def local_policy(name: str, sections: str) -> Policy:
    """Return a validated policy for portfolio `name` of OWNER on chain 31337 (Aave only), with `sections` (YAML
    from `bands:` on) appended."""
    return parse_policy(local_policy_text(name, sections))


def local_policy_text(name: str, sections: str) -> str:
    """Return the YAML of `local_policy` (the portfolio section takes lines 1 to 12)."""
    return f"""\
version: 1
portfolio:
  name: {name}
  account: "{OWNER}"
  underlying: WETH
  chains:
    - name: localnet
      chain_id: 31337
      rpc: ["http://127.0.0.1:8545"]
      protocols:
        aave_v3:
          pool_addresses_provider: "0x5FbDB2315678afecb367f032d93F642f64180aa3"
{sections}"""

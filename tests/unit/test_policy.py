"""The policy loader: models, band sanity, ${VAR} expansion and one-line errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import PolicyError
from agent.policy import load_policy, parse_policy, policy_json_schema_text

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "tests" / "data" / "policies"
EXAMPLE = ROOT / "config" / "policy.example.yaml"
SCHEMA = ROOT / "config" / "policy.schema.json"

VALID = (POLICIES / "valid-minimal.yaml").read_text()

# fixture → the exact lines of its PolicyError (the file name is prefixed by the test).
MALFORMED = {
    "bad-yaml.yaml": [
        ":11: invalid YAML: expected ',' or ']', but got '<scalar>' (while parsing a flow sequence at line 10)"
    ],
    "unknown-field.yaml": [
        ":16: hedging.max_slipage_bps: unknown field; expected one of instruments, max_slippage_bps, min_trade_usd"
    ],
    "wrong-type.yaml": [":9: portfolio.chains[0].chain_id: expected an integer (got 'mainnet')"],
    "non-checksummed-address.yaml": [
        ":5: portfolio.account: expected the EIP-55 checksummed address 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        " (got '0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266')"
    ],
    "min-above-max.yaml": [":16: bands.delta_usd.max: expected a value above min (5000) (got -5000)"],
    "health-factor-trigger-near-target.yaml": [
        ":15: bands.health_factor.min: expected min and target at least 5% of target apart (min ≤ 1.71): "
        "closer, repay and boost would chase each other (got 1.75)"
    ],
    "missing-chain.yaml": [":7: portfolio.chains: expected at least 1 item (got an empty list)"],
    "missing-env-var.yaml": [
        ":10: portfolio.chains[0].rpc[0]: environment variable BALLAST_TEST_UNSET_RPC_URL is not set"
    ],
    "duplicate-chain-id.yaml": [
        ":15: portfolio.chains[1].chain_id: expected each chain once: chain id 31337 is already chains[0]"
        " (got 31337)"
    ],
    "duplicate-key.yaml": [":16: bands.health_factor: expected each key once (first at line 15)"],
    "not-a-mapping.yaml": [":2: expected a mapping of policy sections (got a list)"],
    "several-problems.yaml": [
        ":13: portfolio.chains[0].protocols.aave_v3.pool_addresses_provider: expected an address in quotes: "
        "YAML reads an unquoted 0x… as a number (got the number 0x5fbdb2315678afecb367f032d93f642f64180aa3)",
        ":14: portfolio.chains[0].protocols.gmx: unknown field; expected one of aave_v3, uniswap_v3, chainlink, perps, "
        "options, morpho_blue",
        ":17: execution.mode: expected 'dry-run' or 'live' (got 'yolo')",
    ],
}


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    """Returns the lines of the PolicyError that parsing `text` as `p.yaml` raises."""
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, "p.yaml", env=env if env is not None else {})
    return raised.value.lines()


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_policy_gives_one_line_per_problem_with_file_line_and_field(name: str) -> None:
    path = POLICIES / name

    with pytest.raises(PolicyError) as raised:
        load_policy(path, env={})

    assert raised.value.lines() == [f"{path}{line}" for line in MALFORMED[name]]


def test_example_policy_loads_with_the_values_of_design() -> None:
    policy = load_policy(EXAMPLE, env={})

    assert policy.portfolio.name == "delta-neutral-lp"
    assert policy.portfolio.chains[0].rpc == ("http://127.0.0.1:8545",)
    assert policy.portfolio.chains[0].protocols.names() == ["aave_v3", "uniswap_v3", "chainlink"]
    assert policy.bands.names() == ["health_factor", "delta_usd", "stress_health_factor", "gamma_usd_1pct",
                                    "vega_usd_1vol"]
    assert policy.risk.scenarios[0].name == "ETH -40%, stETH depeg 8%" and policy.risk.betas == {"WBTC": 0.8}
    assert policy.execution.mode == "dry-run"
    assert policy.hedging.instruments == ("perp", "aave_borrow", "spot_swap", "options")


def test_unset_sections_take_the_defaults_of_design() -> None:
    policy = parse_policy(VALID)

    assert (policy.triggers.interval_s, policy.triggers.cooldown_s) == (12.0, 60.0)
    assert policy.limits.max_gas_price_gwei == 200.0
    assert (policy.execution.mode, policy.execution.deadline_s) == ("dry-run", 600.0)
    assert policy.bands.health_factor is not None and policy.bands.health_factor.boost is False


def test_greek_band_target_defaults_to_zero_inside_the_band_else_to_the_midpoint() -> None:
    text = VALID + "  delta_usd: {min: -100, max: 300}\n  vega_usd_1vol: {min: 100, max: 300}\n"

    bands = parse_policy(text).bands

    assert bands.delta_usd is not None and bands.delta_usd.target == 0.0
    assert bands.vega_usd_1vol is not None and bands.vega_usd_1vol.target == 200.0


def test_env_reference_expands_and_the_url_stays_out_of_the_repr() -> None:
    secret_url = "https://rpc.example/v3/SECRETKEY"
    text = VALID.replace('"http://127.0.0.1:8545"', '"${MAIN_RPC}", "https://fallback.example"')

    policy = parse_policy(text, env={"MAIN_RPC": secret_url})

    assert policy.portfolio.chains[0].rpc == (secret_url, "https://fallback.example")
    assert "SECRETKEY" not in repr(policy)


def test_error_shows_the_env_reference_never_its_secret_value() -> None:
    text = VALID.replace('"http://127.0.0.1:8545"', '"${MAIN_RPC}"')

    lines = problems(text, env={"MAIN_RPC": "ftp://user:pass@rpc.example/v3/SECRETKEY"})

    assert lines == ["p.yaml:9: portfolio.chains[0].rpc[0]: expected an http(s):// or ws(s):// URL (got '${MAIN_RPC}')"]


def test_url_written_in_the_file_is_shown_as_scheme_and_host_only() -> None:
    text = VALID.replace('"http://127.0.0.1:8545"', '"ftp://user:pass@rpc.example/v3/SECRETKEY?x=1"')

    assert problems(text) == [
        "p.yaml:9: portfolio.chains[0].rpc[0]: expected an http(s):// or ws(s):// URL (got 'ftp://rpc.example/…')"
    ]


def test_missing_required_field_points_at_its_parent_mapping() -> None:
    text = VALID.replace('  account: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"\n', "")

    assert problems(text) == ["p.yaml:2: portfolio.account: required field missing"]


def test_missing_chains_key_is_reported_on_the_portfolio_line() -> None:
    text = "\n".join(line for line in VALID.splitlines() if not line.startswith(("  chains", "    ", "      ")))

    assert problems(text) == ["p.yaml:2: portfolio.chains: required field missing"]


def test_health_factor_min_at_or_below_one_is_refused_as_liquidatable() -> None:
    text = VALID.replace("min: 1.5, target: 1.8", "min: 1.0, target: 1.8")

    assert problems(text) == [
        "p.yaml:14: bands.health_factor.min: expected a health factor above 1: at 1 the position can be "
        "liquidated (got 1.0)"
    ]


def test_boost_needs_max_at_least_five_percent_above_target() -> None:
    text = VALID.replace("max: 3.0}", "max: 1.85, boost: true}")

    assert problems(text) == [
        "p.yaml:14: bands.health_factor.max: expected max and target at least 5% of target apart when boost is "
        "on (max ≥ 1.89): closer, repay and boost would chase each other (got 1.85)"
    ]


def test_target_outside_min_max_names_the_bound_it_crosses() -> None:
    text = VALID.replace("min: 1.5, target: 1.8, max: 3.0", "min: 1.5, target: 3.5, max: 3.0")

    assert problems(text) == ["p.yaml:14: bands.health_factor.target: expected a value below max (3) (got 3.5)"]


def test_policy_without_any_band_is_refused() -> None:
    text = VALID.replace("bands:\n  health_factor: {min: 1.5, target: 1.8, max: 3.0}\n", "bands: {}\n")

    assert problems(text) == [
        "p.yaml:13: bands: expected at least one band of health_factor, delta_usd, stress_health_factor,"
        " gamma_usd_1pct, vega_usd_1vol (got an empty mapping)"
    ]


def test_chain_without_protocol_is_refused() -> None:
    text = VALID.split("      protocols:")[0] + "      protocols: {}\n" + VALID.split("\n", 12)[12]

    assert problems(text) == [
        "p.yaml:10: portfolio.chains[0].protocols: expected at least one protocol of aave_v3, uniswap_v3, "
        "chainlink, perps, options, morpho_blue (got an empty mapping)"
    ]


def test_missing_file_is_one_policy_error_line(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(PolicyError) as raised:
        load_policy(path)

    assert raised.value.lines() == [f"{path}: no such file"]


MORPHO = """\
        morpho_blue:
          morpho: "0xBBBBBbbBBb9cC5e90e3b3Af64bdAF62C37EEFFCb"
          markets: [MARKETS]
"""
MARKET_ID = "0xB323495F7E4148BE5643A4EA4A8221EEF163E4BCCFDEDC2A6F4696BAACBC86CC"


def test_morpho_blue_section_lists_market_ids_in_lower_case() -> None:
    text = VALID.replace("bands:", MORPHO.replace("MARKETS", f'"{MARKET_ID}"') + "bands:")

    morpho = parse_policy(text).portfolio.chains[0].protocols.morpho_blue

    assert morpho is not None and morpho.markets == (MARKET_ID.lower(),)


@pytest.mark.parametrize(("markets", "expected"), [
    (MARKET_ID, "expected a market id in quotes: YAML reads an unquoted 0x… as a number"),
    ('"0x1234"', "expected a market id: 0x followed by 64 hex digits (got '0x1234')"),
    (f'"{MARKET_ID}", "{MARKET_ID.lower()}"', "expected each market once"),
])
def test_morpho_blue_market_ids_must_be_quoted_full_and_unique(markets: str, expected: str) -> None:
    text = VALID.replace("bands:", MORPHO.replace("MARKETS", markets) + "bands:")

    (line,) = problems(text)

    assert line.startswith("p.yaml:15: portfolio.chains[0].protocols.morpho_blue.markets")
    assert expected in line


def test_committed_schema_is_what_the_models_generate() -> None:
    assert SCHEMA.read_text() == policy_json_schema_text(), (
        "config/policy.schema.json is out of date: run `make schema` "
        "(ballast check-policy --write-schema config/policy.schema.json)"
    )

"""The YAML policy: its models (`models.py`) and the loader whose errors name file, line and field (`loader.py`).

A policy is meant to be reviewed and committed by its owner, so secrets stay out of it: any string may hold
`${VAR}` references, expanded from the environment at load time.
"""

from agent.policy.fields import StrictModel, field_error
from agent.policy.loader import load_policy, parse_model, parse_policy, read_text
from agent.policy.models import (
    Bands,
    Execution,
    GreekBand,
    HealthFactorBand,
    Hedging,
    Limits,
    Policy,
    Triggers,
    policy_json_schema,
    policy_json_schema_text,
)
from agent.policy.portfolio import (
    AaveV3,
    Chain,
    Chainlink,
    DirectExecutor,
    Options,
    Perps,
    Portfolio,
    Protocols,
    SafeModuleExecutor,
    UniswapV3,
)

__all__ = [
    "AaveV3", "Bands", "Chain", "Chainlink", "DirectExecutor", "Execution", "GreekBand", "HealthFactorBand",
    "Hedging", "Limits", "Options", "Perps", "Policy", "Portfolio", "Protocols", "SafeModuleExecutor", "StrictModel",
    "Triggers", "UniswapV3", "field_error", "load_policy", "parse_model", "parse_policy", "policy_json_schema",
    "policy_json_schema_text", "read_text",
]

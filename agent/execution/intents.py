"""Plans into intents: a plan's recipe on each chain (`recipe.py`), checked by the guard, journaled as intents — one
per recipe for a Safe (the keeper's one transaction to its module, listing the recipe's calls), one per call for a
direct account."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from web3 import Web3

from agent.adapters.aave_v3 import AaveV3
from agent.adapters.encode import EncodeError, Venues, read_allowance
from agent.adapters.erc20 import TokenRegistry
from agent.adapters.morpho_blue import MorphoBlue
from agent.adapters.options import OptionsVenue, options_venue
from agent.adapters.perps import PerpVenue, perp_venue
from agent.adapters.safe import ModuleConfig, encode_execute, encode_execute_with_flash_loan, read_module_config
from agent.chain.multicall import Block
from agent.execution.guard import Guard, Refusal
from agent.execution.journal import Journal, intent_id
from agent.execution.recipe import Recipe, compile_recipe
from agent.execution.transactions import ChainContext, PortfolioSender
from agent.model import Action, Plan, Snapshot, Token, TxRequest
from agent.policy import Chain, Policy

RECIPE = "recipe"  # the kind of a Safe's intent: the plan's calls on one chain in one module transaction


def discover_venues(chain: Chain, account: str, w3: Web3) -> Venues:
    """Returns the contracts and tokens an account may act through on one chain: the Aave pool as its
    PoolAddressesProvider names it (with its reserves' tokens), the policy's Uniswap router and manager, and the
    derivatives venues (discovered; the underlying only labels what they read, trades do not need it)."""
    protocols, registry = chain.protocols, TokenRegistry()
    pool: str | None = None
    tokens: tuple[Token, ...] = ()
    if protocols.aave_v3 is not None:
        aave = AaveV3(chain.name, account, protocols.aave_v3.pool_addresses_provider, registry)
        aave.discover(w3)
        pool, tokens = aave.pool, aave.tokens
    perps: PerpVenue | None = None
    options: OptionsVenue | None = None
    if protocols.perps is not None:
        perps = perp_venue(protocols.perps.venue, chain.name, account, protocols.perps.market, "", registry)
        perps.discover(w3)
    if protocols.options is not None:
        options = options_venue(protocols.options.venue, chain.name, account, protocols.options.market, "", registry)
        options.discover(w3)
    morpho: MorphoBlue | None = None
    if protocols.morpho_blue is not None:
        morpho = MorphoBlue(chain.name, account, protocols.morpho_blue.morpho, protocols.morpho_blue.markets, registry)
        morpho.discover(w3)
        tokens = (*tokens, *(t for t in morpho.tokens if t not in tokens))
    uniswap = protocols.uniswap_v3
    return Venues(
        chain=chain.name, account=Web3.to_checksum_address(account), aave_pool=pool,
        swap_router=uniswap.swap_router if uniswap else None,
        position_manager=uniswap.position_manager if uniswap else None,
        tokens=tuple(tokens), perps=perps, options=options, morpho=morpho,
    )


class PlanIntents(PortfolioSender):
    """Compiles one portfolio's plans into recipes and journals them as intents sent by `sender` (the account, or
    the keeper of the Safe's `module`)."""

    def __init__(self, policy: Policy, journal: Journal, guard: Guard, chains: dict[str, ChainContext],
                 account: str, module: str | None, sender: str) -> None:
        super().__init__(policy, journal, guard, sender)
        self.chains = chains
        self.account = account
        self.module = module

    def compile(self, plan: Plan, snapshot: Snapshot) -> tuple[list[Recipe], list[Refusal]]:
        """Returns the plan's recipe on each chain it acts on, and every refusal of their calls: actions that cannot
        be encoded, calls against the policy's rules and, for a Safe, against its module's configuration."""
        refusals = [Refusal("allowlist", f"chain {a.chain} is not in the policy", i)
                    for i, a in enumerate(plan.actions) if a.chain not in self.chains]
        recipes = []
        blocks = dict(plan.blocks)
        for name, context in self.chains.items():
            if not any(a.chain == name for a in plan.actions):
                continue
            block: int | str = blocks.get(name) or "latest"
            chain_time = next((c.timestamp for c in snapshot.chains if c.chain == name), snapshot.timestamp)

            def allowance(token: Token, spender: str, w3: Web3 = context.w3, at: int | str = block) -> int:
                return read_allowance(w3, token, self.account, spender, at)

            def lender(action: Action, venues: Venues = context.venues) -> str:
                if action.protocol == "morpho_blue" and venues.morpho is not None:
                    return venues.morpho.morpho
                if action.protocol != "aave_v3" or not venues.aave_pool:
                    raise EncodeError(f"no flash lender {action.protocol!r} on chain {venues.chain}")
                return venues.aave_pool

            recipe, problems = compile_recipe(plan, snapshot, context.venues, allowance,
                                              int(chain_time + self.policy.execution.deadline_s),
                                              self.policy.hedging.max_slippage_bps, lender)
            refusals += [Refusal("encode", why, index) for index, why in problems]
            refusals += self.guard.check_recipe(recipe, self.module_config(context, recipe, block),
                                                atomic=self.module is not None)
            recipes.append(recipe)
        return recipes, refusals

    def module_config(self, context: ChainContext, recipe: Recipe, block: int | str) -> ModuleConfig | None:
        """The Safe's module configuration for the recipe's calls at `block` (None for a direct account)."""
        if self.module is None:
            return None
        lenders = [recipe.flash_loan.lender] if recipe.flash_loan else []
        at = Block(block, "", 0, 0) if isinstance(block, int) else None  # only its number pins the batch
        return read_module_config(context.w3, self.account, self.module, self.sender,
                                  [c.request for c in recipe.calls], lenders, at)

    def _recipe_request(self, recipe: Recipe) -> TxRequest:
        """The keeper's one transaction to the module that runs the recipe (inside its flash loan, if any)."""
        assert self.module is not None
        calls = [c.request for c in recipe.calls]
        loan = recipe.flash_loan
        if loan is None:
            return encode_execute(self.module, calls, recipe.deleverage)
        return encode_execute_with_flash_loan(self.module, loan.lender, loan.asset.address, loan.amount_base_units,
                                              calls, recipe.deleverage)

    def record(self, plan: Plan, pid: str, mode: str, recipes: Sequence[Recipe],
                 refusals: Sequence[Refusal]) -> None:
        """Journals the plan's intents: one per recipe for a Safe, one per call for a direct account, each failed
        with the refusals that concern it; a plan with nothing encodable still goes on record, failed."""
        blocks = dict(plan.blocks)
        for recipe in (r for r in recipes if r.calls):
            base = {"portfolio": self.portfolio, "plan_id": pid, "chain": recipe.chain, "mode": mode,
                    "chain_id": self.chains[recipe.chain].chain.chain_id, "account": self.sender,
                    "snapshot_block": blocks.get(recipe.chain, 0), "plan_reason": plan.reason}
            if self.module is not None:
                self._recipe_intent(plan, recipe, base, [str(r) for r in refusals])
            else:
                self._call_intents(plan, recipe, base, refusals)
        if refusals and not any(r.calls for r in recipes):
            for index, action in enumerate(plan.actions):
                known = self.chains.get(action.chain)
                block = blocks.get(action.chain, 0)
                self.journal.add_intent(
                    id=intent_id(self.portfolio, pid, block, index, 0), portfolio=self.portfolio, plan_id=pid,
                    chain=action.chain, chain_id=known.chain.chain_id if known else 0, account=self.sender,
                    action_index=index, step=0, kind=action.kind, mode=mode, state="failed", to_address="",
                    data="0x", value_wei="0", description=f"{action.kind} {action.asset}",
                    notional_usd=action.notional_usd, snapshot_block=block, plan_reason=plan.reason,
                    action_reason=action.reason, error="; ".join(str(r) for r in refusals),
                )

    def _recipe_intent(self, plan: Plan, recipe: Recipe, base: dict[str, Any], errors: list[str]) -> None:
        request = self._recipe_request(recipe)
        actions = [a for a in plan.actions if a.chain == recipe.chain]
        first = recipe.calls[0].action_index if recipe.flash_loan is None else recipe.flash_loan.action_index
        self.journal.add_intent(
            **base, id=intent_id(self.portfolio, base["plan_id"], base["snapshot_block"], first, 0),
            action_index=first, step=0, kind=RECIPE, state="failed" if errors else "planned",
            to_address=request.to, data="0x" + request.data.hex(), value_wei="0",
            description=f"{request.description}: {recipe.description()}",
            notional_usd=sum(a.notional_usd for a in actions), action_reason="; ".join(dict.fromkeys(
                a.reason for a in actions)), error="; ".join(errors) or None,
            calls=json.dumps([c.to_json() for c in recipe.calls]),
        )

    def _call_intents(self, plan: Plan, recipe: Recipe, base: dict[str, Any], refusals: Sequence[Refusal]) -> None:
        steps: dict[int, int] = {}
        for call in recipe.calls:
            index, request = call.action_index, call.request
            step = steps[index] = steps.get(index, -1) + 1
            action = plan.actions[index]
            mine = [str(r) for r in refusals if r.action_index in (None, index)]
            others = sorted({f"action {r.action_index} refused" for r in refusals if r.action_index not in (None,
                                                                                                              index)})
            errors = mine + others
            self.journal.add_intent(
                **base, id=intent_id(self.portfolio, base["plan_id"], base["snapshot_block"], index, step),
                action_index=index, step=step, kind=call.kind, state="failed" if errors else "planned",
                to_address=Web3.to_checksum_address(request.to), data="0x" + request.data.hex(),
                value_wei=str(request.value_wei), description=request.description,
                notional_usd=0.0 if call.kind == "approve" or step > 0 else action.notional_usd,
                action_reason=action.reason, error="; ".join(errors) or None,
            )

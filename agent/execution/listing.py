"""What `ballast journal` shows: the paused portfolios, recent intents with their transactions, and recent events;
and whether a portfolio is paused, for `ballast status`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

from agent.execution.journal import Journal


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def journal_pause(db: str, portfolio: str) -> str | None:
    """Returns why the journal at `db` holds `portfolio` paused, or None (also when no journal exists there yet)."""
    if "://" not in db and not Path(db).exists():
        return None
    journal = Journal(db)
    try:
        return journal.paused(portfolio)
    finally:
        journal.close()


def journal_json(journal: Journal, portfolio: str | None = None, limit: int = 20) -> dict[str, Any]:
    """Returns the newest `limit` intents (each with every transaction signed for it, raw bytes left out, and a
    recipe's calls) and the newest events, as JSON-ready mappings; times are ISO-8601 UTC."""
    intents = []
    for intent in journal.intents(portfolio, limit=limit, newest_first=True):
        intents.append({
            "id": intent.id, "portfolio": intent.portfolio, "plan_id": intent.plan_id, "chain": intent.chain,
            "step": f"{intent.action_index}.{intent.step}", "kind": intent.kind, "mode": intent.mode,
            "state": intent.state, "to": intent.to_address, "description": intent.description,
            "notional_usd": intent.notional_usd, "snapshot_block": intent.snapshot_block,
            "plan_reason": intent.plan_reason, "action_reason": intent.action_reason, "error": intent.error,
            "nonce": intent.nonce, "tx_hash": intent.tx_hash, "block_number": intent.block_number,
            "bumps": intent.bumps, "created_at": _iso(intent.created_at), "updated_at": _iso(intent.updated_at),
            "calls": [{k: c[k] for k in ("action", "kind", "to", "description")} for c in intent.recipe_calls()],
            "transactions": [
                {"tx_hash": tx.record.tx_hash, "kind": tx.record.kind, "state": tx.record.state,
                 "nonce": tx.record.nonce, "max_fee_per_gas_wei": tx.record.max_fee_per_gas_wei,
                 "max_priority_fee_per_gas_wei": tx.record.max_priority_fee_per_gas_wei,
                 "block_number": tx.record.block_number, "status": tx.record.status,
                 "created_at": _iso(tx.created_at), "sent_at": _iso(tx.sent_at)}
                for tx in journal.txs(intent.id)
            ],
        })
    events = [{**event, "at": _iso(event["at"])} for event in journal.events(portfolio, limit=limit)]
    paused = journal.paused_portfolios()
    if portfolio is not None:
        paused = {name: why for name, why in paused.items() if name == portfolio}
    return {"paused": paused, "intents": intents, "events": events}


def journal_tables(data: dict[str, Any]) -> Group:
    """Returns Rich tables of `journal_json`'s paused portfolios, intents and events."""
    paused = Table(title="Paused (resume: ballast journal --resume PORTFOLIO)")
    for column in ("portfolio", "why"):
        paused.add_column(column)
    for name, why in data["paused"].items():
        paused.add_row(name, why)
    intents = Table(title="Intents (newest first)")
    for column in ("created", "portfolio", "step", "kind", "mode", "state", "nonce", "txs", "what", "error"):
        intents.add_column(column)
    for i in data["intents"]:
        intents.add_row(i["created_at"], i["portfolio"], i["step"], i["kind"], i["mode"], i["state"],
                        "" if i["nonce"] is None else str(i["nonce"]), str(len(i["transactions"])), i["description"],
                        i["error"] or "")
    events = Table(title="Events (newest first)")
    for column in ("at", "portfolio", "kind", "detail"):
        events.add_column(column)
    for e in data["events"]:
        events.add_row(e["at"], e["portfolio"], e["kind"], e["detail"])
    return Group(*([paused] if data["paused"] else []), intents, events)

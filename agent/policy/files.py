"""Policy files as the daemon takes them: files or directories of *.yaml, loaded all or nothing."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from agent.errors import UserInputError
from agent.policy.loader import load_policy
from agent.policy.models import Policy
from agent.settings import policy_variables


def policy_files(paths: Iterable[Path]) -> list[Path]:
    """Return the policy files named by `paths`: files as given, directories as their *.yaml / *.yml files."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            files.append(path)
    if not files:
        raise UserInputError("run: no policy files found (expected --policy FILE or a directory of *.yaml)")
    return files


def load_policies(paths: Iterable[Path]) -> dict[Path, Policy]:
    """Return every policy, validated; raises the first file's `PolicyError`, or a `UserInputError` when two
    files name the same portfolio."""
    policies: dict[Path, Policy] = {}
    names: dict[str, Path] = {}
    for path in policy_files(paths):
        policy = load_policy(path, env=policy_variables())
        name = policy.portfolio.name
        if name in names:
            raise UserInputError(f"{path}: portfolio {name!r} is already defined in {names[name]}")
        names[name] = path
        policies[path] = policy
    return policies

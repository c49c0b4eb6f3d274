"""The Dockerfile, .dockerignore and deploy/docker-compose.yml, checked without a Docker engine: the stages and
their users, the entrypoint and health check, nothing secret baked in, and a compose file whose pieces fit."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"


@dataclass
class Stage:
    """One `FROM … AS name` stage: its base and its instructions as (KEYWORD, arguments)."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def dockerfile_stages(text: str) -> list[Stage]:
    """Returns the Dockerfile's stages in order (continuation lines joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment between continuation lines
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    global_args: dict[str, str] = {}  # ARGs before the first FROM, usable in FROM lines
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = args.strip().partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            args = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), m.group(0)), args)
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            assert match, line
            stages.append(Stage(match.group(2) or str(len(stages)), match.group(1)))
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def stage_chain(stages: list[Stage], name: str) -> list[Stage]:
    """Returns the stage `name` and the stages it is built FROM, nearest first."""
    by_name = {stage.name: stage for stage in stages}
    chain = [by_name[name]]
    while chain[-1].base in by_name:
        chain.append(by_name[chain[-1].base])
    return chain


def effective(stages: list[Stage], name: str, keyword: str) -> str | None:
    """Returns the instruction `keyword` in force in stage `name` (inherited from its base stages)."""
    for stage in stage_chain(stages, name):
        value = stage.last(keyword)
        if value is not None:
            return value
    return None


def copy_sources(stage: Stage) -> list[str]:
    """Returns the build-context paths a stage COPYs (not those copied `--from` another stage)."""
    sources = []
    for args in stage.all("COPY"):
        words = args.split()
        if any(word.startswith("--from") for word in words):
            continue
        sources += [word for word in words if not word.startswith("--")][:-1]
    return sources


def dockerignore_keeps(path: str, patterns: list[str]) -> bool:
    """Returns whether the build context keeps `path` (Docker's rules: the last matching pattern wins; a
    pattern matches a path or any of its parent folders)."""
    kept = True
    parts = Path(path.rstrip("/")).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(fnmatch(prefix, pattern) or fnmatch(prefix, pattern.replace("**/", "")) for prefix in prefixes):
            kept = negated
    return kept


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return dockerfile_stages(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load(COMPOSE.read_text())
    return loaded


def test_the_image_is_built_in_stages_and_the_agent_is_the_default_target(stages: list[Stage]) -> None:
    names = [stage.name for stage in stages]
    assert names[:2] == ["build", "runtime"]
    assert {"localnet", "agent"} <= set(names)
    assert names[-1] == "agent", "`docker build .` must produce the agent"
    assert any("pip wheel" in run for run in stages[0].all("RUN"))
    # the runtime installs the wheel built by the build stage, never the sources
    runtime = stages[1]
    assert copy_sources(runtime) == []
    assert any("from=build" in run and "pip install" in run and ".whl" in run for run in runtime.all("RUN"))
    assert "slim" in runtime.base


def test_the_agent_runs_as_a_non_root_user_under_tini(stages: list[Stage]) -> None:
    user = effective(stages, "agent", "USER")
    assert user is not None and user.split(":")[0] not in {"root", "0"}
    assert any("apt-get install" in run and "tini" in run for run in stages[1].all("RUN"))
    assert json.loads(effective(stages, "agent", "ENTRYPOINT") or "null") == ["tini", "--", "ballast"]
    assert json.loads(effective(stages, "agent", "CMD") or "null") == ["run", "--policy", "/etc/ballast/policies"]
    assert "9108" in (effective(stages, "agent", "EXPOSE") or "").split()


def test_the_health_check_asks_the_agent_s_healthz(stages: list[Stage]) -> None:
    healthcheck = effective(stages, "agent", "HEALTHCHECK") or ""
    assert "http://127.0.0.1:9108/healthz" in healthcheck
    env = " ".join(env for stage in stage_chain(stages, "agent") for env in stage.all("ENV"))
    assert "BALLAST_METRICS_ADDR=0.0.0.0:9108" in env, "reachable by the health check and by Prometheus"


def test_no_policy_keystore_or_state_is_baked_into_an_image(stages: list[Stage]) -> None:
    sources = [source for stage in stages for source in copy_sources(stage)]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        assert not re.search(r"config|polic|keystore|secret|\.env|\.state|sqlite|KILL", source), source


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_secret(stages: list[Stage]) -> None:
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in {source for stage in stages for source in copy_sources(stage)}:
        assert dockerignore_keeps(source, patterns), f"{source} is excluded from the build context"
    for secret in (".env", ".state/policies/leveraged-long.yaml", "ballast.sqlite", "KILL", "config/x.yaml",
                   ".venv/bin/python", "deploy/localnet/node_modules/x", "agent/__pycache__/cli.pyc", ".git/HEAD"):
        assert not dockerignore_keeps(secret, patterns), f"{secret} would be sent to the Docker daemon"


def test_the_localnet_stage_adds_node_and_the_npm_packages(stages: list[Stage]) -> None:
    chain = stage_chain(stages, "localnet")
    assert chain[-1].name == "runtime"
    localnet = chain[0]
    runs = " ".join(localnet.all("RUN"))
    assert "nodejs" in runs and "npm" in runs and "npm ci" in runs
    assert "deploy/localnet/package-lock.json" in " ".join(copy_sources(localnet))
    # it compiles every Solidity source the localnet deploys: the reference venues and the keeper module
    assert {"deploy/localnet/contracts/", "contracts/"} <= set(copy_sources(localnet))
    assert (localnet.last("USER") or "root").split(":")[0] not in {"root", "0"}, "back to the non-root user"
    assert localnet.last("HEALTHCHECK") is not None  # it serves no /healthz: its own check
    command = json.loads(effective(stages, "localnet", "CMD") or "null")
    assert command[:4] == ["localnet", "up", "--state-dir", "/state"]


def test_compose_runs_the_local_chain_the_agent_prometheus_and_grafana(
    compose: dict[str, Any], stages: list[Stage]
) -> None:
    services = compose["services"]
    assert set(services) == {"localnet", "agent", "prometheus", "grafana"}
    stage_names = {stage.name for stage in stages}
    for name in ("localnet", "agent"):
        build = services[name]["build"]
        assert (COMPOSE.parent / build["context"] / "Dockerfile").resolve() == DOCKERFILE
        assert build["target"] in stage_names
    assert services["localnet"]["build"]["target"] == "localnet"


def test_compose_agent_keeps_the_policies_localnet_writes(compose: dict[str, Any], stages: list[Stage]) -> None:
    localnet, agent = compose["services"]["localnet"], compose["services"]["agent"]
    # localnet writes policies to the state volume; the agent reads that directory, read-only
    state_dir = json.loads(effective(stages, "localnet", "CMD") or "null")[3]
    state_volume = next(v.split(":")[0] for v in localnet["volumes"] if v.split(":")[1] == state_dir)
    agent_mounts = {v.split(":")[1]: v.split(":") for v in agent["volumes"]}
    assert agent_mounts[state_dir][0] == state_volume and agent_mounts[state_dir][-1] == "ro"
    assert agent["command"] == ["run", "--policy", f"{state_dir}/policies"]
    assert agent["depends_on"]["localnet"]["condition"] == "service_healthy"
    # the journal outlives the container
    journal_dir = str(Path(agent["environment"]["BALLAST_DB"]).parent)
    assert journal_dir in agent_mounts and agent_mounts[journal_dir][0] in compose["volumes"]
    assert "BALLAST_PRIVATE_KEY" in agent["environment"]
    # the policies name http://127.0.0.1:8545: the agent must share the chain's network namespace
    assert agent["network_mode"] == "service:localnet"


def test_compose_prometheus_scrapes_the_agent_and_grafana_is_provisioned(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for service in services.values():
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("."):
                assert (COMPOSE.parent / host).exists(), f"{volume}: no such path"
    prometheus_mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    assert prometheus_mounts["./prometheus"] == "/etc/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    # the scrape target is the agent's metrics port, through the network alias of the namespace it runs in
    config = YAML(typ="safe").load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "ballast"]
    host, port = job["static_configs"][0]["targets"][0].split(":")
    assert host in services["localnet"]["networks"]["default"]["aliases"]
    assert services["agent"]["environment"]["BALLAST_METRICS_ADDR"].endswith(f":{port}")
    # Grafana reads the provider's dashboard path, where the dashboards folder is mounted
    grafana_mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    assert grafana_mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = YAML(typ="safe").load((ROOT / "deploy/grafana/provisioning/dashboards/ballast.yml").read_text())
    assert grafana_mounts["./grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    datasource = YAML(typ="safe").load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_the_wheel_s_package_list_covers_every_folder_of_the_agent() -> None:
    # The wheel is what the image installs. A listed package set (needed to map contracts_abi/ into the wheel as
    # agent.contracts_abi) must name every folder of agent/ that holds modules, or the image misses them.
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = setuptools.get("packages")
    if not isinstance(packages, list):
        return  # found by setuptools' `find`: nothing to keep in step
    folders = {
        ".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "agent").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert folders - set(packages) == set()

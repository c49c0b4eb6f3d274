"""The Dockerfile's install steps without Docker: build the wheel from exactly what the Dockerfile's build stage
copies, install it into a clean venv, and run the installed `ballast` from outside the repository.

Needs the package registry (pip fetches the build backend and the dependencies); takes about a minute with a
warm pip cache.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def build_stage_sources() -> list[str]:
    """Returns the paths the Dockerfile's `build` stage COPYs from the build context."""
    stage = re.search(r"^FROM \S+ AS build$(.*?)^FROM ", (ROOT / "Dockerfile").read_text(), re.M | re.S)
    assert stage, "the Dockerfile has a `build` stage"
    sources = []
    for line in re.findall(r"^COPY (?!--from)(.+)$", stage.group(1), re.M):
        sources += line.split()[:-1]
    return sources


def run(args: list[str | Path], cwd: Path, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    # A clean environment: no BALLAST_* settings, no PYTHONPATH or venv of the caller.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("BALLAST_", "PYTHON", "VIRTUAL_ENV"))}
    result = subprocess.run([str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout_s, check=False)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.timeout(1200)
def test_the_built_wheel_installs_and_runs_in_a_clean_venv(tmp_path: Path) -> None:
    # given a copy of exactly what the Dockerfile's build stage copies
    source = tmp_path / "src"
    for path in build_stage_sources():
        origin = ROOT / path
        if origin.is_dir():
            shutil.copytree(origin, source / path, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, source / path)

    # when the wheel is built from it (as `pip wheel` in the build stage)
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", dist, source], cwd=tmp_path)
    (wheel,) = dist.glob("ballast-*.whl")

    # then it holds every file of the package (modules, migration templates, py.typed) and every ABI, the ABIs
    # as agent/contracts_abi/
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    package_files = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "agent").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert package_files - names == set(), "missing from the wheel (pyproject's packages and package-data)"
    abis = {"agent/" + p.relative_to(ROOT).as_posix() for p in (ROOT / "contracts_abi").rglob("*.json")}
    assert abis and abis - names == set(), "ABIs missing from the wheel"

    # when it is installed into a fresh venv that does not see this interpreter's packages
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    python, ballast = venv / "bin" / "python", venv / "bin" / "ballast"
    run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel], cwd=tmp_path,
        timeout_s=900)
    outside = tmp_path / "elsewhere"  # not the repository: nothing may be found through the working directory
    outside.mkdir()

    # then the installed command runs
    version = run([ballast, "--version"], cwd=outside)
    assert version.stdout.strip() == f"ballast {PROJECT['version']}"
    checked = run([ballast, "check-policy", ROOT / "config" / "policy.example.yaml"], cwd=outside)
    assert checked.stdout.startswith("ok: delta-neutral-lp"), checked.stdout

    # and the package and its ABIs are loaded from the venv, not from this checkout
    loaded = run([python, "-c", (
        "import agent; from agent.chain.abi import ABI_DIR, load_abi; "
        "print(agent.__file__); print(ABI_DIR); print(load_abi('erc20', 'ERC20').fn('balanceOf').signature)"
    )], cwd=outside)
    package_file, abi_dir, signature = loaded.stdout.split("\n")[:3]
    assert Path(package_file).is_relative_to(venv)
    assert Path(abi_dir).is_relative_to(venv) and Path(abi_dir).name == "contracts_abi"
    assert signature == "balanceOf(address)"

"""The lock (requirements/*.txt, docs/dependencies.md): it satisfies
setup.py's ranges, the application's versions are the tests' versions, and
a changed lock is installed again."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import REPO

APP = REPO / "requirements" / "app.txt"
DEV = REPO / "requirements" / "dev.txt"


def pins(lock: Path) -> Dict[str, str]:
    """Package -> version, for the lock's lines that apply on this machine."""
    found = {}
    for line in lock.read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")):
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate():
                (specifier,) = requirement.specifier
                found[canonicalize_name(requirement.name)] = specifier.version
    return found


def setup_requirements() -> Dict[str, List[str]]:
    """setup.py's install_requires and each extra, read from its source."""
    call = next(
        node
        for node in ast.walk(ast.parse((REPO / "setup.py").read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "setup"
    )
    arguments = {keyword.arg: keyword.value for keyword in call.keywords}
    return {
        "install_requires": ast.literal_eval(arguments["install_requires"]),
        **ast.literal_eval(arguments["extras_require"]),
    }


@pytest.mark.parametrize("group, lock", [("install_requires", APP), ("test", DEV), ("torch", DEV)])
def test_the_lock_pins_every_requirement_within_setup_pys_range(group, lock):
    """Fails after a change to setup.py that was not locked: run
    `bash scripts/refresh_lock.sh --lock-only --keep-versions`."""
    locked = pins(lock)
    for line in setup_requirements()[group]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in {lock.name}"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{lock.name} has {name}=={locked[name]}, outside setup.py's {requirement}"
        )


def test_the_tests_run_the_applications_versions():
    """Launcher, workers and tests on the same versions (Beam's guidance)."""
    app, dev = pins(APP), pins(DEV)
    assert {name: dev.get(name) for name in app} == app
    # Locked for every machine, whatever torch build it gets.
    assert "triton" in dev and "torch" in dev
    assert not [name for name in dev if name.startswith(("nvidia-", "cuda-"))]


def fake_venv(root: Path) -> Path:
    """A virtualenv whose python logs its arguments instead of installing."""
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "$*" >> {root / "installs.log"}\n')
    python.chmod(0o755)
    (venv / "bin" / "activate").write_text("")
    return venv


@pytest.mark.processes
def test_ensure_venv_installs_again_when_the_lock_changes(tmp_path):
    repo = tmp_path / "repo"
    for name in (
        "scripts/ensure_venv.sh",
        "setup.py",
        "requirements/app.txt",
        "requirements/dev.txt",
    ):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, repo / name)
    env = {**os.environ, "FGBG_VENV": str(fake_venv(tmp_path))}

    def installs() -> List[str]:
        subprocess.run(
            ["bash", "-c", "source scripts/ensure_venv.sh"], cwd=repo, env=env, check=True
        )
        log = tmp_path / "installs.log"
        return [line for line in log.read_text().splitlines() if " -r " in line]

    first = installs()
    assert len(first) == 1 and f"-r {repo}/requirements/app.txt" in first[0]
    assert f"-c {repo}/requirements/dev.txt" in first[0]
    assert len(installs()) == 1  # unchanged: nothing installed
    with (repo / "requirements" / "dev.txt").open("a") as lock:
        lock.write("six==1.17.0\n")
    assert len(installs()) == 2

"""The set-up promises of the README: exact pins, the same in pyproject.toml and environment.yml."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def _pyproject_pins() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + [p for extra in project["optional-dependencies"].values() for p in extra]


def test_every_dependency_is_pinned_exactly():
    for requirement in _pyproject_pins():
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.+]*", requirement), requirement


def test_environment_yml_has_the_same_pins():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = [p for p in pip_section if not p.startswith("-e")]
    assert sorted(listed) == sorted(_pyproject_pins())
    assert any(p.startswith("-e .") for p in pip_section), "environment.yml must install derivlib"


def test_sympy_pinned_to_one_version():
    assert any(p.startswith("sympy==") for p in _pyproject_pins())

"""Shared fixtures. Tests that need the authors' released results read them from
DERIVLIB_PAPER_RESULTS; when it is unset they are skipped with a reason that says so (pytest -ra
lists it), and under CI (where .ci/run sets it whenever ../shared/paper_results exists) a missing
directory is a failure, not a skip."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from derivlib.readers import released as paper


@pytest.fixture(scope="session")
def paper_results_dir() -> Path:
    directory = paper.results_dir()
    if directory is None:
        message = f"needs the authors' released results: {paper.DOWNLOAD_HINT}"
        if os.environ.get(paper.ENV):
            pytest.fail(f"{paper.ENV}={os.environ[paper.ENV]} is not a directory; {message}")
        pytest.skip(message)
    return directory


@pytest.fixture(scope="session")
def flan_results(paper_results_dir) -> Path:
    return paper_results_dir / "flan-t5-large_results.json"


@pytest.fixture(scope="session")
def gpt4_results(paper_results_dir) -> Path:
    return paper_results_dir / "gpt-4_results.json"


@pytest.fixture
def isolated_data(tmp_path, monkeypatch) -> Path:
    """Run directories and figures under a temporary root."""
    monkeypatch.setenv("DERIVLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DERIVLIB_FIGURES", str(tmp_path / "figures"))
    return tmp_path

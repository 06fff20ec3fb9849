"""The examples the docs include run as written (each on the memory backend and a SQLite file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("retries.py", "flaky: complete after 3 attempts"),
        ("workflow.py", "results: {'total': 43}, workflow: nightly-report"),
        ("quickstart.py", "Results: {'result': 'done'}"),
    ],
)
@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_example_runs(name: str, expected: str, store: str, tmp_path: Path) -> None:
    url = "memory://" if store == "memory" else f"sqlite:///{tmp_path / 'example.db'}"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), url],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout

"""Fixtures for the judge tests: the shared benchmark data directory (skipped when absent)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _data_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"shared data file {path} is absent (benchmark data is not in the repo)")
    return path


@pytest.fixture
def data_file() -> Callable[[str], Path]:
    """`data_file(name)`: a path in `<repo parent>/shared/data`; skips the test when absent."""
    return _data_file

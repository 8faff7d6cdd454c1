"""Keep the embedded engine's process-wide side effect inside these tests.

The engine sets `OMP_WAIT_POLICY=PASSIVE` before first importing xllamacpp; this fixture restores
the variable afterwards so later tests in the same session (torch, say) see the original value.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _restore_omp_wait_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))

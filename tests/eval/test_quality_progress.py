"""`quality` reports how far each stage is: the judge calls, the near-duplicate sweep and the
clustering, each to its end; the CLI draws them as rich bars."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from agents.llm.mock import MockLLMServer
from runtime.config import BackendConfig
from runtime.evaluate import QualityOptions, compute_quality
from runtime.progress import StageBars


async def test_every_stage_reports_progress_to_its_end(
    tmp_path: Path, mock_server: MockLLMServer
) -> None:
    items = [
        (f"row-{i}", i % 3, f"Describe step {i} of baking bread, with {i % 5 + 1} details.")
        for i in range(40)
    ]
    judge = BackendConfig.model_validate(
        {
            "backend": "openai-compatible",
            "model": "mock-model",
            "endpoints": [mock_server.openai_url],
        }
    )
    seen: dict[str, list[tuple[int, int]]] = {}
    options = QualityOptions(judge=judge, embedder="hashed", concurrency=4)
    result = await compute_quality(
        tmp_path / "out",
        options,
        items=items,
        progress=lambda stage, done, total: seen.setdefault(stage, []).append((done, total)),
    )
    assert "diversity" in result.computed
    assert set(seen) == {"judge", "near-duplicates", "clusters"}
    for calls in seen.values():
        done = [d for d, _ in calls]
        assert done == sorted(done)
        assert calls[-1] == (40, 40)
    assert len(seen["judge"]) == 40  # one report per item


def test_stage_bars_draw_one_bar_per_stage() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with StageBars(enabled=True, console=console) as bars:
        bars("judge", 3, 10)
        bars("near-duplicates", 5, 5)
        bars("judge", 10, 10)
    text = out.getvalue()
    assert "judge" in text
    assert "near-duplicates" in text
    assert "10/10" in text
    quiet = io.StringIO()
    with StageBars(enabled=False, console=Console(file=quiet, force_terminal=True)) as bars:
        bars("judge", 1, 2)
    assert quiet.getvalue() == ""

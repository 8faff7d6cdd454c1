"""Deterministic, plausible replies for our prompts, chosen by an ordered list of recognisers.

A recogniser is a function `(ctx: ReplyContext) -> Reply | None`; the first that returns a reply
wins. Adding a prompt kind is one function plus `register_recogniser(fn)` (it goes before the
built-ins, so specific prompts win over the generic ones). The built-ins, in order:

1. `judge_pairwise` — contains `[[A]]` and `[[B]]`: a reason, then `[[A]]`/`[[B]]`/`[[C]]`.
2. `judge_rating` — contains `[[rating]]`: a reason, then `Rating: [[N]]` (1-10).
3. `equality` — contains both `Equal` and `Not Equal`: `Not Equal` (content fault `equal`: `Equal`).
4. `evolve_breadth` / `evolve_depth` — an `<instruction>…</instruction>` block (the last one is
   used); `brand-new` or `new instruction` in the prompt asks for breadth (a new instruction on the
   same topic), otherwise depth (the original plus one 10-20-word constraint). Content fault
   `copy_prompt` leaks evolving-prompt words.
5. `answer` — anything else: the last user message is the question; a 60-200-word answer reusing
   its words. Content faults `sorry` (short apology) and `stopwords` (only stop words/punctuation).

Everything derives from sha256(seed, messages): the same request always gets the same reply, and
the same content fault, whatever the retries. The request's own sampling seed (`seed` in the
OpenAI body) is kept apart as `ctx.sample_seed`: only recognisers of prompts that are sampled
several times on purpose (the Auto Evol-Instruct optimizer's m candidates) read it, through
`ctx.sample_unit(salt)`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agents.llm.mock import _text
from agents.llm.mock.config import ContentFaultRates
from agents.llm.types import ChatMessage

__all__ = [
    "RECOGNISERS",
    "Recogniser",
    "Reply",
    "ReplyContext",
    "generate_reply",
    "register_recogniser",
]


@dataclass(frozen=True)
class Reply:
    """A generated reply: its `text`, the task `kind` recognised and any content `fault`."""

    text: str
    kind: str
    fault: str | None = None


@dataclass
class ReplyContext:
    """What a recogniser sees: the messages, their joined text, and deterministic draws.

    `seed` is the server's seed; `sample_seed` the request's sampling seed (None when the
    request carries none, as on the Anthropic route).
    """

    messages: Sequence[ChatMessage]
    seed: int = 0
    content_faults: ContentFaultRates = field(default_factory=ContentFaultRates)
    sample_seed: int | None = None
    prompt: str = ""
    user: str = ""
    digest: bytes = b""

    def __post_init__(self) -> None:
        self.prompt = "\n".join(m.content for m in self.messages)
        users = [m.content for m in self.messages if m.role == "user"]
        self.user = users[-1] if users else self.prompt
        h = hashlib.sha256(str(self.seed).encode())
        for m in self.messages:
            h.update(b"\x00" + m.role.encode() + b"\x01" + m.content.encode())
        self.digest = h.digest()

    def unit(self, salt: str) -> float:
        """A uniform number in [0, 1) fixed by the request content, the seed and `salt`."""
        d = hashlib.sha256(self.digest + salt.encode()).digest()
        return int.from_bytes(d[:8], "big") / 2**64

    def index(self, salt: str, n: int) -> int:
        return int(self.unit(salt) * n)

    def sample_unit(self, salt: str) -> float:
        """Like `unit`, but also fixed by the request's sampling seed: another sample of the same
        prompt (another `seed`) draws anew; without a sampling seed it equals `unit(salt)`."""
        if self.sample_seed is None:
            return self.unit(salt)
        return self.unit(f"{salt}\x00sample={self.sample_seed}")

    def fault(self, *kinds: str) -> str | None:
        """The content fault (among `kinds`) this request gets, or None, by configured rates."""
        u = self.unit("content-fault")
        acc = 0.0
        for kind in kinds:
            acc += float(getattr(self.content_faults, kind))
            if u < acc:
                return kind
        return None


Recogniser = Callable[[ReplyContext], Reply | None]


def judge_pairwise(ctx: ReplyContext) -> Reply | None:
    if "[[A]]" not in ctx.prompt or "[[B]]" not in ctx.prompt:
        return None
    u = ctx.unit("verdict")
    verdict = "[[A]]" if u < 0.45 else "[[B]]" if u < 0.9 else "[[C]]"
    return Reply(f"{_text.judge_reason(ctx.index('why', 3))}\n\n{verdict}", "judge_pairwise")


_RATINGS = (2, 3, 4, 5, 5, 6, 6, 7, 7, 7, 8, 8, 8, 9, 9, 10)


def judge_rating(ctx: ReplyContext) -> Reply | None:
    if "[[rating]]" not in ctx.prompt:
        return None
    n = _RATINGS[ctx.index("rating", len(_RATINGS))]
    return Reply(f"{_text.judge_reason(ctx.index('why', 3))}\n\nRating: [[{n}]]", "judge_rating")


def equality(ctx: ReplyContext) -> Reply | None:
    if "Not Equal" not in ctx.prompt or not re.search(r"(?<!Not )\bEqual\b", ctx.prompt):
        return None
    fault = ctx.fault("equal")
    return Reply("Equal" if fault else "Not Equal", "equality", fault)


_VERSION = re.compile(r"<(A|B)>\s*(.*?)\s*</\1>|^(A|B): (.*?)(?=\n\n|\Z)", re.S | re.M)


def comparison(ctx: ReplyContext) -> Reply | None:
    """Rule 1's "which version asks for more?": the longer version (the child, for the mock's
    rewrites) — or, with the `equal` fault, the shorter one (the parent)."""
    if "asks for more" not in ctx.prompt:
        return None
    versions = {(m[0] or m[2]): (m[1] or m[3]) for m in _VERSION.findall(ctx.prompt)}
    if set(versions) != {"A", "B"}:
        return None
    longer = "A" if len(versions["A"]) > len(versions["B"]) else "B"
    fault = ctx.fault("equal")
    shorter = "B" if longer == "A" else "A"
    return Reply(shorter if fault else longer, "comparison", fault)


_INSTRUCTION = re.compile(r"<instruction>(.*?)</instruction>", re.S | re.I)
_BREADTH_MARK = re.compile(r"brand-new|new instruction", re.I)


def evolve(ctx: ReplyContext) -> Reply | None:
    blocks = _INSTRUCTION.findall(ctx.prompt)
    if not blocks:
        return None
    original = blocks[-1].strip()
    if _BREADTH_MARK.search(ctx.prompt):
        kind = "evolve_breadth"
        text = _text.breadth(original, ctx.index("breadth", 64))
    else:
        kind = "evolve_depth"
        n = len(_text.CONSTRAINTS)
        start = ctx.index("constraint", n)
        extra = _text.CONSTRAINTS[start]
        for k in range(n):  # prefer a constraint the instruction does not already carry
            cand = _text.CONSTRAINTS[(start + k) % n]
            if cand not in original:
                extra = cand
                break
        text = f"{original} {extra}"
    fault = ctx.fault("copy_prompt")
    if fault:
        leak = _text.COPY_LEAKS[ctx.index("leak", len(_text.COPY_LEAKS))]
        text = leak.format(text=text)
    return Reply(text, kind, fault)


def answer(ctx: ReplyContext) -> Reply:
    fault = ctx.fault("sorry", "stopwords")
    if fault == "sorry":
        return Reply(_text.sorry(ctx.user, ctx.index("sorry", 8)), "answer", fault)
    if fault == "stopwords":
        words = _text.STOPWORD_REPLIES
        return Reply(words[ctx.index("stop", len(words))], "answer", fault)
    target = 60 + ctx.index("length", 100)  # sentences run ~10 words: 60-200 words in all
    return Reply(_text.answer(ctx.user, target, ctx.index("start", 10)), "answer")


#: The recognisers, most specific first; `answer` is the fallback and always applies.
RECOGNISERS: list[Recogniser] = [judge_pairwise, judge_rating, equality, comparison, evolve]


def register_recogniser(fn: Recogniser, *, first: bool = True) -> Recogniser:
    """Add a recogniser (before the built-ins unless `first=False`). Usable as a decorator."""
    if fn not in RECOGNISERS:
        if first:
            RECOGNISERS.insert(0, fn)
        else:
            RECOGNISERS.append(fn)
    return fn


def generate_reply(
    messages: Sequence[ChatMessage],
    *,
    seed: int = 0,
    content_faults: ContentFaultRates | None = None,
    sample_seed: int | None = None,
) -> Reply:
    """The mock's reply to `messages`: deterministic in (seed, messages, fault rates, and — for
    the recognisers that read it — the request's `sample_seed`)."""
    ctx = ReplyContext(messages, seed, content_faults or ContentFaultRates(), sample_seed)
    for recognise in RECOGNISERS:
        reply = recognise(ctx)
        if reply is not None:
            return reply
    return answer(ctx)


def _register_judge_replies() -> None:
    """Register the data-quality/Vicuna judge recognisers (`agents.llm.mock.judge_replies`)."""
    from agents.llm.mock import judge_replies

    for recognise in (
        judge_replies.judge_score_pair,
        judge_replies.judge_tags,
        judge_replies.judge_difficulty,
    ):
        register_recogniser(recognise)


_register_judge_replies()


def _register_autoevol_replies() -> None:
    """Register the Auto Evol-Instruct recognisers (`agents.llm.mock.autoevol_replies`)."""
    from agents.llm.mock import autoevol_replies

    for recognise in (
        autoevol_replies.analysis,
        autoevol_replies.optimize,
        autoevol_replies.evolve_with_method,
        autoevol_replies.failure_verdict,
    ):
        register_recogniser(recognise)
    # after the built-in evolvers, before the fallback answer: only questions reach it
    register_recogniser(autoevol_replies.answer_failed_evolution, first=False)


_register_autoevol_replies()

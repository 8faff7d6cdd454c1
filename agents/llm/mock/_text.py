"""Word lists and sentence builders behind the mock's plausible replies."""

from __future__ import annotations

import re

_STOP_LINES = (
    "a about above after again against all am an and any are as at be because been before",
    "being below between both but by can could did do does doing down during each few for from",
    "further had has have having he her here hers herself him himself his how i if in into is it",
    "its itself just me more most my myself no nor not now of off on once only or other our ours",
    "out over own same she should so some such than that the their theirs them themselves then",
    "there these they this those through to too under until up very was we were what when where",
    "which while who whom why will with would you your yours yourself also please make sure",
    "using use given write give describe explain following one two three four five six seven",
    "eight nine ten first second third",
)
STOP_WORDS = frozenset(" ".join(_STOP_LINES).split())

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")

#: Added constraints/requirements for in-depth rewrites: each 10-20 words.
CONSTRAINTS = (
    "Your answer must also include at least two concrete examples drawn from everyday experience.",
    "Limit the response to about 150 words and organise it as a numbered list of steps.",
    "Explain the reasoning behind each step so that a curious beginner could follow it easily.",
    "Compare at least two different approaches and state clearly which one you would recommend.",
    "Make sure to address one common misconception about this topic and correct it with evidence.",
    "Present the key points in a small table with one column for advantages and one for drawbacks.",
    "Consider how the answer would change for a reader living in a different country or culture.",
    "Conclude with a single sentence summarising the most important takeaway for a busy reader.",
    "Include a brief historical note explaining how thinking on this topic has evolved over time.",
    "Support every claim with a short justification and avoid vague or subjective statements.",
    "Address a reader with no technical background while remaining precise and fully correct.",
    "Describe one realistic edge case where the usual advice fails and explain what to do instead.",
    "Use a formal tone throughout and avoid bullet points, writing in connected paragraphs.",
    "Estimate the time each part requires and mention any important safety precautions.",
    "First outline your plan in two sentences, then carry it out step by step in detail.",
    "Mention a measurable criterion that could be used to check whether the result is correct.",
)

_BREADTH = (
    "Write a short guide explaining how {a} could be applied in an unusual setting, such as a "
    "remote mountain village.",
    "Describe three little-known facts about {a} and explain why each one matters to {b}.",
    "Design a beginner-friendly exercise that teaches the core ideas of {a} in under ten minutes.",
    "Compose a brief dialogue in which two experts disagree about the future of {a} and {b}.",
    "Propose a creative project that combines {a} with {b} and outline its first three steps.",
    "Explain how someone would teach {a} to a ten-year-old using only objects found at home.",
    "List the most common mistakes people make with {a} and suggest a fix for each of them.",
    "Imagine {a} did not exist; describe how daily life and {b} would be different as a result.",
)

_ANSWER = (
    "When thinking about {a}, the first thing to consider is how it relates to {b}.",
    "A practical way to approach {a} is to break it into small, manageable parts.",
    "Many people overlook the role of {b}, yet it often shapes the final result.",
    "For example, a careful look at {a} usually reveals a clear pattern worth noting.",
    "It also helps to compare {a} with {c}, since the contrast highlights what matters most.",
    "In practice, the best results come from testing ideas about {b} and adjusting them.",
    "Another important point is that {c} can change depending on the context.",
    "Experts generally agree that a clear understanding of {a} saves time later.",
    "Keep in mind that small details about {b} can have surprisingly large effects.",
    "Finally, reviewing the outcome and reflecting on {c} leads to steady improvement.",
)

_OPENINGS = (
    "To answer this well, it helps to start with what {main} really involves.",
    "Here is a clear overview of {main} and the ideas that matter most.",
    "Understanding {main} is easier once the main parts are laid out in order.",
)

_JUDGE = (
    "Both responses address the question, but one is more accurate, complete and organised.",
    "The answers differ mainly in depth: one explains its reasoning while the other stays vague.",
    "After comparing helpfulness, relevance, accuracy and level of detail, one answer is stronger.",
)

_SORRY = (
    "I'm sorry, but I can't help with that request about {a}.",
    "Sorry, I am not able to provide an answer on {a} right now.",
    "I am sorry, but I don't have enough information to answer this.",
)

STOPWORD_REPLIES = (
    "... the of and , ? to in a .",
    "and the , of , to ... a ? the .",
    "? . , the and of a to in , ...",
)

#: Leaks of the evolving prompt's words. Each also carries one in its body, so the leak survives
#: an evolver that strips a leading "#Rewritten Prompt#:" label.
COPY_LEAKS = (
    "#Rewritten Prompt#:\n{text} Unlike the given prompt, this adds one requirement.",
    "Here is the rewritten prompt based on the given prompt: {text}",
    "Rewritten Prompt: {text} (the given prompt now has one more requirement)",
)


def keywords(text: str, limit: int = 6) -> list[str]:
    """Distinct content words of `text`, longest-first within first appearance order."""
    seen: dict[str, None] = {}
    for w in _WORD.findall(text):
        lw = w.lower()
        if len(lw) >= 4 and lw not in STOP_WORDS and lw not in seen:
            seen[lw] = None
            if len(seen) >= limit * 2:
                break
    words = list(seen)
    words.sort(key=len, reverse=True)
    top = set(words[:limit])
    return [w for w in seen if w in top] or ["this topic", "the question", "the details"]


def fill(template: str, kws: list[str], offset: int) -> str:
    n = len(kws)
    return template.format(a=kws[offset % n], b=kws[(offset + 1) % n], c=kws[(offset + 2) % n])


def answer(question: str, target_words: int, offset: int) -> str:
    """A plausible answer of about `target_words` words that reuses words of `question`."""
    kws = keywords(question)
    main = max(kws, key=len)
    sentences = [_OPENINGS[offset % len(_OPENINGS)].format(main=main)]
    words = len(sentences[0].split())
    i = offset
    while words < target_words:
        s = fill(_ANSWER[i % len(_ANSWER)], kws, i)
        sentences.append(s)
        words += len(s.split())
        i += 1
    return " ".join(sentences)


def breadth(instruction: str, offset: int) -> str:
    kws = keywords(instruction)
    return fill(_BREADTH[offset % len(_BREADTH)], kws, 0)


def judge_reason(offset: int) -> str:
    return _JUDGE[offset % len(_JUDGE)]


def sorry(question: str, offset: int) -> str:
    return fill(_SORRY[offset % len(_SORRY)], keywords(question), 0)

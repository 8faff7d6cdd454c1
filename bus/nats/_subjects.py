"""Subject, consumer and header naming of the NATS bus; encoding and decoding of messages.

Layout for a stream ``S`` (one stream per topology run)::

    S.m.<kind>.<topic>      every published message (``<topic>`` is ``n`` for no topic,
                            ``t<topic>`` otherwise); agents' consumers filter on these
    S.x.dead_letter         dead letters about dead letters (seen by the monitor only)

Kinds and topics are escaped into single subject tokens (``.`` and other characters that NATS
subjects reserve become ``=XX``), so ``evol.request`` is one token and filters never overlap.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from bus.message import Message, message_class_for, message_kinds

__all__ = [
    "HEADER_KIND",
    "HEADER_MSG_ID",
    "HEADER_REPLY",
    "HEADER_TOPIC",
    "consumer_name",
    "control_subject",
    "decode",
    "dedupe_id",
    "encode",
    "filter_subjects",
    "kinds_handled_by",
    "message_subject",
    "orphan_dead_letter_subject",
    "stream_subjects",
]

HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_KIND = "Evolagents-Kind"
HEADER_TOPIC = "Evolagents-Topic"
HEADER_REPLY = "Evolagents-Reply"

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _escape(text: str) -> str:
    return _UNSAFE.sub(lambda match: f"={ord(match.group()):02x}", text)


def check_stream_name(stream: str) -> str:
    """Raise ValueError unless ``stream`` is a valid stream name (letters, digits, ``_``, ``-``)."""
    if not _STREAM_NAME.match(stream):
        raise ValueError(f"stream name {stream!r} may hold only letters, digits, '_' and '-'")
    return stream


def stream_subjects(stream: str) -> list[str]:
    return [f"{stream}.m.>", f"{stream}.x.>"]


def message_subject(stream: str, kind: str, topic: str | None) -> str:
    topic_token = "n" if topic is None else "t" + _escape(topic)
    return f"{stream}.m.{_escape(kind)}.{topic_token}"


def orphan_dead_letter_subject(stream: str) -> str:
    return f"{stream}.x.dead_letter"


def control_subject(stream: str) -> str:
    """Core NATS (not stored): the coordinator's ``done`` broadcast to the workers."""
    return f"_evolagents.{stream}.control"


def consumer_name(agent: str) -> str:
    """The durable consumer shared by every replica of ``agent`` (work-queue semantics)."""
    return "agent-" + _escape(agent)


def kinds_handled_by(message_type: type[Message]) -> list[str]:
    """The registered concrete kinds a subscription to ``message_type`` receives.

    Only kinds registered (imported) when the consumer is created are included: import every
    message module of the topology before attaching (the runtime does, by building all agents).
    """
    return sorted(
        kind for kind, cls in message_kinds().items() if issubclass(cls, message_type)
    )


def filter_subjects(stream: str, routes: list[tuple[type[Message], str | None]]) -> list[str]:
    subjects = {
        message_subject(stream, kind, topic)
        for message_type, topic in routes
        for kind in kinds_handled_by(message_type)
    }
    return sorted(subjects)


def encode(message: Message) -> bytes:
    return message.model_dump_json().encode()


def decode(kind: str, data: bytes) -> Message:
    """Raises KeyError for an unknown kind and pydantic.ValidationError for a bad payload."""
    return message_class_for(kind).model_validate_json(data)


def dedupe_id(*parts: Any) -> str:
    """A stable ``Nats-Msg-Id`` derived from ``parts`` (the broker drops a repeat in its window)."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()
    return digest[:32]

"""Typed messages: the only thing agents exchange.

Every message is a frozen pydantic model with a stable, explicit ``kind`` (a ``Literal`` field
with a default), never derived from the class name, so renaming a class never breaks a stored run
or a remote peer. Concrete kinds register themselves in a process-wide registry used to decode
messages from stores and brokers (`message_class_for`).

Lineage: ``correlation_id`` is the root of a lineage (e.g. the seed's id) and ``causation_id`` the
message that directly caused this one. Build a child with ``Child.caused_by(parent, ...)`` so both
are carried over.
"""

from __future__ import annotations

import traceback
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DeadLetter",
    "Message",
    "Notice",
    "message_class_for",
    "message_kinds",
    "new_message_id",
]

_REGISTRY: dict[str, type[Message]] = {}


def new_message_id() -> str:
    """A fresh, globally unique message id (32 hex chars)."""
    return uuid.uuid4().hex


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Base of every message.

    Subclasses declare ``kind: Literal["my_kind"] = "my_kind"``. Abstract intermediate bases (used
    only for routing, e.g. "any evolution outcome") set ``abstract = True`` in their class body and
    need no kind. Two concrete classes may not share a kind.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    abstract: ClassVar[bool] = True

    kind: str
    id: str = Field(default_factory=new_message_id)
    correlation_id: str = ""
    causation_id: str | None = None
    created_at: datetime = Field(default_factory=_utcnow)

    @model_validator(mode="after")
    def _default_correlation(self) -> Self:
        if not self.correlation_id:
            # A message with no lineage starts its own: frozen models need object.__setattr__.
            object.__setattr__(self, "correlation_id", self.id)
        return self

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.__dict__.get("abstract", False):
            return
        cls.abstract = False
        field = cls.model_fields.get("kind")
        kind = field.default if field is not None else None
        if not isinstance(kind, str) or not kind:
            raise TypeError(
                f"{cls.__qualname__} must declare kind: Literal['...'] = '...' "
                "(or set abstract = True)"
            )
        existing = _REGISTRY.get(kind)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise TypeError(
                f"message kind {kind!r} of {cls.__qualname__} is already used by "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        _REGISTRY[kind] = cls

    @classmethod
    def caused_by(cls, cause: Message, **fields: Any) -> Self:
        """Build a message caused by ``cause``: same correlation (lineage), causation = cause.id."""
        fields.setdefault("correlation_id", cause.correlation_id)
        fields.setdefault("causation_id", cause.id)
        return cls(**fields)


def message_class_for(kind: str) -> type[Message]:
    """The concrete class registered for ``kind``. Raises KeyError for an unknown kind."""
    return _REGISTRY[kind]


def message_kinds() -> dict[str, type[Message]]:
    """A copy of the kind → class registry."""
    return dict(_REGISTRY)


class Notice(Message):
    """Base of informational messages (progress, milestones) that need no particular listener.

    The runtime always attaches a subscriber for notices (it logs them, and the store observes
    them), so publishing one never fails for lack of a handler, unlike any other message.
    """

    abstract: ClassVar[bool] = True


class DeadLetter(Message):
    """A message whose handler raised. Never dropped: counted, kept, observed, and reported."""

    kind: Literal["dead_letter"] = "dead_letter"

    agent: str
    message_kind: str
    message_id: str
    message: dict[str, Any]
    error_type: str
    error: str
    traceback: str
    attempt: int = 1

    @classmethod
    def of(cls, message: Message, agent: str, error: BaseException, attempt: int = 1) -> DeadLetter:
        """The dead letter of ``message``, whose handler in ``agent`` raised ``error``."""
        return cls.caused_by(
            message,
            agent=agent,
            message_kind=message.kind,
            message_id=message.id,
            message=message.model_dump(mode="json"),
            error_type=type(error).__name__,
            error=str(error),
            traceback="".join(traceback.format_exception(error)),
            attempt=attempt,
        )

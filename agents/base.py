"""The Agent base class: lifecycle, typed handlers, publish/request helpers, a per-agent logger.

An agent is a class with handlers declared by decorator; the message type comes from the
annotation of the handler's parameter (a union subscribes to each member)::

    class Shouter(Agent):
        role = "demo"

        @handles
        async def on_text(self, message: Text) -> None:
            await self.publish(Text.caused_by(message, text=message.text.upper()))

Lifecycle, driven by the runtime's supervisor:
1. ``__init__(name, context, params)`` — no I/O here.
2. ``await on_start()`` — open resources; all agents are started before any message flows.
3. handlers run as messages arrive (``concurrency`` at once); ``run()`` — optional, the agent's
   own main task (a feeder, a controller) — runs alongside. The main work is complete when every
   overridden ``run()`` has returned and the bus is idle.
4. ``await on_run_complete()`` — optional, for agents whose work follows the main work (the
   trainer); runs concurrently for all such agents, then the bus drains again.
5. ``await on_stop()`` — after the bus drained; flush and close resources. Always called once
   ``on_start`` succeeded, also after errors and interrupts.

Handlers may raise: the bus turns the error into a DeadLetter, and the run's outcome reports it.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Union, overload

import anyio
import structlog
from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar

from agents.llm.types import LLMClient
from bus.message import Message
from bus.protocol import AgentEndpoint, Bus, Route

__all__ = [
    "Agent",
    "AgentContext",
    "AgentProgress",
    "MessageCycle",
    "NoParams",
    "handles",
    "handles_any",
]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_HANDLER_ATTR = "__evolagents_handler__"


@dataclass(frozen=True, slots=True)
class _HandlerSpec:
    topic: str | None


@overload
def handles(function: F, /) -> F: ...
@overload
def handles(*, topic: str | None = None) -> Callable[[F], F]: ...
def handles(function: F | None = None, /, *, topic: str | None = None) -> F | Callable[[F], F]:
    """Mark an ``async def`` method as a handler for the message type(s) of its parameter.

    ``topic`` restricts it to messages published on that topic.
    """

    def mark(fn: F) -> F:
        is_async = inspect.iscoroutinefunction(fn)
        if not is_async:
            raise TypeError(f"handler {fn.__qualname__} must be an async def")
        setattr(fn, _HANDLER_ATTR, _HandlerSpec(topic))
        return fn

    return mark(function) if function is not None else mark


class NoParams(BaseModel):
    """Parameters of an agent that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentProgress(BaseModel):
    """What a progress bar shows for one agent. ``total`` is None when unknown."""

    model_config = ConfigDict(frozen=True)

    label: str
    completed: int
    total: int | None = None


@dataclass(frozen=True, slots=True)
class MessageCycle:
    """At most ``limit`` messages (set by the parameter ``param``) travel round ``loops``; each
    loop is named by the message types it carries, and the agents handling them are its members.

    Bounded mailboxes on a loop can deadlock: every member's mailbox full and all its handlers
    blocked publishing to the next one. That takes at least Σ(mailbox + concurrency) messages
    over the loop's members, so the runtime requires ``limit`` below that for every loop.
    """

    limit: int
    param: str
    loops: tuple[tuple[type[Message], ...], ...]


def handles_any(agent_class: type[Agent[Any]], kinds: tuple[type[Message], ...]) -> bool:
    """Whether a handler of ``agent_class`` receives messages of any of ``kinds``."""
    return any(
        issubclass(kind, handled) or issubclass(handled, kind)
        for _, handled, _ in agent_class._handler_specs
        for kind in kinds
    )


@dataclass(slots=True)
class AgentContext:
    """What the runtime gives every agent. Agents never see each other, only this.

    ``stopping`` is set when a graceful stop was requested (first Ctrl+C): sources stop admitting
    new work, handlers finish what they hold. ``services`` carries shared runtime objects by name
    (e.g. the run store's view) for agents that declare they need them.
    """

    bus: Bus
    run_dir: Path
    llms: Mapping[str, LLMClient] = field(default_factory=dict)
    seed: int = 0
    stopping: anyio.Event = field(default_factory=anyio.Event)
    services: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)


P = TypeVar("P", bound=BaseModel, default=NoParams)


class Agent(Generic[P]):
    """Base of every agent. Subclasses set ``role``, their params model, and add handlers.

    The params model is the type argument: ``class MyAgent(Agent[MyParams])`` validates the
    config's ``params`` table into ``MyParams`` (unknown keys are errors) and types ``self.params``.
    """

    role: ClassVar[str] = "custom"
    Params: ClassVar[type[BaseModel]] = NoParams
    impl_name: ClassVar[str] = ""
    _handler_specs: ClassVar[tuple[tuple[str, type[Message], str | None], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Params" not in cls.__dict__:
            for base in getattr(cls, "__orig_bases__", ()):
                args = typing.get_args(base)
                if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
                    cls.Params = args[0]
                    break
        specs: list[tuple[str, type[Message], str | None]] = []
        seen: set[str] = set()
        for klass in cls.__mro__:
            for attr, value in vars(klass).items():
                spec = getattr(value, _HANDLER_ATTR, None)
                if spec is None or attr in seen:
                    continue
                seen.add(attr)
                for message_type in _message_types_of(cls, value):
                    specs.append((attr, message_type, spec.topic))
        cls._handler_specs = tuple(specs)

    @classmethod
    def message_cycle(cls, params: BaseModel) -> MessageCycle | None:
        """For an agent that drives messages round a topology with loops (the pool): how many
        it keeps in flight at once, and the loops. None (the default): it drives none."""
        return None

    def __init__(
        self, name: str, context: AgentContext, params: P | Mapping[str, Any] | None = None
    ) -> None:
        """Raises pydantic.ValidationError when ``params`` do not fit the params model."""
        self.name = name
        self.context = context
        validated: Any
        if isinstance(params, BaseModel):
            if not isinstance(params, self.Params):
                raise TypeError(f"{type(self).__name__} expects {self.Params.__name__} params")
            validated = params
        else:
            validated = self.Params.model_validate(dict(params or {}))
        self.params: P = validated  # Params is P by construction
        self.log = structlog.get_logger("agent").bind(agent=name, role=self.role)

    # -- lifecycle hooks (override as needed) -------------------------------------------------
    async def on_start(self) -> None:
        """Open resources. Raising here aborts the run before any message flows."""

    async def on_stop(self) -> None:
        """Flush and close resources; called after the bus drained."""

    async def run(self) -> None:
        """The agent's own main task; the base does nothing (the agent only reacts)."""

    async def on_run_complete(self) -> None:
        """Work after the main work: called once every main task returned and the bus drained
        (e.g. train on what was accepted). Messages published here are drained before stop.
        Not called after a stop request. The base does nothing."""

    @classmethod
    def has_completion_task(cls) -> bool:
        """True when the class overrides ``on_run_complete``."""
        return cls.on_run_complete is not Agent.on_run_complete

    @classmethod
    def has_main_task(cls) -> bool:
        """True when the class overrides ``run`` (the runtime waits for it to finish)."""
        return cls.run is not Agent.run

    def progress(self) -> AgentProgress | None:
        """What to show in the progress display; None for nothing."""
        return None

    # -- messaging ----------------------------------------------------------------------------
    async def publish(self, message: Message, *, topic: str | None = None) -> None:
        """Publish on the bus; waits while a target mailbox is full. See `Bus.publish`."""
        await self.context.bus.publish(message, topic=topic)

    async def request(
        self, message: Message, *, timeout: float, topic: str | None = None
    ) -> Message:
        """Request/reply with a deadline. See `Bus.request` for what it raises."""
        return await self.context.bus.request(message, timeout=timeout, topic=topic)

    def routes(self) -> list[Route]:
        """The subscriptions of this agent: one per decorated handler (and union member).

        Override to subscribe dynamically (e.g. to a topic named in the params).
        """
        return [
            Route(message_type, getattr(self, attr), topic)
            for attr, message_type, topic in self._handler_specs
        ]

    def endpoint(self, *, concurrency: int = 1, mailbox_size: int = 1024) -> AgentEndpoint:
        """This agent's routes, ready for `Bus.attach`."""
        return AgentEndpoint(
            name=self.name, routes=self.routes(), concurrency=concurrency, mailbox_size=mailbox_size
        )


def _message_types_of(owner: type, function: Callable[..., Any]) -> list[type[Message]]:
    """The Message subclasses named by the annotation of a handler's message parameter."""
    parameters = list(inspect.signature(function).parameters.values())
    if len(parameters) != 2:
        raise TypeError(
            f"handler {function.__qualname__} must take (self, message); got {len(parameters)}"
        )
    module = inspect.getmodule(function)
    hints = typing.get_type_hints(function, globalns=vars(module) if module else None)
    annotation = hints.get(parameters[1].name)
    if annotation is None:
        raise TypeError(f"handler {function.__qualname__} must annotate its message parameter")
    origin = typing.get_origin(annotation)
    members = typing.get_args(annotation) if origin in (Union, types.UnionType) else (annotation,)
    result: list[type[Message]] = []
    for member in members:
        if not (isinstance(member, type) and issubclass(member, Message)):
            raise TypeError(
                f"handler {owner.__name__}.{function.__name__}: {member!r} is not a Message type"
            )
        result.append(member)
    return result

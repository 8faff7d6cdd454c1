"""The error hierarchy of evolagents.

One root, one branch per layer; each class says what the user should do::

    EvolagentsError
    ├── BusError                       (bus/)
    │   ├── BusClosedError             publish/request after close(): stop publishing
    │   ├── NoSubscriberError          a message kind nobody handles: fix the topology
    │   ├── RequestTimeoutError        no reply before the deadline: raise it or fix the replier
    │   ├── NoReplyError               every handler finished without replying: fix the replier
    │   ├── RequestFailedError         the replier raised (chained): see its dead letter
    │   └── DuplicateSubscriptionError an agent name registered twice: names must be unique
    ├── LLMError                       (agents/llm/errors.py)
    ├── ConfigError                    (runtime/errors.py)
    └── InputDataError                 (runtime/errors.py)

Lower layers define the root; upper layers add their branches next to their code, so imports
point down only.
"""

from __future__ import annotations

__all__ = [
    "BusClosedError",
    "BusError",
    "DuplicateSubscriptionError",
    "EvolagentsError",
    "NoReplyError",
    "NoSubscriberError",
    "RequestFailedError",
    "RequestTimeoutError",
]


class EvolagentsError(Exception):
    """Root of every error evolagents raises on purpose."""


class BusError(EvolagentsError):
    """Something went wrong delivering a message."""


class BusClosedError(BusError):
    """The bus was closed; nothing more can be published or requested."""


class NoSubscriberError(BusError):
    """A message was published whose kind (and topic) no agent handles.

    Publishing into the void is a topology bug, never a silent drop: add an agent that handles
    the kind, or stop publishing it.
    """


class RequestTimeoutError(BusError):
    """A request got no reply before its deadline."""


class DuplicateSubscriptionError(BusError):
    """An agent name was registered twice on the same bus."""


class NoReplyError(BusError):
    """Every handler of a request finished without returning a reply."""


class RequestFailedError(BusError):
    """The handler of a request raised; the original error is chained as __cause__."""

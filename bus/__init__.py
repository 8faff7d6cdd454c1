"""A small, general, typed message bus (knows nothing of LLMs or instructions)."""

from bus.errors import (
    BusClosedError,
    BusError,
    DuplicateSubscriptionError,
    EvolagentsError,
    NoReplyError,
    NoSubscriberError,
    RequestFailedError,
    RequestTimeoutError,
)
from bus.inprocess import InProcessBus
from bus.message import (
    DeadLetter,
    Message,
    Notice,
    message_class_for,
    message_kinds,
    new_message_id,
)
from bus.protocol import (
    AgentEndpoint,
    AgentStatistics,
    Bus,
    BusObserver,
    BusStatistics,
    Envelope,
    Handler,
    Route,
)

__all__ = [
    "AgentEndpoint",
    "AgentStatistics",
    "Bus",
    "BusClosedError",
    "BusError",
    "BusObserver",
    "BusStatistics",
    "DeadLetter",
    "DuplicateSubscriptionError",
    "Envelope",
    "EvolagentsError",
    "Handler",
    "InProcessBus",
    "Message",
    "NoReplyError",
    "NoSubscriberError",
    "Notice",
    "RequestFailedError",
    "RequestTimeoutError",
    "Route",
    "message_class_for",
    "message_kinds",
    "new_message_id",
]

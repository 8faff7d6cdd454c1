"""The shared LLM cache of a distributed run: each process's SQLite cache over one JetStream
key-value bucket (a real nats-server). What one worker paid for, another gets for free; a bucket
that fails never fails a call."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.llm.cache import ResponseCache
from agents.llm.types import Completion
from bus.errors import BusError
from tests.distributed._support import require_nats

require_nats()

from bus.nats import KeyValueUnavailable, NatsKeyValue, NatsServer, free_ports  # noqa: E402
from runtime.shared_cache import LayeredCache  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def completion(text: str) -> Completion:
    return Completion(text=text, model="m", prompt_tokens=3, completion_tokens=5)


async def test_a_value_put_by_one_process_is_read_by_another(nats_server: NatsServer) -> None:
    async with (
        NatsKeyValue(nats_server.url, bucket="kv-test") as writer,
        NatsKeyValue(nats_server.url, bucket="kv-test") as reader,  # binds to the same bucket
    ):
        assert await reader.get("k1") is None
        await writer.put("k1", b"v1")
        assert await reader.get("k1") == b"v1"
        await writer.put("k1", b"v2")  # one revision per key: the last put wins
        assert await reader.get("k1") == b"v2"


async def test_a_value_over_the_size_limit_is_refused_before_sending(
    nats_server: NatsServer,
) -> None:
    async with NatsKeyValue(nats_server.url, bucket="kv-small", max_value_size=16) as kv:
        with pytest.raises(KeyValueUnavailable, match="exceed max_value_size 16"):
            await kv.put("k", b"x" * 17)


async def test_opening_a_bucket_on_an_unreachable_broker_is_a_bus_error() -> None:
    [port] = free_ports(1)
    with pytest.raises(BusError, match="cannot open the key-value bucket 'b'"):
        async with NatsKeyValue(f"nats://127.0.0.1:{port}", bucket="b", timeout_s=0.5):
            pass


async def test_a_worker_gets_what_another_worker_paid_for_and_keeps_it_locally(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    local_a = ResponseCache(tmp_path / "a.sqlite")
    local_b = ResponseCache(tmp_path / "b.sqlite")
    try:
        async with (
            NatsKeyValue(nats_server.url, bucket="run-llm-cache") as bucket_a,
            NatsKeyValue(nats_server.url, bucket="run-llm-cache") as bucket_b,
        ):
            a, b = LayeredCache(local_a, bucket_a), LayeredCache(local_b, bucket_b)
            assert await b.get("key") is None
            await a.put("key", completion("paid once"))
            assert local_a.count() == 1

            got = await b.get("key")
            assert got is not None
            assert got.text == "paid once"
            assert got.cached
            assert local_b.count() == 1  # copied: the next hit needs no broker
            again = await b.get("key")
            assert again is not None
            assert again.text == "paid once"
            stats = b.stats.as_dict()
            assert (stats["hits"], stats["shared_hits"], stats["local_hits"]) == (2, 1, 1)
            assert stats["misses"] == 1
            assert a.stats.as_dict()["shared_writes"] == 1
            assert a.stats.as_dict()["shared_errors"] == 0
    finally:
        local_a.close()
        local_b.close()


async def test_a_dead_broker_costs_a_miss_and_a_skipped_write_never_a_failed_call(
    tmp_path: Path,
) -> None:
    server = NatsServer(tmp_path / "nats-store").start()
    local = ResponseCache(tmp_path / "local.sqlite")
    try:
        async with NatsKeyValue(server.url, bucket="doomed", timeout_s=0.5) as bucket:
            cache = LayeredCache(local, bucket)
            await cache.put("before", completion("stored everywhere"))
            server.kill()
            await cache.put("after", completion("stored locally"))  # does not raise
            assert local.count() == 2
            hit = await cache.get("after")
            assert hit is not None  # the local layer answers without the broker
            assert hit.text == "stored locally"
            assert await cache.get("never") is None  # local miss + bucket down = a miss
            stats = cache.stats.as_dict()
            assert stats["shared_writes"] == 1
            assert stats["shared_errors"] == 2  # the write after the kill and the failed read
            assert stats["misses"] == 1
    finally:
        local.close()
        server.kill()


async def test_an_undecodable_shared_value_is_a_miss(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    local = ResponseCache(tmp_path / "local.sqlite")
    try:
        async with NatsKeyValue(nats_server.url, bucket="foreign") as bucket:
            await bucket.put("key", b"not a completion")
            cache = LayeredCache(local, bucket)
            assert await cache.get("key") is None
            assert cache.stats.as_dict()["shared_errors"] == 1
            assert local.count() == 0
    finally:
        local.close()

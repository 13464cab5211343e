"""The SQLite channel layer of the embedded setup: the Channels contract, expiry, and
delivery between processes (the reason it exists)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.channel_layers import SQLiteChannelLayer
from tests.conftest import ROOT

NOTHING_S = 0.4  # how long to listen before concluding that nothing will arrive


@pytest.fixture
def layer_path(tmp_path: Path) -> Path:
    return tmp_path / "channels.sqlite3"


@pytest.fixture
async def layer(layer_path: Path) -> AsyncIterator[SQLiteChannelLayer]:
    layer = SQLiteChannelLayer(path=str(layer_path))
    yield layer
    await layer.close()


async def receive(layer: SQLiteChannelLayer, channel: str, timeout_s: float = 5.0) -> dict:
    return await asyncio.wait_for(layer.receive(channel), timeout_s)


async def assert_nothing_for(layer: SQLiteChannelLayer, channel: str) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(channel), NOTHING_S)


async def test_send_then_receive_in_order(layer: SQLiteChannelLayer) -> None:
    await layer.send("jobs", {"type": "job.run", "n": 1})
    await layer.send("jobs", {"type": "job.run", "n": 2})
    assert await receive(layer, "jobs") == {"type": "job.run", "n": 1}
    assert await receive(layer, "jobs") == {"type": "job.run", "n": 2}
    await assert_nothing_for(layer, "jobs")


async def test_receive_waits_for_a_later_send(layer: SQLiteChannelLayer) -> None:
    channel = await layer.new_channel()
    waiting = asyncio.create_task(receive(layer, channel))
    await asyncio.sleep(0.1)
    await layer.send(channel, {"type": "hello"})
    assert await waiting == {"type": "hello"}


async def test_channels_are_separate(layer: SQLiteChannelLayer) -> None:
    first, second = await layer.new_channel(), await layer.new_channel()
    assert first != second
    await layer.send(first, {"type": "for.first"})
    await assert_nothing_for(layer, second)
    assert await receive(layer, first) == {"type": "for.first"}


async def test_group_send_reaches_every_member_and_no_one_else(layer: SQLiteChannelLayer) -> None:
    a, b, outsider = (
        await layer.new_channel(),
        await layer.new_channel(),
        await layer.new_channel(),
    )
    await layer.group_add("fleet", a)
    await layer.group_add("fleet", b)
    await layer.group_add("fleet", a)  # joining twice still delivers once
    await layer.group_send("fleet", {"type": "fleet.device", "id": 7})
    assert await receive(layer, a) == {"type": "fleet.device", "id": 7}
    assert await receive(layer, b) == {"type": "fleet.device", "id": 7}
    await assert_nothing_for(layer, a)
    await assert_nothing_for(layer, outsider)


async def test_group_discard_stops_delivery(layer: SQLiteChannelLayer) -> None:
    stays, leaves = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("fleet", stays)
    await layer.group_add("fleet", leaves)
    await layer.group_discard("fleet", leaves)
    await layer.group_discard("fleet", "never.joined")  # not an error
    await layer.group_send("fleet", {"type": "x"})
    assert await receive(layer, stays) == {"type": "x"}
    await assert_nothing_for(layer, leaves)


async def test_group_send_to_an_empty_group_is_a_no_op(layer: SQLiteChannelLayer) -> None:
    await layer.group_send("nobody-here", {"type": "x"})


async def test_messages_expire(layer_path: Path) -> None:
    layer = SQLiteChannelLayer(path=str(layer_path), expiry=1)
    try:
        await layer.send("slow", {"type": "stale"})
        await asyncio.sleep(1.2)
        await layer.send("slow", {"type": "fresh"})
        assert await receive(layer, "slow") == {"type": "fresh"}
        await assert_nothing_for(layer, "slow")
    finally:
        await layer.close()


async def test_group_membership_expires(layer_path: Path) -> None:
    layer = SQLiteChannelLayer(path=str(layer_path), group_expiry=1)
    try:
        channel = await layer.new_channel()
        await layer.group_add("fleet", channel)
        await asyncio.sleep(1.2)
        await layer.group_send("fleet", {"type": "x"})
        await assert_nothing_for(layer, channel)
    finally:
        await layer.close()


async def test_invalid_names_are_refused(layer: SQLiteChannelLayer) -> None:
    with pytest.raises(TypeError):
        await layer.send("bad name with spaces", {"type": "x"})
    with pytest.raises(TypeError):
        await layer.group_add("bad group!", "chan")
    with pytest.raises(AssertionError):
        await layer.send("chan", ["not", "a", "dict"])  # type: ignore[arg-type]


async def test_flush_drops_messages_and_groups(layer: SQLiteChannelLayer) -> None:
    channel = await layer.new_channel()
    await layer.group_add("fleet", channel)
    await layer.send(channel, {"type": "before"})
    await layer.flush()
    await layer.group_send("fleet", {"type": "after"})
    await assert_nothing_for(layer, channel)


async def test_two_layer_instances_share_the_file(layer_path: Path) -> None:
    """Two instances stand for two processes' layers on the same file."""
    server = SQLiteChannelLayer(path=str(layer_path))
    worker = SQLiteChannelLayer(path=str(layer_path))
    try:
        channel = await server.new_channel()
        await server.group_add("fleet", channel)
        await worker.group_send("fleet", {"type": "fleet.device", "from": "worker"})
        assert await receive(server, channel) == {"type": "fleet.device", "from": "worker"}
    finally:
        await server.close()
        await worker.close()


SENDER = textwrap.dedent(
    """
    import asyncio, sys
    from controlplane.channel_layers import SQLiteChannelLayer

    async def main():
        layer = SQLiteChannelLayer(path=sys.argv[1])
        await layer.group_send("fleet", {"type": "fleet.device", "pid": int(sys.argv[2])})

    asyncio.run(main())
    """
)


@pytest.mark.service
async def test_a_group_message_from_another_process_arrives(
    layer: SQLiteChannelLayer, layer_path: Path
) -> None:
    channel = await layer.new_channel()
    await layer.group_add("fleet", channel)
    waiting = asyncio.create_task(receive(layer, channel, timeout_s=20))
    sender = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SENDER,
        str(layer_path),
        "4242",
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(sender.communicate(), 20)
    finally:
        if sender.returncode is None:
            sender.kill()
            await sender.wait()
    assert sender.returncode == 0, stderr.decode()
    assert await waiting == {"type": "fleet.device", "pid": 4242}

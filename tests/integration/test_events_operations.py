"""The events websocket and the operations API."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
import pytest

from tests.helpers import Daemon, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


async def test_events_announce_every_state_change(daemon: Daemon, busybox: str) -> None:
    events: list[dict[str, Any]] = []
    name = unique("ev")
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(daemon.socket)) as session:
        ws = await session.ws_connect("http://stapes/1.0/events?type=lifecycle,operation")

        async def collect() -> None:
            async for msg in ws:
                event = json.loads(msg.data)
                events.append(event)
                if event["metadata"].get("action") == "instance-deleted":
                    return

        collector = asyncio.get_running_loop().create_task(collect())
        await asyncio.sleep(0.1)

        def lifecycle() -> None:
            daemon.launch(busybox, name)
            daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "freeze"}))
            daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "unfreeze"}))
            restart = {"action": "restart", "force": True}
            daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", restart))
            daemon.force_delete(name)

        await asyncio.to_thread(lifecycle)
        await asyncio.wait_for(collector, 30)
        await ws.close()
    actions = [e["metadata"]["action"] for e in events if e["type"] == "lifecycle"]
    assert actions == [
        "instance-created",
        "instance-started",
        "instance-paused",
        "instance-resumed",
        "instance-restarted",  # only that, as Incus announces a restart
        "instance-stopped",
        "instance-deleted",
    ]
    created = next(e for e in events if e["metadata"].get("action") == "instance-created")
    assert created["metadata"]["source"] == f"/1.0/instances/{name}"
    assert created["project"] == "default" and created["timestamp"].endswith("Z")
    statuses = [
        e["metadata"]["status"]
        for e in events
        if e["type"] == "operation" and e["metadata"]["description"] == "Creating instance"
    ]
    assert statuses[0] == "Pending" and statuses[-1] == "Success"


async def test_logging_events_carry_debug_records(daemon: Daemon) -> None:
    """As Incus: a listener of logging events hears its own start and every API request, at
    debug level, whatever the daemon's log level."""
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(daemon.socket)) as session:
        ws = await session.ws_connect("http://stapes/1.0/events?type=logging")
        first = json.loads((await ws.receive(timeout=10)).data)
        assert first["metadata"]["message"] == "Event listener server handler started"
        assert first["metadata"]["level"] == "debug" and first["metadata"]["context"]["id"]
        await asyncio.to_thread(daemon.request, "GET", "/1.0/instances?recursion=1")
        handled = []
        while not handled:
            event = json.loads((await ws.receive(timeout=10)).data)
            if event["metadata"]["message"] == "Handling API request":
                handled.append(event)
        await ws.close()
    context = handled[0]["metadata"]["context"]
    assert context == {"ip": "@", "method": "GET", "protocol": "unix",
                       "url": "/1.0/instances?recursion=1", "username": "root"}  # fmt: skip
    assert handled[0]["type"] == "logging" and handled[0]["project"] == ""


def test_unknown_event_type(daemon: Daemon) -> None:
    resp = daemon.request("GET", "/1.0/events?type=bogus")
    assert resp.status == 400 and "bogus" in resp.json()["error"]


def test_operations_list_get_wait_and_cancel(daemon: Daemon, container: str) -> None:
    resp = daemon.request(
        "POST",
        f"/1.0/instances/{container}/exec",
        {"command": ["sleep", "2"], "record-output": True},
    )
    op_id = resp.json()["metadata"]["id"]
    listing = daemon.request("GET", "/1.0/operations").metadata
    assert f"/1.0/operations/{op_id}" in listing["running"]
    full = daemon.request("GET", "/1.0/operations?recursion=1").metadata
    assert any(op["id"] == op_id for op in full["running"])
    early = daemon.request("GET", f"/1.0/operations/{op_id}/wait?timeout=0.1").metadata
    assert early["status"] == "Running"
    cancel = daemon.request("DELETE", f"/1.0/operations/{op_id}")
    assert cancel.status == 403
    done = daemon.request("GET", f"/1.0/operations/{op_id}/wait?timeout=30").metadata
    assert done["status"] == "Success" and done["metadata"]["return"] == 0
    assert daemon.request("GET", f"/1.0/operations/{op_id}").metadata["status_code"] == 200
    assert daemon.request("GET", f"/1.0/operations/{op_id}/websocket?secret=x").status == 403


async def test_logging_events(daemon: Daemon, busybox: str) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(daemon.socket)) as session:
        ws = await session.ws_connect("http://stapes/1.0/events?type=logging")
        name = await asyncio.to_thread(daemon.launch, busybox)
        try:
            msg = await asyncio.wait_for(ws.receive(), 30)
            event = json.loads(msg.data)
            assert event["type"] == "logging"
            assert event["metadata"]["level"] in ("debug", "info", "warn", "error")
            assert event["metadata"]["message"]
        finally:
            await ws.close()
            await asyncio.to_thread(daemon.force_delete, name)


async def test_syslog_socket_messages_become_logging_events(lone: Daemon) -> None:
    """core.syslog_socket: what a process sends to syslog.socket is a logging event."""
    assert lone.request("PATCH", "/1.0", {"config": {"core.syslog_socket": "true"}}).status == 200
    sock_path = lone.root / "syslog.socket"
    assert sock_path.is_socket()
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(lone.socket)) as session:
        ws = await session.ws_connect("http://stapes/1.0/events?type=logging")
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender.sendto(b"<12>myapp[42]: disk almost full", str(sock_path))
        sender.close()
        found = None
        while found is None:
            event = json.loads((await ws.receive(timeout=10)).data)
            if "disk almost full" in event["metadata"]["message"]:
                found = event
        await ws.close()
    assert found["metadata"]["level"] == "warn"  # priority 12: user facility, warning
    assert found["metadata"]["context"] == {"source": "syslog"}
    assert lone.request("PATCH", "/1.0", {"config": {"core.syslog_socket": "false"}}).status == 200
    assert not sock_path.exists()

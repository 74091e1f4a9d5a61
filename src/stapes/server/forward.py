"""Requests about what lives on another cluster member are served by that member: this one
checks the client (its trust, its projects), then forwards the request as the cluster and
streams the answer back, websockets included (exec, console, operations). Operations made by
a forwarded request are remembered, so that waiting on them and their websockets reach the
member that runs them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import OrderedDict
from typing import Any

import aiohttp
from aiohttp import web

from stapes.api.errors import BadRequest, NotFound
from stapes.cluster import placement
from stapes.cluster.event_relay import EventRelay
from stapes.cluster.peers import Peers
from stapes.db import cluster as cluster_db
from stapes.db.instances import find_instance
from stapes.project import restrictions
from stapes.server.auth import identify
from stapes.server.endpoint import body_bytes
from stapes.server.raw_stream import RawStream
from stapes.server.state import State

log = logging.getLogger(__name__)

_INSTANCE = re.compile(r"^/1\.0/instances/([^/]+)(/.*)?$")
_OPERATION = re.compile(r"^/1\.0/operations/([^/]+)(/.*)?$")
_MEMBER_STATE = re.compile(r"^/1\.0/cluster/members/([^/]+)/state$")
_MEMBER_VALUES = re.compile(r"^/1\.0/(storage-pools|networks)(/[^/]+)?$")
_HOP = frozenset(
    {"host", "connection", "keep-alive", "upgrade", "transfer-encoding", "te", "trailer",
     "proxy-authorization", "proxy-authenticate", "sec-websocket-key",
     "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-accept"}
)  # fmt: skip
_RELAYED_UPGRADE_HEADERS = frozenset(
    {"upgrade", "connection", "user-agent", "x-incus-uid", "x-incus-gid", "x-incus-mode"}
)
"""What of a client's upgrade request (sftp) the member gets."""
MAX_ERROR_BODY = 64 * 1024
_REMEMBERED = 4096
"""Operations of forwarded requests remembered (the oldest forgotten first)."""


async def _answers(address: str, timeout: float = 2.0) -> bool:
    """Whether something accepts connections at ``address`` (HOST:PORT)."""
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port)), timeout
        )
    except (OSError, TimeoutError, ValueError):
        return False
    writer.close()
    return True


class Forwarder:
    def __init__(self, st: State, peers: Peers, relay: EventRelay) -> None:
        self.st = st
        self.peers = peers
        self.relay = relay
        self.operations: OrderedDict[str, str] = OrderedDict()
        """Operation id -> the address of the member that runs it."""

    async def target(self, request: web.Request) -> str:
        """The address of the member that serves ``request``; "" for this one."""
        st = self.st
        if not st.membership.clustered or identify(request).member:
            return ""
        path = request.path
        found = _MEMBER_VALUES.match(path)
        if found and (request.method == "POST") != bool(found.group(2)):
            # a pool or network made or shown or changed --target: the member's own values
            target = request.query.get("target", "")
            member = cluster_db.find_member(st.db, target) if target else None
            if target and member is None:
                raise NotFound(f"Cluster member {target!r} not found")
            if member is not None and member.name != st.membership.name:
                return member.address  # its own values of the pool or network: kept there
            return ""
        if request.method == "POST" and path == "/1.0/instances":
            target = request.query.get("target", "")
            if target:
                restrictions.check_cluster_target(st.db, request.query.get("project") or "default")
            if not target:
                target = await self._copy_source(request)
            return await self._place(target)
        found = _INSTANCE.match(path)
        if found:
            project = request.query.get("project", "") or "default"
            row = find_instance(st.db, project, found.group(1))
            if row is None or row.location in ("", st.membership.name):
                return ""
            member = cluster_db.find_member(st.db, row.location)
            if member is None:
                raise BadRequest(f"Instance {row.name!r} is on unknown member {row.location!r}")
            return member.address
        found = _MEMBER_STATE.match(path)
        if found and found.group(1) != st.membership.name:  # evacuation runs on the member
            member = cluster_db.find_member(st.db, found.group(1))
            return member.address if member is not None else ""
        found = _OPERATION.match(path)
        if found and found.group(1) not in st.operations.ids():
            return self.operations.get(found.group(1), "")
        return ""

    async def _copy_source(self, request: web.Request) -> str:
        """A copy of an instance of this cluster goes, unless told otherwise, to the member
        that has the instance's volume (the copy is made from it there)."""
        if request.content_type != "application/json":
            return ""
        try:
            body = json.loads(await body_bytes(request))
        except ValueError:
            return ""  # the handler says what is wrong with it
        source = body.get("source") if isinstance(body, dict) else None
        if not isinstance(source, dict) or source.get("type") != "copy":
            return ""
        name = str(source.get("source", "")).split("/", 1)[0]
        project = str(source.get("project") or request.query.get("project") or "default")
        row = find_instance(self.st.db, project, name) if name else None
        return row.location if row is not None and row.location else ""

    async def _place(self, target: str) -> str:
        """The member a new instance goes to; the scheduler's choice is left out when it does
        not take connections (it died since its last heartbeat), a named one is not."""
        own = self.st.membership.name
        down: set[str] = set()
        while True:
            chosen = placement.choose(self.st.db, own, target, frozenset(down))
            if chosen.name == own:
                return ""
            if target and not target.startswith("@"):
                return chosen.address
            if await _answers(chosen.address):
                return chosen.address
            log.warning("member %s does not answer: placing elsewhere", chosen.name)
            down.add(chosen.name)

    async def forward(self, request: web.Request, address: str) -> web.StreamResponse:
        url = f"https://{address}{request.path_qs}"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        upgrade = request.headers.get("Upgrade", "").lower()
        if upgrade == "websocket":
            return await self._websocket(request, url, headers)
        if upgrade:  # sftp: the bytes relayed as they are, once the member switched
            return await self._upgraded(request, address)
        session = self.peers.session()
        await self.relay.following(address)  # the events of what it starts reach the client
        try:
            if request.content_type == "application/json":
                data: Any = await body_bytes(request)  # perhaps read already (placement)
            else:
                data = request.content if request.body_exists else None
            async with session.request(
                request.method, url, headers=headers, data=data, allow_redirects=False
            ) as upstream:
                answer = web.StreamResponse(
                    status=upstream.status,
                    headers={
                        k: v
                        for k, v in upstream.headers.items()
                        if k.lower() not in _HOP and k.lower() != "content-length"
                    },
                )
                if upstream.status == 202:  # an operation: remember where it runs
                    body = await upstream.read()
                    self._remember(body, address)
                    answer.content_length = len(body)
                    await answer.prepare(request)
                    await answer.write(body)
                    return answer
                if upstream.content_length is not None:
                    answer.content_length = upstream.content_length
                await answer.prepare(request)
                async for chunk in upstream.content.iter_chunked(256 * 1024):
                    await answer.write(chunk)
                await answer.write_eof()
                return answer
        except aiohttp.ClientError as exc:
            raise BadRequest(f"Cluster member {address} unreachable: {exc}") from None

    async def _upgraded(self, request: web.Request, address: str) -> web.StreamResponse:
        host, _, port = address.rpartition(":")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port), ssl=self.peers.context()),
                10,
            )
        except (OSError, TimeoutError) as exc:
            raise BadRequest(f"Cluster member {address} unreachable: {exc}") from None
        try:
            lines = [f"{request.method} {request.path_qs} HTTP/1.1", f"Host: {address}"]
            lines += [
                f"{name}: {value}"
                for name, value in request.headers.items()
                if name.lower() in _RELAYED_UPGRADE_HEADERS
            ]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            status = int(head.split(b" ", 2)[1])
            if status != 101:
                rest = await asyncio.wait_for(reader.read(MAX_ERROR_BODY), 30)
                return web.Response(status=status, body=rest, content_type="application/json")
            stream = RawStream()
            request.protocol.set_parser(stream)  # type: ignore[arg-type]
            answer = web.StreamResponse(
                status=101,
                headers={"Connection": "Upgrade", "Upgrade": request.headers["Upgrade"]},
            )
            await answer.prepare(request)
            transport = request.transport
            assert transport is not None

            async def to_member() -> None:
                while data := await stream.queue.get():
                    writer.write(data)
                    await writer.drain()

            async def to_client() -> None:
                while data := await reader.read(256 * 1024):
                    transport.write(data)

            pumps = [asyncio.ensure_future(to_member()), asyncio.ensure_future(to_client())]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                transport.close()
            return answer
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            raise BadRequest(f"Cluster member {address} broke off: {exc}") from None
        finally:
            writer.close()

    def _remember(self, body: bytes, address: str) -> None:
        try:
            operation = json.loads(body).get("operation", "")
        except ValueError:
            return
        if isinstance(operation, str) and operation.startswith("/1.0/operations/"):
            self.operations[operation.rsplit("/", 1)[-1]] = address
            while len(self.operations) > _REMEMBERED:
                self.operations.popitem(last=False)

    async def _websocket(
        self, request: web.Request, url: str, headers: dict[str, str]
    ) -> web.StreamResponse:
        session = self.peers.session()
        protocols = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        try:
            upstream = await session.ws_connect(
                url.replace("https://", "wss://", 1),
                headers={k: v for k, v in headers.items() if k.lower() != "sec-websocket-protocol"},
                protocols=protocols,
                autoping=False,
                max_msg_size=0,
            )
        except aiohttp.ClientError as exc:
            raise BadRequest(f"Cluster member unreachable: {exc}") from None
        client = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else (),
            autoping=False,
            max_msg_size=0,
        )
        await client.prepare(request)

        async def pump(
            source: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
            sink: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
        ) -> None:
            async for message in source:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
                elif message.type == aiohttp.WSMsgType.PING:
                    await sink.ping(message.data)
                elif message.type == aiohttp.WSMsgType.PONG:
                    await sink.pong(message.data)
            await sink.close(code=source.close_code or aiohttp.WSCloseCode.OK)

        pumps = [
            asyncio.ensure_future(pump(upstream, client)),
            asyncio.ensure_future(pump(client, upstream)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.ALL_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            with contextlib.suppress(Exception):
                await upstream.close()
            with contextlib.suppress(Exception):
                await client.close()
        return client

"""The built-in DNS server (``core.dns_address``), as Incus runs it: it serves the network zones
to their peers by zone transfer (AXFR, IXFR answered with the whole zone) and answers SOA
queries, over UDP and TCP; it answers no other question (NOTIMP). A peer is let in by its
address and/or its TSIG key (``peers.NAME.address``, ``peers.NAME.key`` of the zone, the key
named ``<zone>_<NAME>.``); anyone else is told the zone does not exist (NXDOMAIN), as Incus
does, so that zones do not leak.

Messages are parsed, signed and written by dnspython; only the listening is done here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig

from stapes.api.errors import BadRequest
from stapes.config.validate import split_address
from stapes.network.zone_service import NetworkZones
from stapes.network.zones import peer_allowed

log = logging.getLogger(__name__)

DEFAULT_PORT = 53
RRSETS_PER_MESSAGE = 100
"""Records per TCP message of a zone transfer (each message stays under 64 KiB)."""
_SERVED = {dns.rdatatype.AXFR, dns.rdatatype.IXFR, dns.rdatatype.SOA}


def _reply(query: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
    """An unsigned answer with only a code (when the request's TSIG is not trusted)."""
    reply = dns.message.Message(id=query.id)
    reply.flags = dns.flags.QR | (query.flags & dns.flags.RD)
    reply.question = list(query.question)
    reply.set_rcode(rcode)
    return reply.to_wire()


class DnsServer:
    def __init__(self, zones: NetworkZones) -> None:
        self.zones = zones
        self.address = ""
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._keyring: dict[dns.name.Name, bytes] = {}

    def reload_keys(self) -> None:
        self._keyring = self.zones.keyring()

    # -- listening ----------------------------------------------------------------------------

    async def apply(self, address: str) -> None:
        """Serve on ``address`` (HOST[:PORT], port 53 by default; "" stops serving); on failure
        the old address is served again and the error says why."""
        if address == self.address:
            return
        old = self.address
        await self.close()
        if not address:
            return
        try:
            await self._listen(address)
        except (OSError, ValueError) as exc:
            await self.close()
            if old:
                with contextlib.suppress(OSError, ValueError):
                    await self._listen(old)
            raise BadRequest(f"core.dns_address: cannot serve DNS on {address!r}: {exc}") from None

    async def _listen(self, address: str) -> None:
        host, port = split_address(address, DEFAULT_PORT)
        loop = asyncio.get_running_loop()
        self.reload_keys()
        self._tcp = await asyncio.start_server(self._serve_tcp, host or None, port)
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=(host or "::", port)
        )
        self.address = address
        log.info("stapesd serving DNS zones on %s", address)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        self._udp, self._tcp, self.address = None, None, ""

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername")[0]).removeprefix("::ffff:")
        try:
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                wire = await reader.readexactly(size)
                for message in self.answer(wire, peer, tcp=True):
                    writer.write(struct.pack("!H", len(message)) + message)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    # -- answering ----------------------------------------------------------------------------

    def _parse(self, wire: bytes) -> tuple[dns.message.Message, bool]:
        """The request, and whether its TSIG signature (if any) verified."""
        try:
            return dns.message.from_wire(wire, keyring=self._keyring), True
        except (dns.message.UnknownTSIGKey, dns.tsig.BadSignature, dns.tsig.BadTime,
                dns.tsig.BadAlgorithm, dns.tsig.PeerError):  # fmt: skip
            return dns.message.from_wire(wire, keyring=False), False

    def answer(self, wire: bytes, peer: str, tcp: bool) -> list[bytes]:
        """The messages that answer one request (none for what is not a DNS query)."""
        try:
            query, verified = self._parse(wire)
        except dns.exception.DNSException:
            return []
        if query.flags & dns.flags.QR:
            return []
        if len(query.question) != 1:
            return [_reply(query, dns.rcode.SERVFAIL)]
        question = query.question[0]
        if question.rdtype not in _SERVED:
            return [_reply(query, dns.rcode.NOTIMP)]
        name = question.name.to_text(omit_final_dot=True)
        try:
            found = self.zones.content(name, full=question.rdtype != dns.rdatatype.SOA)
            key_name = query.keyname if query.had_tsig and verified else None
            if found is None or not peer_allowed(found[0].name, found[0].config, peer, key_name):
                return [_reply(query, dns.rcode.NXDOMAIN)]
            return self._messages(query, found[1], tcp)
        except Exception:
            log.exception("DNS zone %r could not be served", name)
            return [_reply(query, dns.rcode.SERVFAIL)]

    @staticmethod
    def _messages(
        query: dns.message.Message, rrsets: list[dns.rrset.RRset], tcp: bool
    ) -> list[bytes]:
        chunks = (
            [rrsets[i : i + RRSETS_PER_MESSAGE] for i in range(0, len(rrsets), RRSETS_PER_MESSAGE)]
            if tcp
            else [rrsets]
        )
        out: list[bytes] = []
        context = None
        for chunk in chunks:
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.AA
            reply.answer = list(chunk)
            signed = reply.had_tsig or reply.tsig is not None
            if signed and len(chunks) > 1:
                out.append(reply.to_wire(max_size=65535, multi=True, tsig_ctx=context))
                context = reply.tsig_ctx
            else:
                out.append(reply.to_wire(max_size=65535))
        return out


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        host = addr[0].removeprefix("::ffff:")  # an IPv4 peer on the dual-stack socket
        for message in self.server.answer(data, host, tcp=False):
            if self.transport is not None:
                self.transport.sendto(message, addr)

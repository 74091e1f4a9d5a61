"""The HTTPS client of the other members: this member presents the cluster certificate and
trusts no other at the far end (the cluster certificate is the only trust anchor), for the
requests it forwards, the lists it gathers and the events it relays."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import aiohttp

from stapes.api.errors import BadRequest


def _error(answer: object, status: int) -> str:
    """What a member's answer says went wrong (its error envelope's words)."""
    error = answer.get("error") if isinstance(answer, dict) else None
    return str(error or f"HTTP {status}")


class Peers:
    def __init__(self, cert: Path, key: Path) -> None:
        self.cert = cert
        self.key = key
        self._session: aiohttp.ClientSession | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # members are named by address; the key is the proof
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=self.cert.read_text())
        context.load_cert_chain(self.cert, self.key)
        return context

    def session(self) -> aiohttp.ClientSession:
        """The session (on the main loop); made again after the certificate changed."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.context(), limit=0)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None, connect=10)
            )
        return self._session

    async def post(self, address: str, path: str, body: object) -> Any:
        """POST ``body`` to the member at ``address``: the answer's metadata; BadRequest with
        the member's error (or why it could not be reached)."""
        return await self._metadata("POST", address, path, body)

    async def get(self, address: str, path: str) -> Any:
        """GET ``path`` of the member at ``address``, as ``post``."""
        return await self._metadata("GET", address, path, None)

    async def _metadata(self, method: str, address: str, path: str, body: object) -> Any:
        try:
            async with self.session().request(
                method, f"https://{address}{path}", json=body
            ) as resp:
                answer = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BadRequest(f"unreachable: {exc}") from None
        if resp.status >= 400 or not isinstance(answer, dict):
            raise BadRequest(_error(answer, resp.status))
        return answer.get("metadata")

    async def run(
        self,
        address: str,
        method: str,
        path: str,
        body: object,
        params: dict[str, str] | None = None,
        timeout: int = -1,
    ) -> None:
        """An operation on the member at ``address`` (``method`` ``path`` answered 202), waited
        for up to ``timeout`` seconds (-1: until it ends); BadRequest with its error."""
        session = self.session()
        try:
            async with session.request(
                method, f"https://{address}{path}", json=body, params=params
            ) as resp:
                answer = await resp.json()
            operation = answer.get("operation", "") if isinstance(answer, dict) else ""
            if resp.status != 202 or not operation:
                raise BadRequest(
                    str(answer.get("error") if isinstance(answer, dict) else resp.status)
                )
            wait = f"https://{address}{operation}/wait"
            async with session.get(wait, params={"timeout": str(timeout)}) as resp:
                done = await resp.json()
            if resp.status != 200:
                raise BadRequest(_error(done, resp.status))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BadRequest(f"unreachable: {exc}") from None

    async def certificate_changed(self) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

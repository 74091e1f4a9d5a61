"""What both ends of any migration (an instance's or a volume's) do around the transfer: run it
while watching the control websocket for the peer's verdict, and end with their own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from stapes.migration.channel import Channel, PeerGone

FAREWELL_SECONDS = 10.0
"""How long the sink waits, after its verdict, for the source to hang up."""


async def send_watched(control: Channel, sending: Coroutine[Any, Any, None]) -> None:
    """The source's side: send while the sink may report a failure; then wait for the sink's
    verdict (it speaks once it has everything)."""
    verdict = asyncio.ensure_future(control.receive_control())
    work = asyncio.ensure_future(sending)
    try:
        await asyncio.wait([verdict, work], return_when=asyncio.FIRST_COMPLETED)
        if verdict.done() and not work.done():
            ok, message = verdict.result()
            if not ok:
                raise PeerGone(message or "The target ended the migration during the transfer")
            await work  # the target has it all; this end is still winding its stream down
        work.result()
        ok, message = await verdict
        if not ok:
            raise PeerGone(f"The target failed: {message or 'no reason given'}")
    finally:
        await _stop(verdict, work)


async def receive_watched(control: Channel, receiving: Coroutine[Any, Any, None]) -> None:
    """The sink's side: receive while the source may fail or hang up; then say it worked and
    let the source hang up."""
    verdict = asyncio.ensure_future(control.receive_control())
    try:
        await unless_source_fails(verdict, receiving)
        await control.send_control(None)
        with contextlib.suppress(TimeoutError, PeerGone):  # the source hangs up: done
            await asyncio.wait_for(asyncio.shield(verdict), FAREWELL_SECONDS)
    finally:
        await _stop(verdict)


async def unless_source_fails(
    verdict: asyncio.Future[tuple[bool, str]], work: Coroutine[Any, Any, None]
) -> None:
    """Run the sink's ``work`` unless the source's word (``verdict``: it speaks only to
    fail) or its hanging up comes first."""
    task = asyncio.ensure_future(work)
    racing: list[asyncio.Future[Any]] = [verdict, task]
    try:
        await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            _, message = verdict.result()
            raise PeerGone(
                f"The source failed: {message}" if message else "The source hung up mid-transfer"
            )
        task.result()
    finally:
        await _stop(task)


async def _stop(*tasks: asyncio.Future[Any]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

"""/1.0/instances/{name}/state: runtime state and power actions."""

from __future__ import annotations

from aiohttp import web

from stapes.api.errors import BadRequest
from stapes.api.instance import InstanceStatePut
from stapes.instance import power
from stapes.server.endpoint import Action, Endpoint, body_as, instance_row, state
from stapes.server.response import Async, Result, Sync


async def get_state(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    return Sync(await st.instances.state(row))


async def put_state(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    req = await body_as(request, InstanceStatePut)
    if req.stateful and row.type != "virtual-machine":
        raise BadRequest(
            "Stateful stop and start of a container need CRIU checkpointing, which this "
            "stapesd does not support: send stateful=false (a VM can stop statefully)"
        )
    return Async(
        power.change_state(
            st.instances, row, req.action, req.force, req.timeout, stateful=req.stateful
        )
    )


ENDPOINTS = [Endpoint("/instances/{name}/state", get=Action(get_state), put=Action(put_state))]

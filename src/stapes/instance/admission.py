"""One admission check for every path that makes or changes an instance: create (from an image,
a copy or nothing), the import of a backup, an update, a profile change reaching the instances
that use the profile, and every start. Each runs the same checks, in the same order, on the
instance as it would be (its profiles expanded), so no path is a way around another's:

1. every key known and valid for the instance's type (volatile keys as stapesd keeps them);
2. every device well formed for the type, in the instance's project;
3. the project's restrictions (restricted.*);
4. the project's limits (limits.*)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stapes.config.keys import VOLATILE_PREFIX, validate_instance_config
from stapes.project import limits as project_limits
from stapes.project import restrictions as project_rules

if TYPE_CHECKING:
    from stapes.instance.service import InstanceService

Devices = dict[str, dict[str, str]]


def admit(
    svc: InstanceService,
    project: str,
    name: str,
    instance_type: str,
    profiles: list[str],
    config: dict[str, str],
    devices: Devices,
    *,
    new: bool,
) -> tuple[dict[str, str], Devices]:
    """Raise (400, 403) unless the instance ``name`` of ``project``, with its own ``config``
    and ``devices`` on top of ``profiles``, may exist; ``new``: it does not yet (it counts
    against the project's instance limits). Returns the expanded config and devices."""
    expanded, all_devices = svc.expand_parts(project, profiles, config, devices)
    validate_instance_config(
        {k: v for k, v in config.items() if not k.startswith(VOLATILE_PREFIX)}, instance_type
    )
    validate_instance_config(
        {k: v for k, v in expanded.items() if not k.startswith(VOLATILE_PREFIX)}, None
    )
    svc.check_devices(all_devices, instance_type, project)
    project_rules.check_instance(svc.db, project, instance_type, expanded, all_devices)
    project_limits.check_instance(
        svc.db, project, name, instance_type, expanded, all_devices, new=new
    )
    return expanded, all_devices

"""raw.qemu.qmp.early, raw.qemu.qmp.pre-start and raw.qemu.qmp.post-start: JSON lists of QMP
commands ({"execute": NAME, "arguments": {...}}) run at those points of a VM's start, as Incus
runs them. The VM is started paused when it has any, so that early and pre-start commands run
before the guest's first instruction; post-start commands run once it is running. A command
QEMU refuses fails the start, naming the key and the command (the driver runs them). Pure:
the key table checks values with it."""

from __future__ import annotations

import json
from typing import Any

STAGES = ("early", "pre-start", "post-start")


def key(stage: str) -> str:
    return f"raw.qemu.qmp.{stage}"


def commands(value: str) -> list[dict[str, Any]]:
    """The commands of one key; ValueError says what is wrong."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(parsed, list):
        raise ValueError('give a JSON list of commands, such as [{"execute": "query-status"}]')
    for command in parsed:
        if not isinstance(command, dict) or not isinstance(command.get("execute"), str):
            raise ValueError(f'each command is an object with an "execute" name: {command!r}')
        if not isinstance(command.get("arguments", {}), dict):
            raise ValueError(f'"arguments" of {command["execute"]} must be an object')
        unknown = set(command) - {"execute", "arguments"}
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)} in {command['execute']}")
    return parsed


def check(value: str) -> None:
    commands(value)


def any_hooks(config: dict[str, str]) -> bool:
    return any(config.get(key(stage)) for stage in STAGES)

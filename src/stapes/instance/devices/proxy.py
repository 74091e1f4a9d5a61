"""proxy: forward TCP, UDP or unix-socket connections between the host and the instance, through
a helper process per device (host/proxy.py)."""

from __future__ import annotations

import sys
from typing import ClassVar

from stapes.config import validate as v
from stapes.host.proxy import pair, parse_address
from stapes.instance.devices.device import Device, Helper, RunConfig

PID = "@PID@"
"""Placeholder in a helper's argv for the pid of the instance's init."""


def _is_address(value: str) -> None:
    parse_address(value)


def _is_false(value: str) -> None:
    if v.parse_bool(value):
        raise ValueError("only false is supported by this stapesd")


class Proxy(Device):
    KEYS: ClassVar = {
        "listen": _is_address,
        "connect": _is_address,
        "bind": v.one_of("host", "instance"),
        "uid": v.is_uint,
        "gid": v.is_uint,
        "mode": v.is_octal_mode,
        "nat": _is_false,
        "proxy_protocol": v.is_bool,
        "security.uid": v.is_uint,
        "security.gid": v.is_uint,
    }
    REQUIRED = ("listen", "connect")

    def validate(self) -> None:
        super().validate()
        listen = parse_address(self.config["listen"])
        connect = parse_address(self.config["connect"])
        if (listen.kind == "udp") != (connect.kind == "udp"):
            raise self.fail("udp can only be forwarded to udp, and streams only to streams")
        if v.parse_bool(self.config.get("proxy_protocol", "false")) and listen.kind == "udp":
            raise self.fail("proxy_protocol (a PROXY header) applies to stream connections only")
        try:
            pair(listen, connect)
        except ValueError as exc:
            raise self.fail(str(exc)) from None

    def attached(self) -> RunConfig:
        return RunConfig(helpers=[Helper(self.name, ())])

    def start(self) -> RunConfig:
        argv = [
            sys.executable,
            "-m",
            "stapes.host.proxy",
            "--pid",
            PID,
            "--listen",
            self.config["listen"],
            "--connect",
            self.config["connect"],
            "--bind",
            self.config.get("bind", "host"),
            "--uid",
            self.config.get("uid", "0"),
            "--gid",
            self.config.get("gid", "0"),
            "--mode",
            self.config.get("mode", "0644"),
            "--id-base",
            str(self.ctx.idmap.base if self.ctx.idmap else 0),
        ]
        if v.parse_bool(self.config.get("proxy_protocol", "false")):
            argv.append("--proxy-protocol")
        return RunConfig(helpers=[Helper(self.name, tuple(argv))])

"""Pure builder: an instance's expanded config -> liblxc configuration items."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stapes.api.errors import BadRequest
from stapes.config.validate import parse_bool, parse_cpuset, parse_size
from stapes.host.idmap import IdMap

LXC_CONFIG_DIR = Path("/usr/share/lxc/config")

LXC_ARCH = {
    "x86_64": "x86_64",
    "aarch64": "aarch64",
    "i686": "i686",
    "armv7l": "armv7l",
    "riscv64": "riscv64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}

Items = list[tuple[str, str]]


@dataclass(frozen=True)
class HostFacts:
    cgroup: str
    """"v1", "hybrid" or "v2"."""
    cpus: int
    memory_bytes: int


@dataclass(frozen=True)
class LxcInputs:
    name: str
    architecture: str
    config: dict[str, str]
    rootfs: Path
    log_dir: Path
    idmap: IdMap | None
    systemd: bool
    host: HostFacts


def build(inputs: LxcInputs) -> Items:
    cfg = inputs.config
    items: Items = [("lxc.include", str(LXC_CONFIG_DIR / "common.conf"))]
    if inputs.idmap is not None:
        items.append(("lxc.include", str(LXC_CONFIG_DIR / "userns.conf")))
        items.extend(inputs.idmap.lxc_items())
    items += [
        ("lxc.arch", LXC_ARCH.get(inputs.architecture, inputs.architecture)),
        ("lxc.uts.name", inputs.name),
        ("lxc.rootfs.path", f"dir:{inputs.rootfs}"),
        ("lxc.log.file", str(inputs.log_dir / "lxc.log")),
        ("lxc.log.level", "warn"),
        ("lxc.console.logfile", str(inputs.log_dir / "console.log")),
        ("lxc.net.0.type", "empty"),
    ]
    if inputs.systemd:
        items.append(("lxc.signal.halt", "SIGRTMIN+3"))
    for key, value in sorted(cfg.items()):
        if key.startswith("environment."):
            items.append(("lxc.environment", f"{key.removeprefix('environment.')}={value}"))
    items += limits(cfg, inputs.host)
    items += parse_raw_lxc(cfg.get("raw.lxc", ""))
    return items


def limits(cfg: dict[str, str], host: HostFacts) -> Items:
    """cgroup items for limits.*, for the host's cgroup layout."""
    v2 = host.cgroup == "v2"
    items: Items = []
    memory = cfg.get("limits.memory", "")
    if memory:
        if memory.endswith("%"):
            size = host.memory_bytes * int(memory[:-1]) // 100
        else:
            size = parse_size(memory)
        items.append(
            ("lxc.cgroup2.memory.max", str(size))
            if v2
            else ("lxc.cgroup.memory.limit_in_bytes", str(size))
        )
    cpu = cfg.get("limits.cpu", "")
    if cpu:
        cpus = list(range(min(int(cpu), host.cpus))) if cpu.isdigit() else parse_cpuset(cpu)
        if any(c >= host.cpus for c in cpus):
            raise BadRequest(
                f"limits.cpu {cpu!r} names a CPU this host does not have (it has {host.cpus})"
            )
        text = ",".join(str(c) for c in cpus)
        items.append(("lxc.cgroup2.cpuset.cpus", text) if v2 else ("lxc.cgroup.cpuset.cpus", text))
    processes = cfg.get("limits.processes", "")
    if processes:
        items.append(
            ("lxc.cgroup2.pids.max", processes) if v2 else ("lxc.cgroup.pids.max", processes)
        )
    return items


def limit_resets(cfg: dict[str, str], keys: set[str], host: HostFacts) -> Items:
    """cgroup items that lift the limits among ``keys`` that ``cfg`` no longer sets."""
    v2 = host.cgroup == "v2"
    prefix = "lxc.cgroup2." if v2 else "lxc.cgroup."
    unlimited = {
        "limits.memory": ("memory.max", "max") if v2 else ("memory.limit_in_bytes", "-1"),
        "limits.cpu": ("cpuset.cpus", f"0-{host.cpus - 1}"),
        "limits.processes": ("pids.max", "max"),
    }
    return [
        (prefix + item, value)
        for key, (item, value) in unlimited.items()
        if key in keys and not cfg.get(key)
    ]


def parse_raw_lxc(text: str) -> Items:
    items: Items = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().startswith("lxc."):
            raise BadRequest(f"raw.lxc line {number} is not 'lxc.key = value': {line!r}")
        items.append((key.strip(), value.strip()))
    return items


def render(items: Items) -> str:
    return "".join(f"{key} = {value}\n" for key, value in items)


def privileged(cfg: dict[str, str]) -> bool:
    return parse_bool(cfg.get("security.privileged", "false"))

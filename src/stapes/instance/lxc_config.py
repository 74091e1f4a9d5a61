"""Pure builder: an instance's expanded config -> liblxc configuration items."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from stapes.api.architecture import NAMES as ARCHITECTURES
from stapes.api.errors import BadRequest
from stapes.config.keys import value_of
from stapes.config.text import control_char, line_break
from stapes.config.validate import parse_bool, parse_cpu_allowance, parse_cpuset, parse_size
from stapes.host.idmap import IdMap
from stapes.instance import seccomp
from stapes.instance.devices.device import Mount, Nic, RunConfig

LXC_CONFIG_DIR = Path("/usr/share/lxc/config")


Items = list[tuple[str, str]]


@dataclass(frozen=True)
class HostFacts:
    cgroup: str
    """"v1", "hybrid" or "v2"."""
    cpus: int
    memory_bytes: int
    io_weight: str = ""
    """The cgroup file of block I/O weights (blkio.weight, blkio.bfq.weight, io.weight...),
    empty when the kernel has none."""
    numa_nodes: tuple[int, ...] = (0,)
    """The NUMA nodes online."""
    hugetlb: bool = False
    """Whether the hugetlb cgroup controller is there (limits.hugepages.*)."""
    lxcfs: bool = False
    """Whether lxcfs serves its files at /var/lib/lxcfs (looked at when stapesd starts, as
    Incus does)."""


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
    run: RunConfig = field(default_factory=RunConfig)


LXCFS_HOOKS_CLEARED: Items = [("lxc.hook.mount", ""), ("lxc.hook.post-stop", "")]
"""common.conf includes what the lxcfs package puts in common.conf.d: a mount hook (a shell
script that mounts lxcfs's files, and nothing when lxcfs does not run) and a post-stop hook that
only sleeps 0.5 s (for lxcfs's sake), at every stop. Where lxcfs does not run, both are cleared
(an empty value clears a hook list), before any hook of Stapes's own."""


def build(inputs: LxcInputs) -> Items:
    cfg = inputs.config
    items: Items = [("lxc.include", str(LXC_CONFIG_DIR / "common.conf"))]
    if inputs.idmap is not None:
        items.append(("lxc.include", str(LXC_CONFIG_DIR / "userns.conf")))
        items.extend(inputs.idmap.lxc_items())
    if not inputs.host.lxcfs:
        items += LXCFS_HOOKS_CLEARED
    items += [
        ("lxc.arch", lxc_arch(inputs.architecture)),
        ("lxc.uts.name", inputs.name),
        ("lxc.rootfs.path", f"dir:{inputs.rootfs}"),
        ("lxc.log.file", str(inputs.log_dir / "lxc.log")),
        ("lxc.log.level", "warn"),
        ("lxc.console.logfile", str(inputs.log_dir / "console.log")),
    ]
    items += devices(inputs.run, inputs.host)
    problem = seccomp.check(cfg)
    if problem is not None:
        raise BadRequest(problem)
    if seccomp.wanted(cfg):
        items.append(("lxc.seccomp.profile", str(seccomp_path(inputs.log_dir))))
    if inputs.systemd:
        items.append(("lxc.signal.halt", "SIGRTMIN+3"))
    items += oci_items(cfg)
    for key, value in sorted(cfg.items()):
        if key.startswith("environment."):
            items.append(("lxc.environment", f"{key.removeprefix('environment.')}={value}"))
    items += nvidia_items(cfg)
    items += limits(cfg, inputs.host)
    items += extras(cfg, LXC_CONFIG_DIR / "nesting.conf")
    items += parse_raw_lxc(cfg.get("raw.lxc", ""))
    return items


NVIDIA_HOOK = Path("/usr/share/lxc/hooks/nvidia")
"""liblxc's mount hook that runs libnvidia-container for the container."""


def nvidia_items(cfg: dict[str, str]) -> Items:
    """nvidia.runtime: the host's NVIDIA userspace passed in by liblxc's nvidia hook, which
    reads the NVIDIA_* environment (as Incus sets it)."""
    if not parse_bool(value_of(cfg, "nvidia.runtime")):
        return []
    if not NVIDIA_HOOK.exists() or shutil.which("nvidia-container-cli") is None:
        raise BadRequest(
            "nvidia.runtime needs libnvidia-container (nvidia-container-cli) and liblxc's "
            f"nvidia hook ({NVIDIA_HOOK}), which this host does not have"
        )
    items: Items = [
        ("lxc.environment", "NVIDIA_VISIBLE_DEVICES=none"),
        (
            "lxc.environment",
            "NVIDIA_DRIVER_CAPABILITIES=" + value_of(cfg, "nvidia.driver.capabilities"),
        ),
    ]
    for key, variable in (
        ("nvidia.require.cuda", "NVIDIA_REQUIRE_CUDA"),
        ("nvidia.require.driver", "NVIDIA_REQUIRE_DRIVER"),
    ):
        if cfg.get(key):
            items.append(("lxc.environment", variable + "=" + cfg[key]))
    items.append(("lxc.hook.mount", str(NVIDIA_HOOK)))
    return items


def lxc_arch(architecture: str) -> str:
    """liblxc takes Incus's architecture names as they are; anything else is refused."""
    if architecture not in ARCHITECTURES:
        raise BadRequest(f"Unknown architecture {architecture!r} for a container")
    return architecture


def oci_items(cfg: dict[str, str]) -> Items:
    """An application container runs its OCI entrypoint as PID 1 (not /sbin/init), as the
    image's user in its working directory, and is asked to stop with SIGTERM."""
    if cfg.get("volatile.container.oci") != "true" or not cfg.get("oci.entrypoint"):
        return []
    items = [("lxc.init.cmd", cfg["oci.entrypoint"]), ("lxc.signal.halt", "SIGTERM")]
    if cfg.get("oci.cwd"):
        items.append(("lxc.init.cwd", cfg["oci.cwd"]))
    items += [(f"lxc.init.{k}", cfg[f"oci.{k}"]) for k in ("uid", "gid") if cfg.get(f"oci.{k}")]
    return items


def seccomp_path(log_dir: Path) -> Path:
    return log_dir / "seccomp.profile"


# fstab fields are separated by blanks; getmntent(3), which liblxc reads mount entries with,
# decodes these octal escapes (and nothing else).
_FSTAB_ESCAPES = str.maketrans({"\\": "\\134", " ": "\\040", "\t": "\\011"})
_FSTAB_WORD = re.compile(r"[A-Za-z0-9_.=:+/-]+")


def fstab_field(value: str, what: str) -> str:
    """A path as one field of an fstab-style line: blanks and backslashes escaped, line
    breaks and other control characters refused (the kernel's mount table cannot show them
    either)."""
    problem = control_char(value.replace("\t", ""))
    if problem is not None or not value:
        raise BadRequest(
            f"Mount {what} {value!r} cannot be written to liblxc's mount table: "
            + (f"it contains {problem}" if problem else "it is empty")
        )
    return value.translate(_FSTAB_ESCAPES)


def mount_entry(mount: Mount) -> str:
    """An lxc.mount.entry line: targets are relative to the container's root."""
    for word in (mount.fstype, *mount.options):
        if not _FSTAB_WORD.fullmatch(word):
            raise BadRequest(f"Mount option or type {word!r} cannot be written to a mount entry")
    fields = [
        fstab_field(mount.source, "source"),
        fstab_field(mount.target.lstrip("/") or ".", "target"),
        mount.fstype,
        ",".join(mount.options),
        "0",
        "0",
    ]
    return " ".join(fields)


def nic_items(index: int, nic: Nic) -> Items:
    prefix = f"lxc.net.{index}"
    items = [(f"{prefix}.type", nic.kind), (f"{prefix}.name", nic.name)]
    if nic.kind == "veth":
        items.append((f"{prefix}.veth.pair", nic.host_name))
    if nic.kind == "macvlan":
        items.append((f"{prefix}.macvlan.mode", nic.macvlan_mode))
    if nic.hwaddr:
        items.append((f"{prefix}.hwaddr", nic.hwaddr))
    items.append((f"{prefix}.flags", "up"))
    if nic.mtu:
        items.append((f"{prefix}.mtu", str(nic.mtu)))
    if nic.link:
        items.append((f"{prefix}.link", nic.link))
    for address in nic.addresses:
        family = "ipv6" if ":" in address else "ipv4"
        items.append((f"{prefix}.{family}.address", address))
    for gateway in nic.gateways:
        family = "ipv6" if ":" in gateway else "ipv4"
        items.append((f"{prefix}.{family}.gateway", gateway))
    return items


def devices(run: RunConfig, host: HostFacts) -> Items:
    """The devices' part of the config: NICs (or none: an empty network namespace), device
    cgroup rules, then mounts (device nodes' binds included)."""
    items: Items = []
    for index, nic in enumerate(run.nics):
        items += nic_items(index, nic)
    if not run.nics:
        items.append(("lxc.net.0.type", "empty"))
    rule_key = "lxc.cgroup2.devices.allow" if host.cgroup == "v2" else "lxc.cgroup.devices.allow"
    items += [(rule_key, node.rule) for node in run.nodes]
    items += [("lxc.mount.entry", mount_entry(m)) for m in run.mounts]
    return items


HUGEPAGE_SIZES = ("64KB", "1MB", "2MB", "1GB")

# limits.* key -> the cgroup knobs it drives: (v1 name, v1 unlimited, v2 name, v2 unlimited)
_KNOBS: dict[str, list[tuple[str, str, str, str]]] = {
    "limits.memory": [
        ("memory.limit_in_bytes", "-1", "memory.max", "max"),
        ("memory.soft_limit_in_bytes", "-1", "memory.high", "max"),
    ],
    "limits.memory.enforce": [],  # shapes limits.memory
    "limits.memory.swap": [("memory.swappiness", "60", "memory.swap.max", "max")],
    "limits.cpu": [("cpuset.cpus", "", "cpuset.cpus", "")],
    "limits.cpu.allowance": [
        ("cpu.shares", "1024", "cpu.weight", "100"),
        ("cpu.cfs_quota_us", "-1", "cpu.max", "max"),
    ],
    "limits.cpu.priority": [("cpu.shares", "1024", "cpu.weight", "100")],
    "limits.processes": [("pids.max", "max", "pids.max", "max")],
    "limits.cpu.nodes": [("cpuset.mems", "", "cpuset.mems", "")],
    "limits.memory.swap.priority": [("memory.swappiness", "60", "", "")],  # no v2 knob
    **{
        f"limits.hugepages.{size}": [
            (f"hugetlb.{size}.limit_in_bytes", "-1", f"hugetlb.{size}.max", "max")
        ]
        for size in HUGEPAGE_SIZES
    },
    "limits.disk.priority": [("blkio.weight", "500", "io.weight", "100")],  # named by the host
}
LIMIT_KEYS = frozenset(_KNOBS)


def _knob(host: HostFacts, key: str, index: int, value: str) -> tuple[str, str]:
    v1, _, v2, _ = _KNOBS[key][index]
    return ("lxc.cgroup2." + v2, value) if host.cgroup == "v2" else ("lxc.cgroup." + v1, value)


def limits(cfg: dict[str, str], host: HostFacts) -> Items:
    """cgroup items for limits.*, for the host's cgroup layout."""
    v2 = host.cgroup == "v2"
    items: Items = []
    memory = cfg.get("limits.memory", "")
    if memory:
        if memory.endswith("%"):
            size = str(host.memory_bytes * int(memory[:-1]) // 100)
        else:
            size = str(parse_size(memory))
        unlimited = "max" if v2 else "-1"
        soft = value_of(cfg, "limits.memory.enforce") == "soft"
        items.append(_knob(host, "limits.memory", 0, unlimited if soft else size))
        items.append(_knob(host, "limits.memory", 1, size if soft else unlimited))
    if not parse_bool(value_of(cfg, "limits.memory.swap")):
        items.append(_knob(host, "limits.memory.swap", 0, "0"))
    cpu = cfg.get("limits.cpu", "")
    if cpu:
        cpus = list(range(min(int(cpu), host.cpus))) if cpu.isdigit() else parse_cpuset(cpu)
        if any(c >= host.cpus for c in cpus):
            raise BadRequest(
                f"limits.cpu {cpu!r} names a CPU this host does not have (it has {host.cpus})"
            )
        items.append(_knob(host, "limits.cpu", 0, ",".join(str(c) for c in cpus)))
    # A share and a quota exclude each other: setting one lifts the other (for live changes).
    allowance = cfg.get("limits.cpu.allowance", "")
    share: int | None = None
    if allowance:
        parsed = parse_cpu_allowance(allowance)
        if isinstance(parsed, int):
            share = parsed
            items.append(_knob(host, "limits.cpu.allowance", 1, "max" if v2 else "-1"))
        else:
            quota, period = parsed
            if v2:
                items.append(("lxc.cgroup2.cpu.max", f"{quota} {period}"))
            else:
                items += [
                    ("lxc.cgroup.cpu.cfs_period_us", str(period)),
                    ("lxc.cgroup.cpu.cfs_quota_us", str(quota)),
                ]
            share = 100
    priority = cfg.get("limits.cpu.priority", "")
    if priority and (share is None or not allowance.endswith("%")):
        share = int(priority) * 10  # priority 10 is the default weight, 0 the lowest
    if share is not None:
        weight = max(1, share) if v2 else max(2, 1024 * share // 100)
        items.append(_knob(host, "limits.cpu.allowance", 0, str(weight)))
    processes = cfg.get("limits.processes", "")
    if processes:
        items.append(_knob(host, "limits.processes", 0, processes))
    items += _placement_and_pages(cfg, host)
    disk = cfg.get("limits.disk.priority", "")
    if disk:
        if not host.io_weight:
            raise BadRequest(
                "limits.disk.priority needs block I/O weights in the kernel (blkio.weight or "
                "io.weight cgroup files), which this host does not have"
            )
        # 0-10 onto the weights: v1 blkio 10-1000 (500 by default), v2 io 1-10000 (100)
        level = int(disk)
        weight = max(1, level * 200) if v2 else max(10, level * 100)
        prefix = "lxc.cgroup2." if v2 else "lxc.cgroup."
        items.append((prefix + host.io_weight, str(weight)))
    return items


def _placement_and_pages(cfg: dict[str, str], host: HostFacts) -> Items:
    """limits.cpu.nodes (cpuset.mems), limits.hugepages.* (hugetlb) and
    limits.memory.swap.priority (v1 swappiness; cgroup v2 has no such knob, as Incus finds)."""
    items: Items = []
    nodes = cfg.get("limits.cpu.nodes", "")
    if nodes:
        wanted = parse_cpuset(nodes)
        missing = [n for n in wanted if n not in host.numa_nodes]
        if missing:
            online = ",".join(str(n) for n in host.numa_nodes)
            raise BadRequest(
                f"limits.cpu.nodes {nodes!r} names NUMA nodes this host does not have "
                f"(online: {online})"
            )
        items.append(_knob(host, "limits.cpu.nodes", 0, ",".join(str(n) for n in wanted)))
    for size in HUGEPAGE_SIZES:
        value = cfg.get(f"limits.hugepages.{size}", "")
        if not value:
            continue
        if not host.hugetlb:
            raise BadRequest(
                f"limits.hugepages.{size} needs the hugetlb cgroup controller, which this host "
                "does not have"
            )
        items.append(_knob(host, f"limits.hugepages.{size}", 0, str(parse_size(value))))
    swap_priority = cfg.get("limits.memory.swap.priority", "")
    swapping = parse_bool(value_of(cfg, "limits.memory.swap"))
    if swap_priority and swapping and host.cgroup != "v2":
        items.append(("lxc.cgroup.memory.swappiness", str(60 - 10 + int(swap_priority))))
    return items


def limit_resets(cfg: dict[str, str], keys: set[str], host: HostFacts) -> Items:
    """cgroup items that lift the limits among ``keys`` that ``cfg`` no longer sets, so that a
    live update which removes a key leaves the instance as if it had never been set."""
    v2 = host.cgroup == "v2"
    resets: Items = []
    for key in sorted(keys & LIMIT_KEYS):
        if cfg.get(key):
            continue
        for v1_name, v1_free, v2_name, v2_free in _KNOBS[key]:
            if v2 and not v2_name:
                continue
            if v1_name == "cpuset.cpus":
                v1_free = v2_free = f"0-{host.cpus - 1}"
            elif v1_name == "cpuset.mems":
                v1_free = v2_free = ",".join(str(n) for n in host.numa_nodes)
            resets.append(
                ("lxc.cgroup2." + v2_name, v2_free) if v2 else ("lxc.cgroup." + v1_name, v1_free)
            )
    return resets


def extras(cfg: dict[str, str], nesting_conf: Path) -> Items:
    """prlimits, namespaced sysctls and nesting."""
    items: Items = []
    for key, value in sorted(cfg.items()):
        if key.startswith("limits.kernel."):
            items.append(("lxc.prlimit." + key.removeprefix("limits.kernel."), value))
        elif key.startswith("linux.sysctl."):
            items.append(("lxc.sysctl." + key.removeprefix("linux.sysctl."), value))
    if parse_bool(value_of(cfg, "security.nesting")):
        items.append(("lxc.include", str(nesting_conf)))
    return items


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


_LXC_KEY = re.compile(r"lxc(\.[A-Za-z0-9_-]+)+")


def render(items: Items) -> str:
    """The one writer of liblxc config text: one ``key = value`` line per item. A key that is
    not a liblxc key, or a value that would end its line (newline, CR, NUL), is refused with
    the item named: nothing a client sends can add a line of its own."""
    lines = []
    for key, value in items:
        if not _LXC_KEY.fullmatch(key):
            raise BadRequest(f"Refusing to write {key!r} to liblxc's config: not a liblxc key")
        problem = line_break(value)
        if problem is not None:
            raise BadRequest(
                f"Refusing to write {key} to liblxc's config: its value contains {problem}"
            )
        lines.append(key + " = " + value + "\n")
    return "".join(lines)


def privileged(cfg: dict[str, str]) -> bool:
    return parse_bool(value_of(cfg, "security.privileged"))

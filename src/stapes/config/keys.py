"""The instance config keys: one declarative table that drives validation and defaults.

Every key listed here is applied by the instance drivers; a key that is not listed (and matches
no free-form prefix) is refused with its name."""

from __future__ import annotations

import re
from dataclasses import dataclass

from stapes.api.errors import BadRequest
from stapes.config import snapshots
from stapes.config import validate as v
from stapes.config.text import control_char
from stapes.host.idmap import IdMap, is_raw_idmap
from stapes.instance.vm import qemu_conf, qmp_hooks

CONTAINER = frozenset({"container"})
VM = frozenset({"virtual-machine"})
ALL_TYPES = frozenset({"container", "virtual-machine"})


@dataclass(frozen=True)
class Key:
    validator: v.Validator = v.any_value
    default: str = ""
    live: bool = False
    """Can change on a running instance without a restart."""
    types: frozenset[str] = ALL_TYPES
    help: str = ""


INSTANCE_KEYS: dict[str, Key] = {
    "boot.autostart": Key(
        v.is_bool,
        live=True,
        help="Start the instance when stapesd starts (unset: if it was running)",
    ),
    "security.privileged": Key(
        v.is_bool, "false", types=CONTAINER, help="Run the container without a user namespace"
    ),
    "limits.memory": Key(
        v.is_size_or_percent,
        live=True,
        help="Memory limit, as a size (512MiB) or a share of the host (50%)",
    ),
    "limits.cpu": Key(
        v.is_cpu_limit, live=True, help="Number of CPUs, or a set of CPUs to pin to (0-1,3)"
    ),
    "limits.processes": Key(
        v.is_uint, live=True, types=CONTAINER, help="Maximum number of processes in the container"
    ),
    "raw.lxc": Key(types=CONTAINER, help="Raw liblxc configuration appended to the generated one"),
    "boot.autostart.priority": Key(
        v.is_int, "0", live=True, help="Start order at daemon start: higher starts first"
    ),
    "boot.autostart.delay": Key(
        v.is_uint, "0", live=True, help="Seconds to wait after starting this instance"
    ),
    "boot.stop.priority": Key(
        v.is_int, "0", live=True, help="Stop order at host shutdown: higher stops first"
    ),
    "boot.host_shutdown_timeout": Key(
        v.is_uint, "30", live=True, help="Seconds a clean stop may take at host shutdown"
    ),
    "limits.cpu.allowance": Key(
        v.is_cpu_allowance,
        live=True,
        help="CPU time: a relative share (50%) or a hard quota (25ms/100ms)",
    ),
    "limits.cpu.priority": Key(
        v.is_priority, "10", live=True, help="CPU weight against other instances, 0 to 10"
    ),
    "limits.disk.priority": Key(
        v.is_priority, "5", live=True, help="Block I/O weight against other instances, 0 to 10"
    ),
    "limits.memory.enforce": Key(
        v.one_of("hard", "soft"),
        "hard",
        live=True,
        types=CONTAINER,
        help="hard: limits.memory is a ceiling; soft: only under host memory pressure",
    ),
    "limits.memory.swap": Key(
        v.is_bool, "true", live=True, types=CONTAINER, help="Whether the instance may swap"
    ),
    "linux.kernel_modules": Key(
        v.is_module_list,
        types=CONTAINER,
        help="Comma-separated kernel modules to load before starting",
    ),
    "security.nesting": Key(
        v.is_bool, "false", types=CONTAINER, help="Allow running containers inside"
    ),
    "security.idmap.isolated": Key(
        v.is_bool,
        "false",
        types=CONTAINER,
        help="Give the container host ids no other isolated container has (next start)",
    ),
    "security.idmap.base": Key(
        v.is_uint, types=CONTAINER, help="First host id of an isolated container's map"
    ),
    "raw.idmap": Key(
        is_raw_idmap,
        types=CONTAINER,
        help="Host ids mapped into the container as they are: lines of 'uid|gid|both HOST CT'",
    ),
    "security.idmap.size": Key(
        v.is_uint, "65536", types=CONTAINER, help="Number of ids in an isolated container's map"
    ),
    "security.protection.delete": Key(
        v.is_bool, "false", live=True, help="Refuse to delete the instance"
    ),
    "security.syscalls.deny_default": Key(
        v.is_bool, "true", types=CONTAINER, help="Deny module and kexec syscalls (the default)"
    ),
    "security.syscalls.deny": Key(
        v.is_deny_list,
        types=CONTAINER,
        help="Syscalls to deny (one per line or comma; EPERM unless an action)",
    ),
    "security.syscalls.allow": Key(
        v.is_syscall_list,
        types=CONTAINER,
        help="Syscalls to allow, all others denied (excludes the deny keys)",
    ),
    "security.syscalls.deny_compat": Key(
        v.only_false("blocking the 32-bit compat syscalls is not implemented by this stapesd"),
        "false",
        types=CONTAINER,
        help="Deny 32-bit compat syscalls (not available here)",
    ),
    **{
        f"security.syscalls.intercept.{call}": Key(
            v.only_false("syscall interception (seccomp notify) is not implemented by stapesd"),
            "false",
            types=CONTAINER,
            help=f"Emulate {call} for the container (not available here)",
        )
        for call in ("mknod", "setxattr", "mount", "bpf", "sched_setscheduler", "sysinfo")
    },
    # parameters of interceptions this stapesd does not do (inert while those stay off, as in
    # Incus when their switch is off)
    **{
        f"security.syscalls.intercept.{flag}": Key(
            v.only_false("syscall interception (seccomp notify) is not implemented by stapesd"),
            "false",
            types=CONTAINER,
            help="A parameter of mount/bpf interception (not available here)",
        )
        for flag in ("bpf.devices", "mount.shift")
    },
    "security.syscalls.intercept.mount.allowed": Key(
        v.is_name_list, types=CONTAINER, help="Filesystems an intercepted mount may use (inert)"
    ),
    "security.syscalls.intercept.mount.fuse": Key(
        v.is_fuse_map, types=CONTAINER, help="FS=fuse-helper redirections of intercepted mounts"
    ),
    "security.guestapi": Key(
        v.is_bool,
        "true",
        live=True,
        help="Serve the guest API at /dev/incus/sock in the container",
    ),
    "security.guestapi.images": Key(
        v.is_bool,
        "false",
        live=True,
        types=CONTAINER,
        help="Let the guest API export the host's public and cached images",
    ),
    "security.protection.shift": Key(
        v.is_bool,
        "false",
        live=True,
        types=CONTAINER,
        help="Refuse to shift the container's files to another idmap",
    ),
    "boot.autorestart": Key(
        v.is_bool,
        live=True,
        help="Restart the instance when it stops on its own (up to 10 times a minute)",
    ),
    "boot.host_shutdown_action": Key(
        v.one_of("stop", "force-stop", "stateful-stop"),
        "stop",
        live=True,
        help="How the instance stops when the host shuts down",
    ),
    "limits.cpu.nodes": Key(
        v.is_cpuset, live=True, help="NUMA nodes the instance's memory and CPUs are placed on"
    ),
    **{
        f"limits.hugepages.{size}": Key(
            v.is_size,
            live=True,
            types=CONTAINER,
            help=f"Most memory in {size} huge pages (hugetlb cgroup)",
        )
        for size in ("64KB", "1MB", "2MB", "1GB")
    },
    "limits.memory.swap.priority": Key(
        v.is_priority,
        "10",
        live=True,
        types=CONTAINER,
        help="How readily the container swaps, 0 (least) to 10 (cgroup v1 swappiness)",
    ),
    "migration.stateful": Key(
        v.is_bool,
        "false",
        live=True,
        help="Allow stateful stop, snapshots and migration (a VM's memory)",
    ),
    "migration.incremental.memory": Key(
        v.is_bool, "false", types=CONTAINER, help="Copy memory in passes during live migration"
    ),
    "migration.incremental.memory.goal": Key(
        v.is_percent_number, "70", types=CONTAINER, help="Percent of memory left to stop passes"
    ),
    "migration.incremental.memory.iterations": Key(
        v.is_uint, "10", types=CONTAINER, help="Most memory copy passes"
    ),
    "cluster.evacuate": Key(
        v.one_of("auto", "migrate", "live-migrate", "stop", "stateful-stop", "force-stop"),
        "auto",
        live=True,
        help="What evacuating the instance's cluster member does to it",
    ),
    "nvidia.runtime": Key(
        v.is_bool,
        "false",
        types=CONTAINER,
        help="Pass the host's NVIDIA userspace into the container (libnvidia-container)",
    ),
    "nvidia.driver.capabilities": Key(
        v.is_one_line, "compute,utility", types=CONTAINER, help="NVIDIA_DRIVER_CAPABILITIES"
    ),
    "nvidia.require.cuda": Key(v.is_one_line, types=CONTAINER, help="NVIDIA_REQUIRE_CUDA"),
    "nvidia.require.driver": Key(v.is_one_line, types=CONTAINER, help="NVIDIA_REQUIRE_DRIVER"),
    "raw.seccomp": Key(types=CONTAINER, help="A raw liblxc seccomp policy (excludes the others)"),
    "cloud-init.user-data": Key(
        v.is_cloud_config, help="cloud-init user data, served as a NoCloud seed"
    ),
    "cloud-init.vendor-data": Key(
        v.is_cloud_config, help="cloud-init vendor data, served as a NoCloud seed"
    ),
    "cloud-init.network-config": Key(
        v.is_yaml_mapping, help="cloud-init network config, served as a NoCloud seed"
    ),
    "snapshots.schedule": Key(
        snapshots.is_schedule,
        live=True,
        help="When to snapshot: a cron expression (0 3 * * *) or aliases (@hourly, @daily...)",
    ),
    "snapshots.schedule.stopped": Key(
        v.is_bool, "false", live=True, help="Whether scheduled snapshots include stopped instances"
    ),
    "snapshots.pattern": Key(
        v.any_value,
        "snap%d",
        live=True,
        help="Name of new snapshots: %d is a counter, {{ creation_date|date:'2006-01-02' }} a date",
    ),
    "snapshots.expiry": Key(
        snapshots.is_expiry,
        live=True,
        help="Lifetime of new snapshots, e.g. 1w 2d (M, H, d, w, m, y)",
    ),
}


def _no_scriptlet(value: str) -> None:
    if value:
        raise ValueError(
            "raw.qemu.scriptlet needs a Starlark interpreter, which this stapesd does not "
            "have: use raw.qemu.qmp.early|pre-start|post-start for QMP commands at start"
        )


VM_KEYS: dict[str, Key] = {
    "security.secureboot": Key(
        v.is_bool,
        "true",
        types=VM,
        help="UEFI secure boot with Microsoft's keys (false: plain UEFI; next start)",
    ),
    "security.csm": Key(
        v.is_bool,
        "false",
        types=VM,
        help="Boot through a legacy BIOS (SeaBIOS) instead of UEFI; needs secureboot off",
    ),
    "raw.qemu": Key(
        v.is_shell_words, types=VM, help="Raw QEMU arguments appended to the generated ones"
    ),
    "raw.qemu.conf": Key(
        qemu_conf.check,
        types=VM,
        help='Sections of QEMU\'s config file format ([device "id"] key = "value"), added '
        "with -readconfig",
    ),
    **{
        qmp_hooks.key(stage): Key(
            qmp_hooks.check,
            types=VM,
            help=f'JSON list of QMP commands run {when} ([{{"execute": ...}}])',
        )
        for stage, when in (
            ("early", "as soon as QEMU answers, the guest not started"),
            ("pre-start", "after the early ones, just before the guest starts"),
            ("post-start", "once the guest runs"),
        )
    },
    "raw.qemu.scriptlet": Key(
        _no_scriptlet,
        types=VM,
        help="A Starlark hook around QEMU's start (not available here: use raw.qemu.qmp.*)",
    ),
    "security.iommu": Key(
        v.is_bool, "false", types=VM, help="A virtual IOMMU (intel-iommu) in the VM"
    ),
    "security.agent.metrics": Key(
        v.is_bool,
        "true",
        live=True,
        types=VM,
        help="Whether state and metrics ask the guest agent (memory, processes, addresses)",
    ),
    "agent.nic_config": Key(
        v.is_bool,
        "false",
        types=VM,
        help="The agent gives the guest's NICs the instance's NIC names and MTUs",
    ),
    "limits.memory.hugepages": Key(
        v.is_bool,
        "false",
        types=VM,
        help="Back the VM's memory with the host's huge pages (reserved: vm.nr_hugepages)",
    ),
    "security.sev": Key(
        v.is_bool, "false", types=VM, help="AMD SEV: the guest's memory encrypted (needs KVM)"
    ),
    "security.sev.policy.es": Key(
        v.is_bool, "false", types=VM, help="AMD SEV-ES: the guest's CPU state encrypted too"
    ),
    "security.sev.session.dh": Key(
        v.is_base64, types=VM, help="The guest owner's Diffie-Hellman key (base64)"
    ),
    "security.sev.session.data": Key(
        v.is_base64, types=VM, help="The guest owner's launch session blob (base64)"
    ),
}
INSTANCE_KEYS.update(VM_KEYS)

OCI_KEYS: dict[str, Key] = {
    "oci.entrypoint": Key(
        v.is_one_line,
        types=CONTAINER,
        help="The application (command line) of an OCI container, its PID 1",
    ),
    "oci.cwd": Key(
        v.is_abs_path,
        types=CONTAINER,
        help="Working directory of the OCI container's application",
    ),
    "oci.uid": Key(v.is_uint, types=CONTAINER, help="User id the application runs as"),
    "oci.gid": Key(v.is_uint, types=CONTAINER, help="Group id the application runs as"),
}
INSTANCE_KEYS.update(OCI_KEYS)

FREE_PREFIXES: dict[str, Key] = {
    "user.": Key(live=True, help="Free-form user data"),
    "environment.": Key(
        v.is_one_line, help="Environment variables of the instance's init and of exec"
    ),
    "image.": Key(live=True, help="Properties copied from the source image"),
    "limits.kernel.": Key(
        v.is_prlimit, types=CONTAINER, help="Resource limit (prlimit), e.g. limits.kernel.nofile"
    ),
    "linux.sysctl.": Key(v.is_one_line, types=CONTAINER, help="Namespaced sysctl set at start"),
    "smbios11.": Key(
        v.is_one_line, help="SMBIOS type 11 string NAME=VALUE a VM's firmware tables carry"
    ),
}

PRLIMITS = frozenset(
    {
        "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
        "nproc", "rss", "rtprio", "rttime", "sigpending", "stack",
    }
)  # fmt: skip
"""The resources of limits.kernel.* (setrlimit's, as Incus lists them)."""

_ENV_NAME = re.compile(r"[^=\s\x00-\x1f\x7f]+")
_SYSCTL_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+")
_FREE_NAME = re.compile(r"[^\s\x00-\x1f\x7f]+")


def _check_free_name(prefix: str, name: str) -> str | None:
    """Why the part of a free-form key after its prefix is refused, or None. Each family has
    the grammar of what the name becomes on the host (a variable, a sysctl, a resource)."""
    if prefix == "environment.":
        return None if _ENV_NAME.fullmatch(name) else "not an environment variable name"
    if prefix == "linux.sysctl.":
        return None if _SYSCTL_NAME.fullmatch(name) else "not a sysctl name (net.ipv4.ip_forward)"
    if prefix == "smbios11.":
        return None if _ENV_NAME.fullmatch(name) else "names cannot hold '=', blanks or controls"
    if prefix == "limits.kernel.":
        if name not in PRLIMITS:
            return "not a kernel resource limit (one of " + ", ".join(sorted(PRLIMITS)) + ")"
        return None
    return (
        None if _FREE_NAME.fullmatch(name) else "key names cannot hold blanks or control characters"
    )


VOLATILE_PREFIX = "volatile."

VOLATILE_KEYS: dict[str, Key] = {
    "volatile.uuid": Key(v.is_uuid, live=True, help="The instance's UUID"),
    "volatile.uuid.generation": Key(
        v.is_uuid, live=True, help="Changes when the instance goes back in time (restore, copy)"
    ),
    "volatile.cloud-init.instance-id": Key(
        v.is_uuid, help="cloud-init's instance-id: a new one makes cloud-init run again"
    ),
    "volatile.base_image": Key(
        v.is_fingerprint, help="Fingerprint of the image the instance was created from"
    ),
    "volatile.last_state.power": Key(help="Power state at the last daemon stop (stapesd's)"),
    "volatile.last_state.ready": Key(
        v.is_bool, help="Whether the guest said it is ready (/dev/incus PATCH state Ready)"
    ),
    "volatile.last_state.idmap": Key(
        IdMap.check_volatile, help="The idmap of the last start (stapesd's)"
    ),
    "volatile.idmap.base": Key(v.is_uint, help="First host id of the idmap (stapesd's)"),
    "volatile.idmap.current": Key(
        IdMap.check_volatile, help="The idmap the rootfs is shifted to (stapesd's)"
    ),
    "volatile.idmap.next": Key(
        IdMap.check_volatile, help="The idmap of the next start (stapesd's)"
    ),
    "volatile.container.oci": Key(help="An application container from an OCI image (stapesd's)"),
    "volatile.apply_template": Key(
        v.one_of("create", "copy", "rename"),
        help="Image templates to apply at the next start (create, copy), as Incus marks them",
    ),
}
"""The volatile keys Incus knows. As in Incus a client may send them (``config edit`` and
``copy --refresh`` send them back); the first three are stored, the others record host state
that only stapesd changes, so a value sent for them is accepted and not applied."""

_DEVICE_VOLATILE = re.compile(r"volatile\.(.+)\.(hwaddr|host_name|name|mtu|last_state\..+)")


def volatile_key(key: str) -> Key | None:
    """The table entry of a volatile key, device ones (volatile.eth0.hwaddr...) included: the
    device part must be a device name, a MAC a MAC."""
    if key in VOLATILE_KEYS:
        return VOLATILE_KEYS[key]
    match = _DEVICE_VOLATILE.fullmatch(key)
    if match is None or not v.is_device_name_ok(match[1]):
        return None
    if match[2] == "hwaddr":
        return Key(v.is_mac, help="The MAC address of a NIC (a client may choose it)")
    return Key(help="Device state recorded by stapesd")


def user_writable_volatile(key: str) -> bool:
    if key in USER_WRITABLE_VOLATILE:
        return True
    match = _DEVICE_VOLATILE.fullmatch(key)
    return match is not None and match[2] == "hwaddr" and v.is_device_name_ok(match[1])


USER_WRITABLE_VOLATILE = frozenset(
    {
        "volatile.uuid",
        "volatile.uuid.generation",
        "volatile.base_image",
        "volatile.cloud-init.instance-id",
        "volatile.apply_template",  # set to run the image's templates again at the next start
    }
)


def without_empty(config: dict[str, str]) -> dict[str, str]:
    """An empty value unsets a key, as in Incus."""
    return {k: v for k, v in config.items() if v != ""}


def effective_config(requested: dict[str, str], current: dict[str, str]) -> dict[str, str]:
    """The config to store for a create or an update: the request, with stapesd's own
    volatile keys kept as they are (``current``: the stored config, empty for a new instance),
    whatever the request said of them."""
    merged = {
        k: val
        for k, val in requested.items()
        if not k.startswith(VOLATILE_PREFIX) or user_writable_volatile(k)
    }
    merged.update(
        {
            k: val
            for k, val in current.items()
            if k.startswith(VOLATILE_PREFIX) and not user_writable_volatile(k)
        }
    )
    return merged


def default(key: str) -> str:
    """The table's default for a key (empty when it has none)."""
    spec = INSTANCE_KEYS.get(key)
    return spec.default if spec is not None else ""


def value_of(config: dict[str, str], key: str) -> str:
    """A key's value in an (expanded) config, or the table's default."""
    return config.get(key) or default(key)


def lookup(key: str) -> Key | None:
    """The table entry of a key by its full name (None: unknown); a free-form family's key
    must also fit its family's grammar."""
    if key in INSTANCE_KEYS:
        return INSTANCE_KEYS[key]
    for prefix, spec in FREE_PREFIXES.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            return spec if _check_free_name(prefix, key[len(prefix) :]) is None else None
    return None


def _unknown_key(key: str) -> BadRequest:
    """The 400 of a key the table does not know, saying why when its family is known."""
    problem = control_char(key)
    if problem is not None:
        return BadRequest(f"Invalid configuration key {key!r}: it contains {problem}")
    for prefix in FREE_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            why = _check_free_name(prefix, key[len(prefix) :])
            return BadRequest(f"Invalid configuration key {key!r}: {why}")
    return BadRequest(f"Unknown configuration key: {key}")


def validate_instance_config(
    config: dict[str, str], instance_type: str | None, current: dict[str, str] | None = None
) -> None:
    """Refuse unknown keys and bad values, naming the key.

    ``current`` is the stored config: volatile keys sent back unchanged (as ``config edit``
    does) are accepted as they are. ``instance_type`` None (profiles) accepts keys of any
    type."""
    current = current or {}
    for key, value in config.items():
        if not isinstance(value, str):
            raise BadRequest(f"Invalid value for config key {key!r}: values must be strings")
        if key.startswith(VOLATILE_PREFIX):
            if instance_type is None:
                raise BadRequest(f"Config key {key!r}: volatile keys cannot be set in a profile")
            if current.get(key) == value:
                continue
            check_value(key, volatile_key(key), value)
            continue
        spec = lookup(key)
        if spec is not None and instance_type is not None and instance_type not in spec.types:
            raise BadRequest(f"Config key {key!r} does not apply to a {instance_type}")
        check_value(key, spec, value)


def valid(key: str, value: str) -> bool:
    """Whether a (volatile) key is known and its value fits (no error raised)."""
    spec = volatile_key(key) if key.startswith(VOLATILE_PREFIX) else lookup(key)
    if spec is None:
        return False
    try:
        spec.validator(value)
    except ValueError:
        return False
    return True


def check_value(key: str, spec: Key | None, value: str) -> None:
    """The one place a key's value is judged: unknown keys and bad values name the key."""
    if spec is None:
        raise _unknown_key(key)
    try:
        spec.validator(value)
    except ValueError as exc:
        raise BadRequest(f"Invalid value for config key {key!r}: {exc}") from None


def _by_pattern(keys: dict[str, v.Validator], key: str) -> v.Validator | None:
    """The validator of a key a ``*`` pattern covers (``tunnel.*.protocol``: one segment of
    letters, digits, - and _ for the star)."""
    for pattern, check in keys.items():
        if "*" in pattern:
            regex = re.escape(pattern).replace(r"\*", r"[A-Za-z0-9_-]+")
            if re.fullmatch(regex, key):
                return check
    return None


def check_keys(config: dict[str, str], keys: dict[str, v.Validator], what: str) -> None:
    """Every key known to ``keys`` (or a free ``user.*`` one) with a valid value; a 400 naming
    the key otherwise (``what``: "network", "project"...)."""
    for key, value in config.items():
        if key.startswith("user."):
            continue
        check = keys.get(key) or _by_pattern(keys, key)
        if check is None:
            raise BadRequest(f'Invalid {what} configuration key "{key}"')
        try:
            check(value)
        except ValueError as exc:
            raise BadRequest(f"Invalid value for {what} key {key!r}: {exc}") from None

"""Small composable validators. Each raises ValueError with a message a user can act on."""

from __future__ import annotations

import base64
import binascii
import calendar
import ipaddress
import re
import shlex
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import yaml

from stapes.api.architecture import NAMES as ARCHITECTURES
from stapes.api.errors import BadRequest
from stapes.config.text import control_char, line_break
from stapes.storage.backups import compression

Validator = Callable[[str], None]

_SIZE = re.compile(
    r"^(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|TB|PB|EB|KiB|MiB|GiB|TiB|PiB|EiB|k|K|M|G|T)?$"
)
_UNITS = {
    None: 1,
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "PB": 1000**5,
    "EB": 1000**6,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "PiB": 1024**5,
    "EiB": 1024**6,
    "k": 1024,
    "K": 1024,
    "M": 1024**2,
    "G": 1024**3,
    "T": 1024**4,
}


def digits(value: str) -> bool:
    """ASCII digits only (str.isdigit also takes superscripts and other scripts' digits,
    which int() then refuses)."""
    return value.isascii() and value.isdigit()


def any_value(value: str) -> None:
    return None


def is_one_line(value: str) -> None:
    """A value the host gets on one line (environment values, sysctls, command lines)."""
    problem = line_break(value)
    if problem is not None:
        raise ValueError(f"contains {problem}: the value must be a single line")


def is_abs_path(value: str) -> None:
    """An absolute path a mount or a process can take: on one line, no ``..`` (it would point
    above where it says), at most PATH_MAX long with NAME_MAX components (tabs and blanks are
    fine: the mount writer escapes them)."""
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path")
    is_one_line(value)
    parts = value.split("/")
    if ".." in parts:
        raise ValueError(f"{value!r} goes up with '..': give the path it means")
    if len(value) > 4095 or any(len(part) > 255 for part in parts):
        raise ValueError("the path is too long (4095 bytes, 255 per component at most)")


_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


def is_fingerprint(value: str) -> None:
    if not _FINGERPRINT.fullmatch(value):
        raise ValueError(f"{value!r} is not an image fingerprint (64 hex digits)")


_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


def is_mac(value: str) -> None:
    if not _MAC.fullmatch(value):
        raise ValueError(f"{value!r} is not a MAC address such as 00:16:3e:12:34:56")


_IFNAME = re.compile(r"[A-Za-z0-9_.:-]{1,15}")


def is_ifname(value: str) -> None:
    """A network interface name as the kernel takes it."""
    if not _IFNAME.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"{value!r} is not an interface name (1-15 of A-Z a-z 0-9 _ . : -)")


_DEVICE_NAME = re.compile(r"[A-Za-z0-9/:_-][A-Za-z0-9/.:_-]{0,62}")


def is_ifname_list(value: str) -> None:
    """Interface names separated by commas."""
    for part in value.split(","):
        is_ifname(part.strip())


def is_device_name_ok(name: str) -> bool:
    """Incus's rule for device names: 1-63 of letters, digits, / . - : _, not starting
    with a full stop."""
    return _DEVICE_NAME.fullmatch(name) is not None


def is_device_name(name: str) -> None:
    if not is_device_name_ok(name):
        raise ValueError(
            f"{name!r} is not a device name: 1-63 letters, digits and / . - : _, not starting "
            "with a full stop"
        )


NAME_MAX = 200
"""The longest name of a snapshot, volume, backup or profile: it becomes a file name on the
host, with room left for a ``<project>_`` in front (a file name takes 255 bytes)."""


def name_problem(name: str) -> str | None:
    """Why a name that becomes one file name on the host cannot, or None."""
    if not name:
        return "it cannot be empty"
    if name in (".", "..") or "/" in name:
        return "it cannot be . or .. or contain a slash"
    problem = control_char(name)
    if problem is not None:
        return f"it contains {problem}"
    if len(name.encode()) > NAME_MAX:
        return f"it is longer than {NAME_MAX} bytes"
    return None


def is_bool(value: str) -> None:
    if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ValueError(f"{value!r} is not a boolean (use true or false)")


def parse_bool(value: str) -> bool:
    return value.lower() in ("true", "1", "yes", "on")


def is_uint(value: str) -> None:
    if not digits(value):
        raise ValueError(f"{value!r} is not a non-negative integer")


def parse_size(value: str) -> int:
    match = _SIZE.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a size (examples: 512MiB, 2GiB, 1GB)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def is_size(value: str) -> None:
    parse_size(value)


def is_size_or_percent(value: str) -> None:
    if value.endswith("%"):
        number = value[:-1]
        if not digits(number) or not 0 < int(number) <= 100:
            raise ValueError(f"{value!r} is not a percentage between 1% and 100%")
        return
    is_size(value)


def parse_cpuset(value: str) -> list[int]:
    """``0-2,4`` -> [0, 1, 2, 4]."""
    cpus: list[int] = []
    for part in value.split(","):
        if re.fullmatch(r"\d+", part):
            cpus.append(int(part))
        elif re.fullmatch(r"\d+-\d+", part):
            low, high = (int(x) for x in part.split("-"))
            if low > high:
                raise ValueError(f"{value!r}: range {part} goes backwards")
            cpus.extend(range(low, high + 1))
        else:
            raise ValueError(f"{value!r} is not a CPU count or a CPU set such as 0-1,3")
    return sorted(set(cpus))


def is_cpu_limit(value: str) -> None:
    if digits(value):
        if int(value) < 1:
            raise ValueError("limits.cpu must be at least 1")
        return
    parse_cpuset(value)


def is_cpuset(value: str) -> None:
    """A set of ids such as 0-1,3 (NUMA nodes, CPUs)."""
    parse_cpuset(value)


def is_percent_number(value: str) -> None:
    if not digits(value) or not 0 <= int(value) <= 100:
        raise ValueError(f"{value!r} is not a number from 0 to 100")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def is_name_list(value: str) -> None:
    """Comma-separated names (filesystem types, modules...)."""
    for part in value.split(","):
        if not _NAME.fullmatch(part.strip()):
            raise ValueError(f"{part.strip()!r} in {value!r} is not a name")


def is_fuse_map(value: str) -> None:
    """Comma-separated FS=HELPER pairs (ext4=fuse2fs)."""
    for part in value.split(","):
        fs, sep, helper = part.strip().partition("=")
        if not sep or not _NAME.fullmatch(fs) or not _NAME.fullmatch(helper):
            raise ValueError(f"{part.strip()!r} in {value!r} is not FILESYSTEM=FUSE-HELPER")


def is_scope_list(value: str) -> None:
    for part in value.split(","):
        if not re.fullmatch(r"[\x21\x23-\x5b\x5d-\x7e]+", part.strip()):
            raise ValueError(f"{part.strip()!r} in {value!r} is not an OAuth scope")


def is_compression(value: str) -> None:
    """none, or a compression algorithm whose program is installed."""
    try:
        compression.check(value)
    except BadRequest as exc:
        raise ValueError(exc.message) from None


def is_architecture(value: str) -> None:
    if value not in ARCHITECTURES:
        raise ValueError(f"{value!r} is not an architecture name (x86_64, aarch64...)")


def is_pool_volume(value: str) -> None:
    pool, sep, volume = value.partition("/")
    if not sep or not pool or not volume or "/" in volume:
        raise ValueError(f"{value!r} is not POOL/VOLUME")


def is_base64(value: str) -> None:
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError(f"{value[:40]!r} is not base64") from None


def is_ip(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f'Not an IP address "{value}"') from None


def is_ip_list(value: str) -> None:
    for part in value.split(","):
        try:
            ipaddress.ip_address(part.strip())
        except ValueError:
            raise ValueError(f"{part.strip()!r} in {value!r} is not an IP address") from None


def is_http_url(value: str) -> None:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")


def is_subset(*allowed: str) -> Validator:
    """A comma-separated list of some of ``allowed``."""

    def check(value: str) -> None:
        for part in value.split(","):
            if part.strip() not in allowed:
                raise ValueError(f"{part.strip()!r} is not one of {', '.join(allowed)}")

    return check


def is_priority(value: str) -> None:
    if not digits(value) or not 0 <= int(value) <= 10:
        raise ValueError(f"{value!r} is not a priority between 0 and 10")


def is_int(value: str) -> None:
    try:
        int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an integer") from None


def parse_id_ranges(value: str) -> list[tuple[int, int]]:
    """Comma-separated ids or inclusive ranges (``1000,2000-2999``) as (first, last) pairs."""
    ranges = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        first, _, last = part.partition("-")
        if not digits(first) or (last and not digits(last)) or int(last or first) < int(first):
            raise ValueError(f"{part!r} is not an id or a range of ids (1000 or 1000-1999)")
        ranges.append((int(first), int(last or first)))
    return ranges


def is_id_ranges(value: str) -> None:
    parse_id_ranges(value)


_EXPIRY = re.compile(r"(\d+)(S|M|H|d|w|m|y)")


def add_expiry(start: datetime, value: str) -> datetime:
    """``start`` plus an Incus expiry expression: ``<n><unit>`` words, the unit one of S
    (seconds), M (minutes), H (hours), d, w, m (months), y (years)."""
    when = start
    words = value.split()
    if not words:
        raise ValueError("Invalid expiry expression: empty (use for example 15M, 3H or 1d)")
    for word in words:
        match = _EXPIRY.fullmatch(word)
        if not match:
            raise ValueError(
                f"Invalid expiry expression {word!r}: use <number><unit>, the unit one of "
                "S M H d w m y (seconds, minutes, hours, days, weeks, months, years)"
            )
        count, unit = int(match[1]), match[2]
        if unit in "SMHdw":
            seconds = {"S": 1, "M": 60, "H": 3600, "d": 86400, "w": 604800}[unit]
            when += timedelta(seconds=count * seconds)
        else:
            months = when.month - 1 + count * (12 if unit == "y" else 1)
            year, month = when.year + months // 12, months % 12 + 1
            day = min(when.day, calendar.monthrange(year, month)[1])
            when = when.replace(year=year, month=month, day=day)
    return when


def is_expiry(value: str) -> None:
    add_expiry(datetime(2000, 1, 1, tzinfo=UTC), value)


def one_of(*choices: str) -> Validator:
    def check(value: str) -> None:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")

    return check


_QUOTA = re.compile(r"(\d+)ms/(\d+)ms")


def parse_cpu_allowance(value: str) -> tuple[int, int] | int:
    """``50%`` -> a share in percent; ``25ms/100ms`` -> (quota_us, period_us)."""
    if value.endswith("%") and digits(value[:-1]) and 0 < int(value[:-1]) <= 100:
        return int(value[:-1])
    match = _QUOTA.fullmatch(value)
    if match and int(match.group(1)) > 0 and int(match.group(2)) >= 1:
        return int(match.group(1)) * 1000, int(match.group(2)) * 1000
    raise ValueError(f"{value!r} is neither a percentage (50%) nor a quota (25ms/100ms)")


def is_cpu_allowance(value: str) -> None:
    parse_cpu_allowance(value)


_PRLIMIT = re.compile(r"(unlimited|\d+)(:(unlimited|\d+))?")


def is_prlimit(value: str) -> None:
    if not _PRLIMIT.fullmatch(value):
        raise ValueError(f"{value!r} is not a limit (N, unlimited, or SOFT:HARD)")


def is_uuid(value: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None


def only_false(why: str) -> Validator:
    """A boolean key whose true side this stapesd cannot provide (``why`` says what lacks)."""

    def check(value: str) -> None:
        is_bool(value)
        if parse_bool(value):
            raise ValueError(f"true is not supported: {why}")

    return check


_SYSCALL = re.compile(r"[a-z0-9_]{1,64}")
_DENY_ENTRY = re.compile(r"[a-z0-9_]{1,64}( (errno [0-9]{1,4}|kill|trap))?")


def syscall_entries(value: str) -> list[str]:
    """security.syscalls.*: one syscall (with an optional action) per line or comma."""
    return [part.strip() for line in value.splitlines() for part in line.split(",") if part.strip()]


def is_syscall_list(value: str) -> None:
    """security.syscalls.allow: syscall names, one per line or comma."""
    for entry in syscall_entries(value):
        if not _SYSCALL.fullmatch(entry):
            raise ValueError(f"{entry!r} is not a syscall name (lower case letters, digits, _)")


def is_deny_list(value: str) -> None:
    """security.syscalls.deny: syscall names, each optionally with an action (errno N, kill,
    trap), one per line or comma."""
    for entry in syscall_entries(value):
        if not _DENY_ENTRY.fullmatch(entry):
            raise ValueError(
                f"{entry!r} is not a syscall name with an optional action "
                "(for example: mount, or keyctl errno 38)"
            )


_PCI_ADDRESS = re.compile(r"([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]")
_HEX_ID = re.compile(r"(0x)?[0-9a-fA-F]{4}")


def is_pci_address(value: str) -> None:
    """A PCI address (0000:01:00.0 or 01:00.0): it names a sysfs directory."""
    if not _PCI_ADDRESS.fullmatch(value):
        raise ValueError(f"{value!r} is not a PCI address such as 0000:01:00.0")


def is_hex_id(value: str) -> None:
    """A USB or PCI vendor or product id: four hex digits."""
    if not _HEX_ID.fullmatch(value):
        raise ValueError(f"{value!r} is not a vendor or product id (four hex digits, 10de)")


_DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def is_dns_domain(value: str) -> None:
    """A DNS domain (labels of letters, digits and inner dashes), as dnsmasq serves it."""
    labels = value.split(".")
    if len(value) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{value!r} is not a DNS domain such as incus or lab.example")


_MODULE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_module_list(value: str) -> None:
    """linux.kernel_modules: comma-separated kernel module names (each one modprobe's argument)."""
    for name in (m.strip() for m in value.split(",")):
        if name and not _MODULE.fullmatch(name):
            raise ValueError(f"{name!r} is not a kernel module name")


def is_shell_words(value: str) -> None:
    """Arguments split as a POSIX shell would (quotes must close)."""
    try:
        shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"cannot be split into arguments ({exc})") from None


def is_cloud_config(value: str) -> None:
    """User and vendor data: a #cloud-config document must be a YAML mapping; scripts and
    other cloud-init formats are passed through."""
    if not value.startswith("#cloud-config"):
        return
    try:
        data = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"#cloud-config is not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ValueError("#cloud-config must be a YAML mapping")


def is_yaml_mapping(value: str) -> None:
    try:
        data = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("expected a YAML mapping")


def is_octal_mode(value: str) -> None:
    """A file mode in octal (0644, 0660...)."""
    try:
        mode = int(value, 8)
    except ValueError:
        raise ValueError(f"{value!r} is not an octal mode such as 0644") from None
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"{value!r} is not an octal mode such as 0644")


DEFAULT_HTTPS_PORT = 8443


def split_address(value: str, default_port: int = DEFAULT_HTTPS_PORT) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` (every address) or a bare host (port
    ``default_port``: 8443)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, ""  # a bare IPv4/IPv6 address or name
    if port and (not digits(port) or not 0 < int(port) < 65536):
        raise ValueError(f"{value!r}: the port must be a number 1-65535")
    return host, int(port) if port else default_port


def is_listen_address(value: str) -> None:
    split_address(value)

"""The writers of host artefacts refuse what their format cannot carry: liblxc config, mount
entries, seccomp policies, QEMU option strings, dnsmasq files, nftables rules. Each is the
second line behind the API's validation: these call the writers directly with what a client
could have slipped past it."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from stapes.api.errors import BadRequest
from stapes.host import nic_filter
from stapes.instance import lxc_config, seccomp
from stapes.instance.devices.device import Mount, VmDisk
from stapes.instance.vm import qemu_args
from stapes.network import dnsmasq, firewall

INJECTIONS = ["x\nlxc.hook.pre-start = /bin/true", "x\rlxc.init.cmd = sh", "x\0y"]


@pytest.mark.parametrize("value", INJECTIONS)
def test_lxc_config_refuses_values_that_end_a_line(value: str) -> None:
    with pytest.raises(BadRequest, match=r"lxc\.environment"):
        lxc_config.render([("lxc.environment", value)])


@pytest.mark.parametrize("key", ["lxc.x\nlxc.hook.start", "lxc.a b", "hook.start", "lxc.", ""])
def test_lxc_config_refuses_keys_that_are_not_liblxc_keys(key: str) -> None:
    with pytest.raises(BadRequest, match="not a liblxc key"):
        lxc_config.render([(key, "1")])


def test_lxc_config_writes_one_line_per_item() -> None:
    text = lxc_config.render([("lxc.environment", "A=1\t2"), ("lxc.uts.name", "c1")])
    assert text == "lxc.environment = A=1\t2\nlxc.uts.name = c1\n"


def test_mount_entries_escape_blanks_and_refuse_line_breaks() -> None:
    entry = lxc_config.mount_entry(Mount("/srv/a b\tc\\d", "/mnt/x y", "none", ("bind",)))
    assert entry == "/srv/a\\040b\\011c\\134d mnt/x\\040y none bind 0 0"
    assert len(entry.split()) == 6  # still six fields
    for bad in ("/srv/a\nb", "/srv/\rx", "/srv/\0"):
        with pytest.raises(BadRequest, match="mount table"):
            lxc_config.mount_entry(Mount(bad, "/mnt"))
        with pytest.raises(BadRequest, match="mount table"):
            lxc_config.mount_entry(Mount("/srv", bad))
    with pytest.raises(BadRequest, match="Mount option"):
        lxc_config.mount_entry(Mount("/srv", "/mnt", "none", ("bind,x 0 0\nlxc.hook",)))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("security.syscalls.deny", "mount\n[all]\nreboot allow"),
        ("security.syscalls.deny", "kexec_load errno 1 extra"),
        ("security.syscalls.allow", "read write"),
        ("security.syscalls.allow", "Read"),
    ],
)
def test_seccomp_policy_refuses_entries_it_cannot_carry(key: str, value: str) -> None:
    with pytest.raises(BadRequest, match="seccomp"):
        seccomp.policy({key: value})


def test_seccomp_policy_writes_checked_entries() -> None:
    text = seccomp.policy({"security.syscalls.deny": "mount, keyctl errno 38\nreboot kill"})
    assert text.splitlines()[-3:] == ["mount errno 1", "keyctl errno 38", "reboot kill"]


def _vm(**extra: object) -> qemu_args.VmInputs:
    inputs = {
        "name": "v1",
        "uuid": "00000000-0000-0000-0000-000000000001",
        "config": {"limits.memory": "256MiB"},
        "accelerator": "tcg",
        "root_disk": Path("/p/root.img"),
        "run_dir": Path("/run/x"),
        "log_dir": Path("/l"),
        **extra,
    }
    return qemu_args.VmInputs(**inputs)  # type: ignore[arg-type]


def test_qemu_option_values_double_commas_and_ids_are_encoded() -> None:
    disk = VmDisk("data/disk:1_x", "/srv/a,file=/etc/shadow", "", False, False)
    argv = qemu_args.build(_vm(disks=[disk]))
    drive = argv[
        argv.index("if=none,id=disk-data_2fdisk_3a1_5fx,file=/srv/a,,file=/etc/shadow,format=raw")
    ]
    assert drive  # the comma stays inside the file name: no second file= option
    tap = qemu_args.Tap("tapx", "00:16:3e:00:00:01", "eth/0")
    argv = qemu_args.build(_vm(taps=[tap]))
    assert "tap,id=net-eth_2f0,ifname=tapx,script=no,downscript=no" in argv
    assert qemu_args.qemu_id("net", "a_b") != qemu_args.qemu_id("net", "a/b")


@pytest.mark.parametrize("value", ["/srv/a\nb", "/srv/\0", "/srv/\tx"])
def test_qemu_option_values_refuse_control_characters(value: str) -> None:
    with pytest.raises(BadRequest, match="QEMU option"):
        qemu_args.build(_vm(disks=[VmDisk("d", value, "", False, False)]))


def test_qemu_raw_arguments_refuse_line_breaks() -> None:
    with pytest.raises(BadRequest, match="QEMU argument"):
        qemu_args.build(_vm(config={"raw.qemu": "-name 'a\nb'"}))


@pytest.mark.parametrize(
    "lease",
    [
        dnsmasq.StaticLease("00:16:3e:00:00:01\ndhcp-script=/bin/sh", "10.0.0.2", "", "c1"),
        dnsmasq.StaticLease("00:16:3e:00:00:01,10.0.0.9", "10.0.0.2", "", "c1"),
        dnsmasq.StaticLease("00:16:3e:00:00:01", "10.0.0.2\n", "", "c1"),
        dnsmasq.StaticLease("00:16:3e:00:00:01", "10.0.0.2", "", "c1,x"),
    ],
)
def test_dnsmasq_hosts_lines_refuse_what_is_not_their_field(lease: dnsmasq.StaticLease) -> None:
    with pytest.raises(BadRequest, match="static DHCP lease"):
        dnsmasq.hosts_line(lease)


def test_dnsmasq_config_refuses_a_value_that_adds_an_option(tmp_path: Path) -> None:
    config = dnsmasq.DnsmasqConfig(
        network="n",
        bridge="br0",
        ipv4=ipaddress.IPv4Interface("10.0.0.1/24"),
        ipv6=None,
        dhcp_ranges=[],
        domain="incus\ndhcp-script=/bin/sh",
        directory=tmp_path,
    )
    with pytest.raises(BadRequest, match="dnsmasq option"):
        dnsmasq.render(config)


def test_nft_rules_take_only_interface_names_macs_and_addresses() -> None:
    with pytest.raises(BadRequest, match="interface name"):
        nic_filter.render('veth1" drop; }', "00:16:3e:00:00:01", ())
    with pytest.raises(BadRequest, match="MAC"):
        nic_filter.render("veth1", "00:16:3e:00:00:01 accept", ())
    with pytest.raises(BadRequest, match="IP address"):
        nic_filter.render("veth1", "00:16:3e:00:00:01", ("10.0.0.2 } }",))
    plan = firewall.FirewallPlan("n", "br0\nx", nat4=ipaddress.IPv4Network("10.0.0.0/24"))
    with pytest.raises(BadRequest, match="interface name"):
        firewall.render(plan)

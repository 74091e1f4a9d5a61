"""The QEMU command line built from a VM's config (no QEMU run: see integration/test_vm.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stapes.api.errors import BadRequest
from stapes.instance.devices.device import VmDisk
from stapes.instance.vm.qemu_args import Firmware, KernelBoot, Tap, VmInputs, build


def inputs(**extra: object) -> VmInputs:
    base: dict[str, object] = {
        "name": "v1",
        "uuid": "u",
        "config": {"limits.cpu": "1", "limits.memory": "256MiB"},
        "accelerator": "tcg",
        "root_disk": Path("/vol/root.img"),
        "run_dir": Path("/run/x"),
        "log_dir": Path("/log"),
    }
    return VmInputs(**{**base, **extra})  # type: ignore[arg-type]


def test_devices_disks_and_vsock() -> None:
    argv = build(
        inputs(
            kernel=KernelBoot(Path("/k"), None, "console=ttyS0 root=/dev/vda"),
            taps=[Tap("tap0", "00:16:3e:00:00:01", "eth0")],
            disks=[
                VmDisk("data", "/pool/custom/d/root.img", "", False, False),
                VmDisk("share", "/srv/a,b", "/mnt", True, True),
            ],
            devices=["vfio-pci,host=0000:01:00.0", "usb-host,hostbus=1,hostaddr=2"],
            vsock_cid=42,
        )
    )
    joined = " ".join(argv)
    assert "-m 256M" in joined and "-smp 1" in joined and "-accel tcg" in joined
    assert "-kernel /k" in joined and "bootindex" not in joined
    assert "virtio-net-pci,netdev=net-eth0,mac=00:16:3e:00:00:01,romfile=" in joined
    assert "virtio-blk-pci,drive=disk-data,serial=data" in joined
    assert "path=/srv/a,,b,security_model=passthrough,readonly=on" in joined  # commas doubled
    assert "qemu-xhci,id=usb" in joined and "vfio-pci,host=0000:01:00.0" in joined
    assert "vhost-vsock-pci,guest-cid=42" in joined
    assert "vhost-vsock" not in " ".join(build(inputs()))


def test_config_refused() -> None:
    with pytest.raises(BadRequest, match=r"limits\.memory"):
        build(inputs(config={"limits.memory": "1000TiB"}))
    with pytest.raises(BadRequest, match=r"limits\.cpu"):
        build(inputs(config={"limits.cpu": "4096"}))
    with pytest.raises(BadRequest, match=r"raw\.qemu"):
        build(inputs(config={"raw.qemu": "-device 'x"}))
    assert build(inputs(config={"raw.qemu": "-smbios type=1,serial=x"}))[-2:] == [
        "-smbios",
        "type=1,serial=x",
    ]


def test_uefi_boot_and_secure_boot() -> None:
    """A disk booted through OVMF: bootindex on the root disk; a secure boot build gets SMM
    and its variable store locked to it."""
    secure = Firmware(Path("/fw/CODE.ms.fd"), Path("/fw/VARS.ms.fd"), secure=True)
    argv = build(inputs(firmware=secure, nvram=Path("/vol/qemu.nvram")))
    joined = " ".join(argv)
    assert "-machine q35,smm=on" in joined
    assert "driver=cfi.pflash01,property=secure,value=on" in joined
    assert "if=pflash,format=raw,unit=0,file=/fw/CODE.ms.fd,readonly=on" in joined
    assert "if=pflash,format=raw,unit=1,file=/vol/qemu.nvram" in joined
    assert "virtio-blk-pci,drive=root,bootindex=0" in joined
    plain = Firmware(Path("/fw/CODE.fd"), Path("/fw/VARS.fd"))
    joined = " ".join(build(inputs(firmware=plain, nvram=Path("/vol/n"))))
    assert "-machine q35 " in joined and "smm" not in joined and "property=secure" not in joined


def test_shares_over_virtiofs_and_9p() -> None:
    """Shares a virtiofsd serves are vhost-user-fs devices on guest memory shared with it;
    the others are 9p, served by QEMU."""
    shares = [
        VmDisk("fast", "/srv/a", "/a", False, True),
        VmDisk("slow", "/srv/b", "/b", True, True),
    ]
    argv = build(inputs(disks=shares, virtiofs={"fast": Path("/run/x/virtiofs0.sock")}))
    joined = " ".join(argv)
    assert "-object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem" in joined
    assert "socket,id=vfs-fast,path=/run/x/virtiofs0.sock" in joined
    assert "vhost-user-fs-pci,chardev=vfs-fast,tag=fast" in joined
    assert "virtio-9p-pci,fsdev=fs-slow,mount_tag=slow" in joined and "id=fs-fast" not in joined
    assert "memory-backend" not in " ".join(build(inputs(disks=shares)))


def test_legacy_bios_boots_the_disk() -> None:
    """security.csm: no pflash at all, so QEMU's SeaBIOS boots the root disk."""
    joined = " ".join(build(inputs(config={"security.csm": "true"})))
    assert "pflash" not in joined and "-kernel" not in joined
    assert "virtio-blk-pci,drive=root,bootindex=0" in joined


def test_incus_6_vm_keys_on_the_command_line(tmp_path: Path) -> None:
    from stapes.instance.vm.host_checks import Sev

    config = {"limits.memory": "256MiB", "security.iommu": "true"}
    config |= {"limits.memory.hugepages": "true", "security.sev.policy.es": "true"}
    argv = build(
        inputs(
            config=config,
            accelerator="kvm",
            hugepage_size=2 * 1024**2,
            raw_conf=Path("/run/x/raw.qemu.conf"),
            paused=True,
            sev=Sev(cbitpos=51, reduced_phys_bits=1),
            sev_files={"dh-cert-file": Path("/run/x/dh")},
        )
    )
    joined = " ".join(argv)
    assert "q35,kernel-irqchip=split,confidential-guest-support=sev0" in argv
    assert argv.index("intel-iommu,intremap=on,caching-mode=on") < argv.index("virtio-vga")
    assert (
        "memory-backend-memfd,id=mem,size=256M,share=on,hugetlb=on,hugetlbsize=2097152,"
        "prealloc=on" in argv
    )
    assert (
        "sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x7,dh-cert-file=/run/x/dh" in argv
    )
    assert "-readconfig /run/x/raw.qemu.conf" in joined and argv[-1] == "-S"


def test_hugepages_must_be_free(tmp_path: Path) -> None:
    from stapes.instance.vm.qemu_args import check_hugepages

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("HugePages_Free:      100\nHugepagesize:       2048 kB\n")
    assert check_hugepages(200 * 1024**2, str(meminfo)) == 2 * 1024**2
    with pytest.raises(BadRequest, match="needs 128 huge pages of 2 MiB and the host has 100"):
        check_hugepages(256 * 1024**2, str(meminfo))


@pytest.mark.parametrize(
    "text",
    [
        '[device "x"]\ndriver = "a"\n[device "y"\n',
        '[device "x"]\ndriver = "a\\"\n[chardev "evil"]"',
        'driver = "a"',
        '[device "x"]\ndriver = "a\tb"',
        '[device "x y"]',
    ],
)
def test_raw_qemu_conf_refuses_what_the_format_cannot_carry(text: str) -> None:
    from stapes.instance.vm import qemu_conf

    with pytest.raises(ValueError, match="line"):
        qemu_conf.parse(text)


def test_raw_qemu_conf_is_written_back_section_by_section() -> None:
    from stapes.instance.vm import qemu_conf

    text = '# extra\n[device "rng1"]\n  driver = "virtio-rng-pci"\n[machine]\ngraphics="off"\n'
    assert qemu_conf.render(qemu_conf.parse(text)) == (
        '[device "rng1"]\n  driver = "virtio-rng-pci"\n\n[machine]\n  graphics = "off"\n'
    )


@pytest.mark.parametrize(
    "value",
    [
        "{}",
        "[1]",
        '[{"arguments": {}}]',
        '[{"execute": "x", "arguments": []}]',
        "[{",
        '[{"execute": "x", "id": 1}]',
    ],
)
def test_qmp_hook_lists(value: str) -> None:
    from stapes.instance.vm import qmp_hooks

    with pytest.raises(ValueError, match=r"JSON|command|arguments|fields"):
        qmp_hooks.commands(value)


def test_generation_id_and_smbios11_strings() -> None:
    config = {"volatile.uuid.generation": "6b1f9d2e-0000-4000-8000-000000000001"}
    config["smbios11.io.systemd.credential:a"] = "x,y"
    argv = build(inputs(config=config))
    assert "vmgenid,guid=6b1f9d2e-0000-4000-8000-000000000001" in argv
    assert "type=11,value=io.systemd.credential:a=x,,y" in argv
    with pytest.raises(BadRequest, match="newline"):
        build(inputs(config={"smbios11.a": "x\nz"}))

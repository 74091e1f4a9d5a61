"""The rebalancing plan (as Incus's): from the busiest member, when it is busier than the least
busy by the threshold, running VMs to the least busy members that stay below halfway between
the two; the batch and the cooldown respected; each architecture apart."""

from __future__ import annotations

from stapes.cluster.rebalance import Candidate, Load, plan, weight

GIB = 1 << 30
NOW = 1_800_000_000.0


def load(memory_gib: int, cpu_load: float, arch: str = "x86_64") -> Load:
    return Load(memory_gib * GIB, 16 * GIB, cpu_load, 4, arch)


def vm(name: str, where: str = "m1", memory_gib: int = 1, last_move: float = 0.0) -> Candidate:
    return Candidate("default", name, where, memory_gib * GIB, 1.0, last_move)


def moves(loads: dict[str, Load], vms: list[Candidate], **kw: object) -> list[tuple[str, str]]:
    options = {"threshold": 20, "batch": 3, "cooldown": "6H", "now": NOW, **kw}
    return [(m.candidate.name, m.target) for m in plan(loads, vms, **options)]  # type: ignore[arg-type]


def test_scores_are_memory_and_cpu_shares() -> None:
    assert load(8, 2.0).score() == 50  # (50% memory + 50% load) / 2
    assert load(8, 2.0).score(4 * GIB, 2.0) == 87  # (75 + 100) / 2


def test_busiest_to_least_busy_until_halfway() -> None:
    loads = {"m1": load(12, 3.0), "m2": load(2, 0.2), "m3": load(6, 1.0)}
    vms = [vm("a", memory_gib=2), vm("b", memory_gib=2), vm("c", memory_gib=2), vm("d", "m3")]
    # m1 scores 75, m2 8, m3 31; each VM adds 2 GiB and a CPU: m2 takes "a" (27, below
    # halfway: 41) but not "b" (46), m3 takes "b" (50, below 53) but not "c" (68)
    assert moves(loads, vms) == [("a", "m2"), ("b", "m3")]
    assert moves(loads, vms, batch=1) == [("a", "m2")]


def test_nothing_moves_under_the_threshold_or_in_cooldown() -> None:
    even = {"m1": load(8, 2.0), "m2": load(7, 1.8)}
    assert moves(even, [vm("a")]) == []
    uneven = {"m1": load(12, 3.0), "m2": load(2, 0.2)}
    recent = vm("a", last_move=NOW - 3600)
    old = vm("b", last_move=NOW - 7 * 3600)
    assert moves(uneven, [recent, old]) == [("b", "m2")]
    assert moves(uneven, [recent], cooldown="30M") == [("a", "m2")]


def test_a_vm_too_big_for_any_target_stays() -> None:
    loads = {"m1": load(14, 3.5), "m2": load(6, 1.5)}
    assert moves(loads, [vm("huge", memory_gib=8)]) == []  # m2 would pass halfway


def test_architectures_are_balanced_apart() -> None:
    loads = {"m1": load(12, 3.0), "m2": load(2, 0.2, "aarch64")}
    assert moves(loads, [vm("a")]) == []


def test_what_a_vm_weighs() -> None:
    assert weight({}) == (GIB, 1.0)
    assert weight({"limits.memory": "2GiB", "limits.cpu": "4"}) == (2 * GIB, 4.0)
    assert weight({"limits.memory": "50%", "limits.cpu": "0-1,3"}) == (GIB, 3.0)

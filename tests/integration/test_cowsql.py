"""The cowsql engine clusters will keep their state in, driven through Stapes' own binding
(libcowsql through ctypes) and wire client: real nodes on loopback, in this process."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stapes.api.errors import MissingHostFeature
from stapes.db import instances as iq
from stapes.db import projects, server_config
from stapes.db.cowsql import wire
from stapes.db.cowsql.database import CowsqlDatabase
from stapes.db.cowsql.node import BOOTSTRAP_ID, Node, generate_id, library
from stapes.db.schema import MIGRATIONS

try:
    library()
except MissingHostFeature as exc:
    pytest.skip(exc.message, allow_module_level=True)

LATENCY_MS = 5
"""Loopback: cowsql's heartbeats and election timeouts follow the latency it is told."""


def free_addresses(count: int) -> list[str]:
    found = []
    held = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        held.append(sock)
        found.append(f"127.0.0.1:{sock.getsockname()[1]}")
    for sock in held:
        sock.close()
    return found


def leader(addresses: list[str], timeout: float = 30.0) -> wire.Client:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return wire.connect_leader(addresses)
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    made: list[Node] = []
    yield made
    for node in made:
        node.close()


def test_one_node_keeps_sql_values_and_reports_errors(nodes: list[Node], tmp_path: Path) -> None:
    (address,) = free_addresses(1)
    nodes.append(Node(BOOTSTRAP_ID, address, tmp_path / "n0", latency_ms=LATENCY_MS))
    nodes[0].start()
    with leader([address]) as client:
        assert client.leader() == (BOOTSTRAP_ID, address)
        db = client.open("stapes")
        client.exec(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, f REAL, b BLOB, n INT)")
        values = ["héllo\nworld", 1.5, b"\0\x01bytes", None]
        assert client.exec(db, "INSERT INTO t (s, f, b, n) VALUES (?, ?, ?, ?)", values) == (1, 1)
        client.exec(db, "INSERT INTO t (s, f, b, n) VALUES (?, ?, ?, ?)", ["x" * 300, -2.0, b"", 7])
        columns, rows = client.query(db, "SELECT * FROM t ORDER BY id")
        assert columns == ["id", "s", "f", "b", "n"]
        assert rows == [(1, *values), (2, "x" * 300, -2.0, b"", 7)]
        many = list(range(300))  # past 255 parameters: the params32 tuple
        marks = ",".join("?" * len(many))
        assert client.query(db, f"SELECT count(*) FROM t WHERE id IN ({marks})", many)[1] == [(2,)]
        with pytest.raises(wire.WireError, match="no such table"):
            client.exec(db, "INSERT INTO missing VALUES (1)")
        with pytest.raises(ValueError, match="NUL"):
            client.exec(db, "SELECT ?", ["nul\0byte"])
        client.exec(db, "INSERT INTO t (s) VALUES ('still usable')")  # the connection goes on


def test_three_nodes_survive_the_leader_and_a_returning_node_catches_up(
    nodes: list[Node], tmp_path: Path
) -> None:
    addresses = free_addresses(3)
    ids = [BOOTSTRAP_ID] + [generate_id(a) for a in addresses[1:]]
    for n, (node_id, address) in enumerate(zip(ids, addresses, strict=True)):
        node = Node(node_id, address, tmp_path / f"n{n}", latency_ms=LATENCY_MS)
        nodes.append(node)
        node.start()
        if n:
            with leader(addresses[:1]) as client:
                client.add(node_id, address)
                client.assign(node_id, wire.VOTER)
    with leader(addresses) as client:
        assert sorted(client.cluster()) == sorted(
            (i, a, wire.VOTER) for i, a in zip(ids, addresses, strict=True)
        )
        db = client.open("stapes")
        client.exec(db, "CREATE TABLE t (k TEXT)")
        client.exec(db, "INSERT INTO t VALUES ('before')")
        first = client.leader()[0]

    gone = ids.index(first)
    nodes[gone].close()  # the leader goes: the two others elect one and take writes
    others = [a for i, a in enumerate(addresses) if i != gone]
    with leader(others) as client:
        assert client.leader()[0] != first
        db = client.open("stapes")
        client.exec(db, "INSERT INTO t VALUES ('without it')")

    back = Node(ids[gone], addresses[gone], tmp_path / f"n{gone}", latency_ms=LATENCY_MS)
    nodes[gone] = back  # the same id and data: it rejoins and gets what it missed
    back.start()
    deadline = time.monotonic() + 30
    while True:
        with leader(addresses) as client:
            try:
                client.transfer(ids[gone])
            except wire.WireError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                continue
        break
    with leader(addresses) as client:
        assert client.leader()[0] == ids[gone]
        db = client.open("stapes")
        assert client.query(db, "SELECT k FROM t ORDER BY rowid")[1] == [
            ("before",),
            ("without it",),
        ]


def test_the_state_database_runs_on_a_cluster_and_follows_its_leader(
    nodes: list[Node], tmp_path: Path
) -> None:
    """The db/ seam on cowsql: the whole schema migrated, rows written and read by the same
    modules the daemon uses, DB-API errors, a rolled-back transaction, and statements that
    find the new leader by themselves after the old one goes."""
    addresses = free_addresses(3)
    ids = [BOOTSTRAP_ID] + [generate_id(a) for a in addresses[1:]]
    for n, (node_id, address) in enumerate(zip(ids, addresses, strict=True)):
        nodes.append(Node(node_id, address, tmp_path / f"n{n}", latency_ms=LATENCY_MS))
        nodes[-1].start()
        if n:
            with leader(addresses[:1]) as client:
                client.add(node_id, address)
                client.assign(node_id, wire.VOTER)
    leader(addresses).close()  # elected
    with pytest.raises(RuntimeError, match="every member must run the same version"):
        CowsqlDatabase(addresses, upgrade=False)  # a member never upgrades it alone
    db = CowsqlDatabase(addresses)
    try:
        assert db.one("PRAGMA user_version")[0] == len(MIGRATIONS)  # type: ignore[index]
        with db.transaction():
            server_config.replace_config(db, {"core.https_address": "127.0.0.1:8443"})
            projects.ensure_project(db, "default", "Default Incus project", {})
            row = iq.InstanceRow(
                id=0, project="default", name="c1", type="container", architecture="x86_64",
                pool="default", created_at="2026-12-05T00:00:00Z", config={"user.a": "é"},
                devices={"root": {"type": "disk", "path": "/", "pool": "default"}},
                profiles=["default"],
            )  # fmt: skip
            row.id = iq.insert_instance(db, row)
        assert row.id > 0
        found = iq.get_instance(db, "default", "c1")
        assert (found.config, found.devices, found.profiles) == (
            row.config,
            row.devices,
            ["default"],
        )
        with pytest.raises(sqlite3.IntegrityError):
            iq.insert_instance(db, row)  # the same name in the same project
        with contextlib.suppress(RuntimeError), db.transaction():
            iq.delete_instance(db, row.id)
            raise RuntimeError("rolled back")
        assert iq.find_instance(db, "default", "c1") is not None

        with leader(addresses) as client:
            first = client.leader()[0]
        nodes[ids.index(first)].close()  # the next statements find the new leader
        iq.set_config_keys(db, row.id, {"user.b": "after"})
        assert iq.get_instance(db, "default", "c1").config["user.b"] == "after"
        assert server_config.get_config(db)["core.https_address"] == "127.0.0.1:8443"
    finally:
        db.close()

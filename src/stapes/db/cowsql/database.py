"""A Database (db/connection.py) on cowsql: every statement goes to the cluster's leader over
the wire protocol, found again when the leadership moves. Rows and cursors behave as sqlite3's,
and errors are sqlite3's DB-API ones, so the db/ modules run unchanged on either engine."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any

from stapes.db.connection import Cursor, Database
from stapes.db.cowsql import wire
from stapes.db.schema import check_version, migrate

SQLITE_CONSTRAINT = 19
ROW_STATEMENTS = ("SELECT", "WITH", "PRAGMA", "EXPLAIN", "VALUES")


class CowsqlRow:
    """A row by column name or index, as sqlite3.Row."""

    __slots__ = ("_columns", "_index", "_values")

    def __init__(self, columns: list[str], index: dict[str, int], values: tuple[Any, ...]) -> None:
        self._columns = columns
        self._index = index
        self._values = values

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._columns)

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)


class CowsqlCursor:
    def __init__(
        self,
        columns: list[str] | None,
        rows: list[CowsqlRow],
        lastrowid: int | None,
        rowcount: int,
    ) -> None:
        self._rows = rows
        self._next = 0
        self.lastrowid = lastrowid
        self.rowcount = rowcount
        self.description: Sequence[Sequence[Any]] | None = (
            None if columns is None else [(c, None, None, None, None, None, None) for c in columns]
        )

    def fetchone(self) -> CowsqlRow | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[CowsqlRow]:
        rest = self._rows[self._next :]
        self._next = len(self._rows)
        return rest


def yields_rows(sql: str) -> bool:
    words = sql.lstrip().split(None, 1)
    if not words:
        return False
    first = words[0].upper()
    if first == "PRAGMA":
        return "=" not in sql  # PRAGMA x = y sets; PRAGMA x reads
    return first in ROW_STATEMENTS


def _db_api_error(exc: wire.WireError) -> sqlite3.Error:
    if exc.code & 0xFF == SQLITE_CONSTRAINT:
        return sqlite3.IntegrityError(exc.message)
    return sqlite3.OperationalError(exc.message)


class CowsqlDatabase(Database):
    """The database ``name`` of the cowsql cluster whose members listen at ``addresses``."""

    def __init__(
        self,
        addresses: Sequence[str],
        name: str = "stapes",
        timeout: float = 10.0,
        dial: wire.Dial = wire.dial,
        upgrade: bool = True,
    ) -> None:
        """``upgrade``: bring the schema to this stapesd's (a new cluster); otherwise it must
        be this stapesd's already (a member joining or starting again)."""
        super().__init__()
        self.addresses = list(addresses)
        self.name = name
        self.timeout = timeout
        self.dial = dial
        self._client: wire.Client | None = None
        self._db = 0
        self._in_transaction = False
        """Whether a BEGIN went to the leader and its COMMIT or ROLLBACK did not yet (this
        engine may run under another Database's transaction: ServerDatabase's)."""
        self._closing = False
        try:
            with self.transaction():
                if upgrade:
                    migrate(self)
                else:
                    check_version(self)
        except BaseException:
            self.close()
            raise

    def interrupt(self) -> None:
        self._closing = True

    def close(self) -> None:
        """Close, cutting short a statement waiting for a leader (daemon shutdown: its
        threads must end)."""
        self._closing = True
        client = self._client
        if client is not None:
            with contextlib.suppress(OSError):
                client.sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _connected(self) -> wire.Client:
        """The connection to the leader, found again (an election may be under way: for up
        to ``timeout`` seconds) when there is none."""
        if self._client is None:
            deadline = time.monotonic() + self.timeout
            while True:
                if self._closing:
                    raise ConnectionError("the database is closed")
                try:
                    client = wire.connect_leader(self.addresses, self.timeout, self.dial)
                    break
                except ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            try:
                self._db = client.open(self.name)
            except BaseException:
                client.close()
                raise
            self._client = client
        return self._client

    def _execute(self, sql: str, params: tuple[Any, ...]) -> Cursor:
        """The statement on the leader. Outside a transaction, a leader that is gone or no
        longer leads is found again and the statement sent once more; inside one, the
        transaction is lost with it and the error goes to the caller."""
        word = sql.lstrip()[:8].upper()
        if word.startswith("BEGIN"):
            cursor = self._statement(sql, params)
            self._in_transaction = True
            return cursor
        if word.startswith(("COMMIT", "ROLLBACK", "END")):
            try:
                return self._statement(sql, params)
            finally:
                self._in_transaction = False
        return self._statement(sql, params)

    def _statement(self, sql: str, params: tuple[Any, ...]) -> Cursor:
        for attempt in (1, 2):
            try:
                client = self._connected()
            except OSError as exc:  # no leader within the timeout
                raise sqlite3.OperationalError(f"cowsql has no reachable leader: {exc}") from None
            try:
                return self._run(client, sql, params)
            except wire.WireError as exc:
                if not exc.not_leader:
                    raise _db_api_error(exc) from None
                problem: Exception = exc
            except OSError as exc:  # ConnectionError included: the node went away
                problem = exc
            client.close()
            self._client = None
            if self._in_transaction or attempt == 2:
                raise sqlite3.OperationalError(f"cowsql leader lost: {problem}") from None
        raise AssertionError("unreachable")

    def _run(self, client: wire.Client, sql: str, params: tuple[Any, ...]) -> Cursor:
        if yields_rows(sql):
            columns, rows = client.query(self._db, sql, params)
            index = {name: i for i, name in enumerate(columns)}
            return CowsqlCursor(columns, [CowsqlRow(columns, index, r) for r in rows], None, -1)
        last, changed = client.exec(self._db, sql, params)
        return CowsqlCursor(None, [], last, changed)

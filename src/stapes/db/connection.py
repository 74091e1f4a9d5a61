"""The database every query in Stapes goes through: DB-API calls with ``?`` parameters on a
``Database``, of which there are two engines: SQLite in the state directory (a standalone
server, this module) and cowsql, the replicated SQLite a cluster keeps its state in
(db/cowsql/database.py). Callers see only Database, Cursor and Row."""

from __future__ import annotations

import abc
import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from stapes.db.schema import MIGRATIONS, Migration, migrate


class Row(Protocol):
    """A result row: by column name or index, as sqlite3.Row."""

    def __getitem__(self, key: int | str) -> Any: ...

    def keys(self) -> list[str]: ...

    def __len__(self) -> int: ...


class Cursor(Protocol):
    @property
    def lastrowid(self) -> int | None: ...

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Sequence[Sequence[Any]] | None: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Database(abc.ABC):
    """One connection's worth of state: queries from any thread, one at a time, and write
    transactions (nested uses join the outer one). The engines say how to run one statement
    and how to close."""

    def __init__(self) -> None:
        self._depth = 0
        self._lock = threading.RLock()

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def _execute(self, sql: str, params: tuple[Any, ...]) -> Cursor: ...

    def interrupt(self) -> None:  # noqa: B027 (a local engine has nothing to interrupt)
        """The daemon is stopping: a statement that waits on something remote gives up (a
        local engine never waits: nothing to do). Safe from a signal handler."""

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Cursor:
        with self._lock:
            return self._execute(sql, params)

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> Row | None:
        row: Row | None = self.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        return list(self.execute(sql, params).fetchall())

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """No other thread's query runs until the block ends (a read and what follows it)."""
        with self._lock:
            yield

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """A write transaction; nested uses join the outer one. The connection is this
        thread's until it ends."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self._execute("BEGIN IMMEDIATE", ())
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._execute("ROLLBACK", ())
                raise
            else:
                self._execute("COMMIT", ())
            finally:
                self._depth = 0


class SqliteDatabase(Database):
    """SQLite in WAL mode with foreign keys, at ``path``, its schema brought to the last of
    ``migrations``."""

    def __init__(self, path: Path, migrations: list[Migration] = MIGRATIONS) -> None:
        super().__init__()
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self.transaction():
            migrate(self, migrations)

    def close(self) -> None:
        self._conn.close()

    def _execute(self, sql: str, params: tuple[Any, ...]) -> Cursor:
        return self._conn.execute(sql, params)


class Unavailable(Database):
    """An engine not connected yet (a cluster member until it reaches its cluster): every
    statement fails with ``why``."""

    def __init__(self, why: str) -> None:
        super().__init__()
        self.why = why

    def close(self) -> None:
        pass

    def _execute(self, sql: str, params: tuple[Any, ...]) -> Cursor:
        raise sqlite3.OperationalError(self.why)


class ServerDatabase(Database):
    """The daemon's database: its engine (SQLite standalone, cowsql once clustered) can be
    replaced while the daemon runs, between transactions, so every service built on this one
    object follows. ``local`` is the member's own database when clustered (its addresses and
    raft nodes: what is not the cluster's); None standalone, where one database holds both."""

    def __init__(self, engine: Database, local: Database | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.local = local

    def replace_engine(self, engine: Database, local: Database | None) -> Database:
        """Switch to ``engine`` (and ``local``); returns the engine replaced, still open."""
        with self._lock:
            if self._depth:
                raise RuntimeError("the database engine cannot change inside a transaction")
            old, self.engine, self.local = self.engine, engine, local
            return old

    @property
    def member_local(self) -> Database:
        """Where the member's own settings live: ``local`` when clustered, else the one
        database."""
        return self.local if self.local is not None else self.engine

    def close(self) -> None:
        self.engine.close()
        if self.local is not None:
            self.local.close()

    def _execute(self, sql: str, params: tuple[Any, ...]) -> Cursor:
        return self.engine._execute(sql, params)

    def interrupt(self) -> None:
        self.engine.interrupt()

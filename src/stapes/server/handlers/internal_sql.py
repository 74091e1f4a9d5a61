"""POST /internal/sql: ``incus admin sql global|local QUERY`` answered on the daemon's database
(stapesd has one SQLite database: both names reach it), for root on the unix socket only. Each
statement of the query gets a result: a select's columns and rows, or the rows another
statement changed; a statement SQLite refuses is a 400 with its error, as Incus answers."""

from __future__ import annotations

import sqlite3
from typing import Any

from aiohttp import web

from stapes.api.base import WireModel
from stapes.api.errors import BadRequest, Forbidden
from stapes.db.connection import Database
from stapes.server.auth import identify
from stapes.server.endpoint import Action, Endpoint, body_as, state
from stapes.server.response import Result, Sync


class SqlPost(WireModel):
    database: str = "global"
    query: str = ""


def statements(query: str) -> list[str]:
    """The query's statements, split where SQLite says a statement is complete."""
    found, current = [], ""
    for piece in query.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \t\r\n;"):
                found.append(current.strip())
            current = ""
    if current.strip(" \t\r\n;"):
        found.append(current.strip())
    return found


def _run(db: Database, statement: str) -> dict[str, Any]:
    cursor = db.execute(statement)
    if cursor.description is not None:
        return {
            "columns": [c[0] for c in cursor.description],
            "rows": [list(r) for r in cursor.fetchall()],
            "rows_affected": 0,
            "type": "select",
        }
    return {"columns": None, "rows": None, "rows_affected": cursor.rowcount, "type": "exec"}


async def post_sql(request: web.Request) -> Result:
    if identify(request).method != "unix":
        raise Forbidden("SQL queries are for the local root user (the unix socket) only")
    req = await body_as(request, SqlPost)
    if req.database not in ("global", "local"):
        raise BadRequest(f"Invalid database {req.database!r}: use global or local")
    parts = statements(req.query)
    if not parts:
        raise BadRequest("No query provided")
    db = state(request).db
    try:
        with db.transaction():
            results = [_run(db, statement) for statement in parts]
    except sqlite3.Error as exc:
        raise BadRequest(f"Failed to exec query: {exc}") from None
    return Sync({"Results": results})


ENDPOINTS = [Endpoint("/internal/sql", post=Action(post_sql))]

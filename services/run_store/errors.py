"""What a driver or OS failure of the SQL store becomes: a `RunStoreError` safe to log and show.

Contract: `DRIVER_ERRORS` are the exceptions a database call may raise when the database
cannot be used: SQLAlchemy's (which wrap the drivers'), the drivers' own where the store calls
a driver connection directly (`sqlite3.Error`; asyncpg's `PostgresError`, `InterfaceError`,
`InternalClientError`) and `OSError` (disk full, connection refused or reset, time-outs).
`store_error(op, where, exc, secrets)` turns one into
`RunStoreError("run store: <op> failed (<where>): <Type>: <first line of the message>")`, of
the driver's own exception where SQLAlchemy wraps or adapts it: no SQL text, no parameters
(event payloads), at most 300 characters of detail, and every secret given (the database
password, plain and URL-quoted) replaced by `***`.
`where` names the database without credentials.
`connection_lost(exc)`: the error says the connection cannot serve another call (it was closed
or reset, the server shut it down or terminated it, or the driver lost track of its protocol
state), so a new connection may succeed where it failed — looked for along the chain of causes
(SQLAlchemy wraps and adapts the driver's errors). A server's error about the SQL itself, or a
cancelled statement, is not one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from asyncpg import InterfaceError, InternalClientError, PostgresError
from asyncpg.exceptions import (
    AdminShutdownError,
    CannotConnectNowError,
    CrashShutdownError,
    PostgresConnectionError,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from engine.run_store import RunStoreError

DRIVER_ERRORS: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    OSError,
    sqlite3.Error,
    PostgresError,
    InterfaceError,
    InternalClientError,
)
_MAX_DETAIL = 300
_LOST: tuple[type[BaseException], ...] = (
    OSError,
    InterfaceError,
    InternalClientError,
    PostgresConnectionError,
    AdminShutdownError,
    CrashShutdownError,
    CannotConnectNowError,
)


def connection_lost(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, _LOST):
            return True
        cause = cause.orig if isinstance(cause, DBAPIError) and cause.orig is not None else cause.__cause__
    return False


def store_error(op: str, where: str, exc: BaseException, secrets: Iterable[str]) -> RunStoreError:
    cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    while cause.__cause__ is not None:  # an adapted driver error: name the driver's own
        cause = cause.__cause__
    lines = str(cause).strip().splitlines()
    detail = f"{type(cause).__name__}: {lines[0] if lines else 'no message'}"
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, "***")
    if len(detail) > _MAX_DETAIL:
        detail = detail[: _MAX_DETAIL - 1] + "…"
    return RunStoreError(f"run store: {op} failed ({where}): {detail}")

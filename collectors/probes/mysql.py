"""`kind: mysql` (MariaDB or MySQL): log in with aiomysql, run the query under the session's statement
time limit, read the server's version, connections and, on a replica, whether both replication
threads run and how far behind it is.

aiomysql goes on without TLS when the server does not offer it; `TlsRequired` refuses to, before
the login is sent. The connection is built here rather than by `aiomysql.connect`, so that the
probe holds it and closes it even when cancelled halfway through the login.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import replace

import aiomysql
from pymysql.constants.CLIENT import PROTOCOL_41, SECURE_CONNECTION, SSL
from pymysql.err import MySQLError

from agent.collector import Emitter
from agent.reasons import describe
from collectors.probes import database
from collectors.probes.config import MysqlConfig
from collectors.probes.database import PRIMARY, REPLICA, Kept, ServerState
from collectors.probes.phases import Phases, ProbeFailed
from collectors.probes.tls import Handshake
from collectors.probes.tls import connect as tls_connect

ACCESS_DENIED, DATABASE_DENIED, UNKNOWN_DATABASE = 1045, 1044, 1049
CANNOT_CONNECT = 2003
STATEMENT_TIMEOUT = frozenset({1969, 3024})  # MariaDB's max_statement_time, MySQL's max_execution_time
PARSE_ERROR = 1064
STATE = "SELECT VERSION() AS version, @@max_connections AS max_connections"
CONNECTIONS = "SHOW GLOBAL STATUS LIKE 'Threads_connected'"
# MariaDB 10.5 and MySQL 8.0.22 renamed SLAVE to REPLICA; MySQL 8.4 knows only the new words
REPLICA_STATUS = ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS")
# capabilities, the largest packet, utf8mb4, 23 bytes reserved: what a client sends before TLS
SSL_PACKET = struct.pack("<IIB23s", SSL | PROTOCOL_41 | SECURE_CONNECTION, 1 << 24, 45, b"")


class TlsNotOffered(Exception):
    """The server does not offer TLS, which was asked for."""


class TlsRequired(aiomysql.Connection):
    """A connection that never logs in unencrypted when it was given a TLS context."""

    async def _request_authentication(self) -> None:
        if self._ssl_context and not self.server_capabilities & SSL:
            raise TlsNotOffered
        await super()._request_authentication()


async def probe(config: MysqlConfig, out: Emitter, phases: Phases, kept: Kept) -> None:
    with database.Stages(phases) as stages:
        stages.begin("resolve")
        address = await database.resolve(config.host, config.port)
        tls = kept.tls_context(config, stages)
        handshake = tls_connect(address, config.port, config.server_name or config.host, ssl_request)
        connection = TlsRequired(host=address, port=config.port, user=config.user,
                                 password=config.password.get_secret_value(), db=config.database, ssl=tls,
                                 autocommit=True, program_name="vigil")
        try:
            stages.begin("connect")
            await _log_in(config, connection, out, handshake)
            database.report_tls(out, tls)
            stages.begin("query")
            state = await _read(config, connection)
            await connection.ensure_closed()
        finally:
            connection.close()  # nothing left open, whatever happened (a no-op once closed)
    await database.check_oldest(out, tls, kept, handshake)
    database.emit(out, state)


async def ssl_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The protocol's STARTTLS, for collectors/probes/tls.py's second looks (the chain of a refused
    certificate, the oldest version accepted): the server's greeting read, an SSL request packet sent."""
    header = await reader.readexactly(4)
    await reader.readexactly(int.from_bytes(header[:3], "little"))
    writer.write(len(SSL_PACKET).to_bytes(3, "little") + b"\x01" + SSL_PACKET)  # the packet numbered 1


async def _log_in(config: MysqlConfig, connection: TlsRequired, out: Emitter, handshake: Handshake) -> None:
    try:
        await connection._connect()  # aiomysql.connect's own step, on a connection the probe holds
    except TlsNotOffered:
        raise ProbeFailed(database.not_offering_tls(config)) from None
    except MySQLError as exc:
        code = exc.args[0] if exc.args else None
        if code == ACCESS_DENIED:
            raise ProbeFailed(database.login_refused(config)) from None
        if code in (UNKNOWN_DATABASE, DATABASE_DENIED):
            raise ProbeFailed(f"the server has no database {config.database} that user {config.user} may use: "
                              "check database (and the user's grants)") from None
        if code == CANNOT_CONNECT:  # aiomysql's wrapper of the socket's or TLS's error
            raise await database.connection_failure(exc, config, out, handshake) from None
        raise ProbeFailed(f"the server refused the login for user {config.user}: {_words(exc)}") from None


async def _read(config: MysqlConfig, connection: TlsRequired) -> ServerState:
    limit = (f"SET SESSION max_statement_time = {config.statement_timeout:g}"
             if "mariadb" in connection.get_server_info().lower()
             else f"SET SESSION max_execution_time = {round(config.statement_timeout * 1000)}")
    try:
        async with connection.cursor(aiomysql.DictCursor) as cursor:
            await cursor.execute(limit)
            await cursor.execute(config.query)
            await cursor.execute(STATE)
            row = await cursor.fetchone()
            await cursor.execute(CONNECTIONS)
            connections = int((await cursor.fetchone())["Value"])
            replication = await _replica_status(cursor)
    except MySQLError as exc:
        if exc.args and exc.args[0] in STATEMENT_TIMEOUT:
            raise ProbeFailed(database.too_slow(config)) from None
        raise ProbeFailed(f"the query failed: {_words(exc)}") from None
    state = ServerState(row["version"].removesuffix("-log"), PRIMARY, connections, int(row["max_connections"]))
    if replication is None:
        return state
    receiving = replication.get("Slave_IO_Running") or replication.get("Replica_IO_Running")
    applying = replication.get("Slave_SQL_Running") or replication.get("Replica_SQL_Running")
    if (receiving, applying) != ("Yes", "Yes"):
        error = replication.get("Last_IO_Error") or replication.get("Last_SQL_Error")
        return replace(state, role=REPLICA, stopped=f"replication is stopped on the replica (receiving: {receiving}, "
                                                    f"applying: {applying})" + (f": {error}" if error else ""))
    lag = replication.get("Seconds_Behind_Master", replication.get("Seconds_Behind_Source"))
    return replace(state, role=REPLICA, lag=None if lag is None else float(lag))


async def _replica_status(cursor) -> dict | None:
    """The replica's status row, None on a server that replicates from none."""
    for statement in REPLICA_STATUS:
        try:
            await cursor.execute(statement)
        except MySQLError as exc:
            if exc.args and exc.args[0] == PARSE_ERROR and statement != REPLICA_STATUS[-1]:
                continue  # an older server: the older words
            raise
        return await cursor.fetchone()
    return None


def _words(exc: MySQLError) -> str:
    """The server's message without its number (pymysql's args are (code, message))."""
    return str(exc.args[1]) if len(exc.args) > 1 else describe(exc)

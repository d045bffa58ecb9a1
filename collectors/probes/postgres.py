"""`kind: postgres`: log in with asyncpg, run the query under the session's statement_timeout, read the
server's version, role, connections and, on a replica, whether it streams and how far behind it is.

One connection per probe, closed before it returns; the statement_timeout is sent with the login
(a startup parameter), so the server itself ends a query that runs too long.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import replace

import asyncpg

from agent.collector import Emitter
from collectors.probes.config import PostgresConfig
from collectors.probes.database import (
    PRIMARY,
    REPLICA,
    Kept,
    ServerState,
    Stages,
    WatchedContext,
    check_oldest,
    connection_failure,
    emit,
    login_refused,
    not_offering_tls,
    report_tls,
    resolve,
    too_slow,
)
from collectors.probes.phases import Phases, ProbeFailed
from collectors.probes.tls import Handshake
from collectors.probes.tls import connect as tls_connect

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
STATE = """
SELECT current_setting('server_version') AS version, pg_is_in_recovery() AS replica,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS connections,
       current_setting('max_connections')::int AS max_connections
"""
# the receiver's row (shown once it is connected) has its pid for anyone, its other columns for
# pg_read_all_stats only; a replica that has applied all it received is not behind, however old its last
# transaction
REPLICATION = """
SELECT (SELECT pid FROM pg_stat_wal_receiver) AS receiver,
       CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END AS lag
"""


async def probe(config: PostgresConfig, out: Emitter, phases: Phases, kept: Kept) -> None:
    with Stages(phases) as stages:
        stages.begin("resolve")
        address = await resolve(config.host, config.port)
        tls = kept.tls_context(config, stages)
        handshake = tls_connect(address, config.port, config.server_name or config.host, ssl_request)
        stages.begin("connect")
        connection = await _connect(config, address, tls, out, handshake)
        try:
            report_tls(out, tls)
            stages.begin("query")
            state = await _read(config, connection)
            await connection.close()
        finally:
            connection.terminate()  # nothing left open, whatever happened (a no-op after close)
    await check_oldest(out, tls, kept, handshake)
    emit(out, state)


async def ssl_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """PostgreSQL's own STARTTLS, for collectors/probes/tls.py's second looks (the chain of a refused
    certificate, the oldest version accepted): an SSLRequest, answered S."""
    writer.write(SSL_REQUEST)
    if await reader.readexactly(1) != b"S":
        raise ConnectionError("the server does not offer TLS")


async def _connect(config: PostgresConfig, address: str, tls: WatchedContext | None, out: Emitter,
                   handshake: Handshake) -> asyncpg.Connection:
    # every setting given, so that no PG* variable or ~/.pgpass of the agent's environment changes the probe
    try:
        return await asyncpg.connect(
            host=address, port=config.port, user=config.user, password=config.password.get_secret_value(),
            database=config.database, ssl=tls or False, target_session_attrs="any", statement_cache_size=0,
            server_settings={"statement_timeout": f"{round(config.statement_timeout * 1000)}",
                             "application_name": "vigil"})
    except asyncpg.InvalidPasswordError:
        raise ProbeFailed(login_refused(config)) from None
    except asyncpg.InvalidAuthorizationSpecificationError as exc:  # pg_hba.conf has no line for this login
        raise ProbeFailed(f"the server refused the login for user {config.user} from this host ({exc}): add a "
                          "line for it to pg_hba.conf") from None
    except asyncpg.InvalidCatalogNameError:
        raise ProbeFailed(f"the server has no database {config.database}: check database") from None
    except asyncpg.PostgresError as exc:
        raise ProbeFailed(f"the server refused the login for user {config.user}: {exc}") from None
    except OSError as exc:
        if "rejected SSL upgrade" in str(exc):  # the server answered N to the SSLRequest
            raise ProbeFailed(not_offering_tls(config)) from None
        raise await connection_failure(exc, config, out, handshake) from None


async def _read(config: PostgresConfig, connection: asyncpg.Connection) -> ServerState:
    try:
        await connection.execute(config.query)
        row = await connection.fetchrow(STATE)
        replication = await connection.fetchrow(REPLICATION) if row["replica"] else None
    except asyncpg.QueryCanceledError:
        raise ProbeFailed(too_slow(config)) from None
    except asyncpg.PostgresError as exc:
        raise ProbeFailed(f"the query failed: {exc}") from None
    state = ServerState(row["version"], PRIMARY, row["connections"], row["max_connections"])
    if replication is None:
        return state
    if replication["receiver"] is None:
        return replace(state, role=REPLICA, stopped="replication is stopped on the replica: no WAL receiver "
                                                    "streams from the primary (check primary_conninfo and the "
                                                    "replica's log)")
    return replace(state, role=REPLICA, lag=replication["lag"])

"""The probe kinds on one base: run the probe under a deadline, time its phases, judge it.

A probe that finds the service down is a good run (`vigil_up 1`): the agent worked, and
`vigil_probe_success 0` says what it found, with the reason as the job's verdict (the status
page's Services board, `vigil once`); the store keeps every change of it. Only a fault of
vigil's own (a bug, a secret it cannot read) fails the run: then vigil could not tell.
The probe's own deadline ends a little before the job's timeout, so a silent service is a
finding ("no answer within 4.5s, during tls"), never a job that timed out.
"""

from __future__ import annotations

import asyncio
import importlib
import ssl
from collections.abc import Mapping
from typing import ClassVar, TypeVar

from agent.collector import Collector, Emitter
from agent.model import Verdict
from agent.reasons import describe
from agent.schema import TargetConfig
from collectors.probes import icmp, metrics, starttls, tcp, tls
from collectors.probes.address import Address, addresses
from collectors.probes.config import (
    DatabaseConfig,
    DnsConfig,
    HttpConfig,
    IcmpConfig,
    MysqlConfig,
    PostgresConfig,
    TcpConfig,
)
from collectors.probes.database import Kept
from collectors.probes.http import HttpCheck
from collectors.probes.metrics import DURATION, HTTP_CONDITIONS, HTTP_METRICS, MYSQL_METRICS, POSTGRES_METRICS, SUCCESS
from collectors.probes.phases import Phases, ProbeFailed

UP, DOWN = "ok", "down"
MARGIN = 0.1  # of the job's timeout, at most MAX_MARGIN seconds: left to report a probe that ran out of time
MAX_MARGIN = 1.0

C = TypeVar("C", bound=TargetConfig)
D = TypeVar("D", bound=DatabaseConfig)


class Probe(Collector[C]):
    """A probe kind: subclasses write `probe()`, which times its phases and raises ProbeFailed."""

    BOARD: ClassVar[str] = "Services"
    SHARED_PAGE: ClassVar[bool] = True  # README.md: a section per kind, with its own blocks, however many there are

    async def probe(self, out: Emitter, phases: Phases) -> None:
        raise NotImplementedError

    def notes(self) -> Mapping[str, str]:
        """Findings for the verdict that do not fail the probe (TLS 1.0 still offered)."""
        return {}

    def deadline(self) -> float:
        return self.ctx.timeout - min(MAX_MARGIN, MARGIN * self.ctx.timeout)

    async def collect(self, out: Emitter, due: frozenset[str]) -> None:
        phases = Phases(self.ctx.clock.monotonic)
        deadline = self.deadline()
        try:
            async with asyncio.timeout(deadline):
                await self.probe(out, phases)
        except ProbeFailed as failure:
            reason = str(failure)
        except TimeoutError:
            during = f", during {phases.current}" if phases.current else ""
            reason = f"no answer within {deadline:g}s{during}"
        else:
            reason = ""
        phases.seconds["total"] = phases.total()
        for phase, seconds in phases.seconds.items():
            out.gauge(DURATION, seconds, phase=phase)
        out.gauge(SUCCESS, 0 if reason else 1)
        out.judge(Verdict(DOWN if reason else UP, reason, notes=self.notes()))


# --- http ---

class HttpProbe(Probe[HttpConfig]):
    """`kind: http`: one request, its answer judged (collectors/probes/http.py)."""

    Config = HttpConfig
    METRICS = HTTP_METRICS
    CONDITIONS = HTTP_CONDITIONS

    def open(self) -> None:
        self._check = HttpCheck(self.config, self.ctx.clock.monotonic)

    async def probe(self, out: Emitter, phases: Phases) -> None:
        await self._check.run(out, phases)

    def notes(self) -> Mapping[str, str]:
        return self._check.notes()


# --- tcp, dns, icmp: the network probes ---------------------------------------------------------
# dns imports its protocol module when it probes: dnspython (13 MB, 80 ms) only where a dns target is.

PLAIN_TEXT = "WRONG_VERSION_NUMBER"  # OpenSSL's words for an answer in plain text


async def resolved(host: str, phases: Phases) -> list[Address]:
    """The host's addresses, in the phase `resolve`."""
    with phases.phase("resolve"):
        return await addresses(host)


class TcpProbe(Probe[TcpConfig]):
    """`kind: tcp`: a connection, TLS if asked (at once or after STARTTLS), then the lines to send and expect."""

    Config = TcpConfig
    METRICS = metrics.TCP_METRICS
    CONDITIONS = metrics.TCP_CONDITIONS

    def open(self) -> None:
        config = self.config
        self._preamble = starttls.PREAMBLES[config.starttls] if config.starttls else None
        self._context = tls.client_context(config) if config.tls or config.starttls else None
        self._oldest = tls.OldestVersion(self.ctx.clock.monotonic)

    def notes(self) -> Mapping[str, str]:
        return self._oldest.notes()

    async def probe(self, out: Emitter, phases: Phases) -> None:
        host, port = self.config.host, self.config.port
        found = await resolved(host, phases)
        with phases.phase("connect"):
            reader, writer = await tcp.connect(host, found, port)
        try:
            if self._context is not None:
                await self._tls(out, phases, reader, writer)
            with phases.phase("exchange"):
                await tcp.converse(reader, writer, self.config.exchange, f"{host}:{port}")
        finally:
            writer.transport.abort()  # no socket outlives the probe, and no close_notify to wait for
        if self._context is not None:
            await self._oldest.check(out, self._handshake())

    async def _tls(self, out: Emitter, phases: Phases, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        """STARTTLS if asked, then the handshake, verified; the served chain reported, or why it was refused."""
        where = f"{self.config.host}:{self.config.port}"
        if self._preamble is not None:
            try:
                with phases.phase("starttls"):
                    await self._preamble(reader, writer)
            except ProbeFailed as failure:
                raise ProbeFailed(f"{where}: {failure}") from None
            except (OSError, asyncio.IncompleteReadError) as error:
                raise ProbeFailed(f"{where} broke off STARTTLS ({describe(error)})") from None
            except ValueError:  # StreamReader.readline: a line over its limit
                raise ProbeFailed(f"{where} sent a line longer than {tcp.LINE_LIMIT} bytes before STARTTLS") from None
        try:
            with phases.phase("tls"):
                await writer.start_tls(self._context, server_hostname=self.config.server_name or self.config.host)
        except ssl.SSLCertVerificationError as error:
            handshake = self._handshake()
            refusal = await tls.refused(out, error, handshake)
            await self._oldest.check(out, handshake)
            raise refusal from None
        except ssl.SSLError as error:
            plain = "; it does not speak TLS at once (starttls: then?)" if error.reason == PLAIN_TEXT else ""
            raise ProbeFailed(f"the TLS handshake with {where} failed ({error.reason or error}){plain}") from None
        except OSError as error:
            raise ProbeFailed(f"{where} broke off the TLS handshake ({describe(error)})") from None
        tls.report(out, writer.get_extra_info("ssl_object"))

    def _handshake(self) -> tls.Handshake:
        return tls.connect(self.config.host, self.config.port, self.config.server_name, self._preamble)


class DnsProbe(Probe[DnsConfig]):
    """`kind: dns`: a question to a name server, its response code and answers against the expected."""

    Config = DnsConfig
    METRICS = metrics.DNS_METRICS
    CONDITIONS = metrics.DNS_CONDITIONS

    async def probe(self, out: Emitter, phases: Phases) -> None:
        from collectors.probes import dns

        config = self.config
        (_, server), *_ = await resolved(config.server, phases)
        with phases.phase("query"):
            answer = await dns.ask(server, config.port, config.query_name, config.query_type)
        out.gauge(metrics.DNS_RCODE, answer.code)
        out.gauge(metrics.DNS_ANSWERS, len(answer.records))
        out.gauge(metrics.DNS_CHECKSUM, answer.checksum())
        dns.expect(answer, config)


class IcmpProbe(Probe[IcmpConfig]):
    """`kind: icmp`: a few echo requests, their losses and round trips."""

    Config = IcmpConfig
    METRICS = metrics.ICMP_METRICS
    CONDITIONS = metrics.ICMP_CONDITIONS

    async def probe(self, out: Emitter, phases: Phases) -> None:
        config = self.config
        (family, address), *_ = await resolved(config.host, phases)
        with phases.phase("ping"):
            trips = await icmp.ping(family, address, config.count, config.spacing, config.wait,
                                    self.ctx.clock.monotonic)
        out.gauge(metrics.ICMP_LOSS, 1 - len(trips) / config.count)
        if trips:
            out.gauge(metrics.ICMP_RTT_MIN, min(trips))
            out.gauge(metrics.ICMP_RTT_AVG, sum(trips) / len(trips))
            out.gauge(metrics.ICMP_RTT_MAX, max(trips))
        else:
            raise ProbeFailed(f"no reply to {config.count} pings from {config.host}")


# --- the database kinds (postgres, mysql): each driver's module imported only when its kind is used

class DatabaseProbe(Probe[D]):
    """A login, a query under a statement timeout, the server's role, lag and connections, through the
    protocol module PROTOCOL (asyncpg, aiomysql); what a target keeps between its runs (its TLS context, the
    oldest TLS version the server accepts) is `kept`."""

    PROTOCOL: ClassVar[str]

    def __init__(self, config: D, ctx) -> None:
        super().__init__(config, ctx)
        self.kept = Kept(ctx.clock.monotonic)

    def notes(self) -> Mapping[str, str]:
        return self.kept.oldest.notes()

    async def probe(self, out: Emitter, phases: Phases) -> None:
        await importlib.import_module(self.PROTOCOL).probe(self.config, out, phases, self.kept)


class PostgresProbe(DatabaseProbe[PostgresConfig]):
    """`kind: postgres`."""

    Config = PostgresConfig
    METRICS = POSTGRES_METRICS
    CONDITIONS = metrics.DATABASE_CONDITIONS
    PROTOCOL = "collectors.probes.postgres"


class MysqlProbe(DatabaseProbe[MysqlConfig]):
    """`kind: mysql` (MariaDB or MySQL)."""

    Config = MysqlConfig
    METRICS = MYSQL_METRICS
    CONDITIONS = metrics.DATABASE_CONDITIONS
    PROTOCOL = "collectors.probes.mysql"

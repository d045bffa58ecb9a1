"""`kind: m365`: the collector contract over the token source, Graph and the readers.

The main signal is the token: without one nothing can be read and the run fails. Each
reader is a signal of its own, read concurrently: a missing permission (403) fails only
its signal, sets `vigil_m365_permission_missing` and logs one line when it starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from agent.collector import MAIN, Collector, Emitter, Signal
from agent.net.http import AsyncApi, HttpError
from collectors.m365 import metrics as m
from collectors.m365.auth import TokenSource
from collectors.m365.config import M365Config
from collectors.m365.graph import Graph, PermissionMissing
from collectors.m365.readers import SOURCES

log = logging.getLogger(__name__)

CALL_SHARE = 0.8  # of the job's timeout, for each call to the authority or Graph


class M365Collector(Collector[M365Config]):
    Config = M365Config
    METRICS = m.METRICS
    CONDITIONS = m.CONDITIONS
    SIGNALS: Mapping[str, Signal] = {
        MAIN: Signal(help="an access token from the authority"),
        **{name: Signal(source.every, f"{source.endpoint} ({source.permission})") for name, source in SOURCES.items()},
    }
    CONCURRENCY = 8

    def __init__(self, config: M365Config, ctx):
        super().__init__(config, ctx)
        self._denied: dict[str, bool] = {}  # signal -> refused for want of its permission, when last read
        self._tokens: TokenSource | None = None
        self._api: AsyncApi | None = None
        self._graph: Graph | None = None

    def signals(self) -> Mapping[str, Signal]:
        chosen = {MAIN: self.SIGNALS[MAIN]}
        for name, signal in self.SIGNALS.items():
            if name == MAIN or name in self.config.skip or (name == "usage_reports" and not self.config.usage_reports):
                continue
            every = getattr(self.config.intervals, name)
            chosen[name] = Signal(signal.every if every is None else every, signal.help)
        return chosen

    async def open(self) -> None:
        # within the job's timeout (defaults applied): a silent authority or Graph fails the run with
        # its own reason ("did not answer within"), not the run's bare "timed out"
        timeout = CALL_SHARE * self.ctx.timeout
        graph_url = str(self.config.graph_url)
        self._api = AsyncApi(graph_url, self.ctx, ca_file=self.config.ca_file, timeout=timeout)
        self._tokens = TokenSource(self.config, self._api, timeout)  # the authority is asked through it too
        bucket = self.ctx.rate_limits.bucket(f"graph:{self.config.tenant_id}:{self.config.client_id}",
                                             self.config.requests_per_second)
        self._graph = Graph(self._api, self._tokens, bucket, graph_url)
        await self._tokens.open()

    async def collect(self, out: Emitter, due: frozenset[str]) -> None:
        assert self._tokens is not None, "open() first"  # noqa: S101 — narrows a type; an internal invariant, not input checking
        await self._tokens.token()
        readers = [name for name in self.signals() if name != MAIN and name in due]
        unanswered: dict[str, HttpError] = {}
        await asyncio.gather(*(self._read(out, name, unanswered) for name in readers))
        if readers and len(unanswered) == len(readers):  # Graph itself is down (a cached token hid it)
            raise unanswered[readers[0]]
        for name, denied in self._denied.items():
            out.gauge(m.PERMISSION_MISSING, int(denied), signal=name, permission=SOURCES[name].permission)

    async def _read(self, out: Emitter, name: str, unanswered: dict[str, HttpError]) -> None:
        """One reader as its own signal; one that got no answer at all is noted in `unanswered`."""
        assert self._graph is not None  # noqa: S101 — narrows a type; an internal invariant, not input checking
        source = SOURCES[name]
        with out.signal(name):
            try:
                await source.read(self._graph, out, self.config, self.ctx.clock.time())
            except HttpError as exc:
                if exc.status is None:
                    unanswered[name] = exc
                raise
            except PermissionMissing as exc:
                if not self._denied.get(name):
                    log.warning("m365 permission missing target=%s signal=%s permission=%s endpoint=%s: grant the "
                                "application permission %s to app %s and give admin consent", self.ctx.target,
                                name, source.permission, source.endpoint, source.permission, self.config.client_id)
                self._denied[name] = True
                raise PermissionMissing(f"{exc}: grant the application permission {source.permission}") from None
            self._denied[name] = False

    async def close(self) -> None:
        if self._api is not None:
            await self._api.aclose()

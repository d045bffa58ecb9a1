"""`vigil run`: wires config, scheduler, store and web endpoint, and lives under systemd.

READY=1 once the first config is loaded and the endpoint listens; SIGHUP reloads
(an invalid new config is logged and the running one kept, and READY=1 follows
RELOADING=1 whatever happens); the watchdog is pinged from the event loop. A reload
reads the config and every file it names in a thread of its own, with a deadline, so
a file that never answers holds that thread, never collection or SIGTERM.

SIGTERM stops in an order that protects the history: the jobs stop first, then the
store drains its writes and closes the database, and only then are child tools still
running killed, so a run they end early can no longer write anything.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import threading
import time
from pathlib import Path

from agent import children, systemd
from agent.clock import Clock
from agent.collector import Context
from agent.config import DEFAULT_PATH, AgentConfig, ConfigError, ConfigIssue, LoadedConfig, load_config
from agent.jobs import all_jobs
from agent.metrics import CERT_EXPIRY, RELOAD_OK, RELOAD_TIME
from agent.net.certificate import certificate_expiry
from agent.ratelimit import RateLimits
from agent.reasons import describe
from agent.scheduler import Scheduler
from agent.statedb import StateDB
from agent.store import Store
from agent.units import format_duration, iso_time
from exporters.web import HEARTBEAT, Site, WebServer
from exporters.webconfig import WebConfig, load_web_config

log = logging.getLogger(__name__)

STOP_TIMEOUT = 5.0  # seconds for jobs to wind down, well inside the unit's TimeoutStopSec
RELOAD_TIMEOUT = 10.0  # seconds to read the config and the files it names
MAX_STUCK_READS = 3  # reloads left waiting for a file that never answered; beyond, a reload is refused


class Agent:
    def __init__(self, config_path: Path | None, loaded: LoadedConfig):
        """Load what can fail before serving: web config, state database, the socket."""
        self._config_path = config_path
        self._loaded = loaded
        config = loaded.config
        web = load_web_config(config.web_config)
        self.store = Store(StateDB(config.state_dir))
        started = iso_time(time.time())
        self.site = Site(self.store, {"config": loaded.source, "started": started, "listen": config.listen})
        self.server = WebServer(config.listen, self.site, web)
        self._loaded_ok(web)
        self.clock = Clock()
        self.context = Context(self.clock, RateLimits(self.clock), config.state_dir, self.store.db)
        self._stop = asyncio.Event()
        self._reloading: asyncio.Task | None = None
        self._reload_again = False
        self._stuck: set[threading.Thread] = set()  # reload threads still waiting for a file

    async def run(self) -> None:
        config = self._loaded.config
        scheduler = Scheduler(self.store, self.context, workers=config.workers,
                              backup_workers=config.backup_workers)
        scheduler.apply(all_jobs(config))
        self.server.start()
        self.site.ready.set()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload, scheduler)
        _log_warnings(self._loaded)
        log.info("serving url=%s config=%s %s", self.server.url, self._loaded.source, _counts(config))
        held = " and ".join(f"{len(entries)} {what}s" for _, what, entries in config.lists())
        systemd.notify(f"READY=1\nSTATUS=serving {self.server.url} with {held}")
        pulses = [asyncio.create_task(self._heartbeat())]
        if (interval := systemd.watchdog_interval()) is not None:
            pulses.append(asyncio.create_task(systemd.watchdog(interval)))
        await self._stop.wait()

        log.info("stopping")
        stopping_since = time.monotonic()
        systemd.notify("STOPPING=1")
        for pulse in pulses:
            pulse.cancel()
        if self._reloading is not None:
            self._reloading.cancel()
        try:
            await asyncio.wait_for(scheduler.stop(STOP_TIMEOUT), STOP_TIMEOUT + 1)
        except TimeoutError:
            log.warning("jobs did not stop within %ss; leaving them", STOP_TIMEOUT)
        finally:
            if scheduler.threads:
                log.warning("leaving %d blocking call(s) that did not finish", len(scheduler.threads))
            self.server.stop()
            self.store.close()
            children.stop_all()
            log.info("stopped after %s", format_duration(time.monotonic() - stopping_since))

    async def _heartbeat(self) -> None:
        """The event loop's pulse for /-/healthy, which the web thread answers even when the loop is stuck."""
        while True:
            self.site.beat()
            await asyncio.sleep(HEARTBEAT)

    def _reload(self, scheduler: Scheduler) -> None:
        """SIGHUP: one reload at a time; a SIGHUP during one asks for another after it (the file may have
        changed since it was read)."""
        if self._reloading is not None and not self._reloading.done():
            self._reload_again = True
            return
        self._reloading = asyncio.create_task(self._reload_now(scheduler))

    async def _reload_now(self, scheduler: Scheduler) -> None:
        while True:
            self._reload_again = False
            systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
            try:
                self._apply_new_config(scheduler, *await self._read_config())
            except ConfigError as exc:
                self._reload_failed("; ".join(map(str, exc.issues)))
                log.error("reload rejected, keeping the running config: %s", self.site.info["reload_error"])
            except Exception as exc:  # a bug must not leave systemd's unit "reloading" nor kill the agent
                self._reload_failed(describe(exc))
                log.exception("reload failed part-way; the jobs or web config may be the old ones")
            systemd.notify("READY=1")  # not when cancelled: the agent is stopping
            if not self._reload_again:
                return

    async def _read_config(self) -> tuple[LoadedConfig, WebConfig]:
        """The config and its web config, read in a thread of their own: a file that never answers (a hung
        mount) holds that thread, never the event loop, and the reload gives up after RELOAD_TIMEOUT."""
        where = str(self._config_path or DEFAULT_PATH)
        self._stuck = {thread for thread in self._stuck if thread.is_alive()}
        if len(self._stuck) >= MAX_STUCK_READS:
            raise ConfigError([ConfigIssue(where, None, "", f"{len(self._stuck)} earlier reloads still wait for a "
                                           "file that does not answer; restart vigil once it answers")])
        read: concurrent.futures.Future = concurrent.futures.Future()

        def work() -> None:
            if read.set_running_or_notify_cancel():
                try:
                    loaded = load_config(self._config_path)
                    read.set_result((loaded, load_web_config(loaded.config.web_config)))
                except BaseException as exc:  # handed to the reload, which decides
                    read.set_exception(exc)

        thread = threading.Thread(target=work, name="vigil-reload", daemon=True)
        thread.start()
        try:
            return await asyncio.wait_for(asyncio.wrap_future(read), RELOAD_TIMEOUT)
        except TimeoutError:
            self._stuck.add(thread)
            raise ConfigError([ConfigIssue(where, None, "", f"not read within {RELOAD_TIMEOUT:g}s: it or a file it "
                                           "names (a secret, the web config) does not answer (a hung mount, a FIFO?)"
                                           )]) from None

    def _apply_new_config(self, scheduler: Scheduler, loaded: LoadedConfig, web: WebConfig) -> None:
        old, new = self._loaded.config, loaded.config
        for key in ("listen", "state_dir", "workers", "backup_workers"):
            if getattr(old, key) != getattr(new, key):
                log.warning("a change of `%s` needs a restart; keeping %s", key, getattr(old, key))
        scheduler.apply(all_jobs(new))
        try:
            self.server.reconfigure(web)
        except (OSError, ConfigError) as exc:
            self._reload_failed(f"web config not applied: {exc}")
            log.error("web config not applied, keeping the current one: %s", exc)
        else:
            self._loaded_ok(web)
            self.site.info["reloaded"] = iso_time(time.time())
        self._loaded = loaded
        _log_warnings(loaded)
        log.info("reloaded config=%s %s", loaded.source, _counts(new))

    def _reload_failed(self, why: str) -> None:
        """vigil_config_reload_success 0, and the reason in /status.json, until a good reload."""
        self.site.facts[RELOAD_OK] = 0
        self.site.info["reload_error"] = why

    def _loaded_ok(self, web: WebConfig) -> None:
        """vigil_config_reload_* and the served certificate's expiry, for the alerts on them."""
        facts = self.site.facts
        facts[RELOAD_OK], facts[RELOAD_TIME] = 1, time.time()
        self.site.info.pop("reload_error", None)
        tls = web.tls_server_config
        try:
            expiry = certificate_expiry(tls.cert_file) if tls is not None else None
        except ValueError as exc:  # ssl took it, so this is rare: the metric is left out, not the agent
            log.warning("cannot read the expiry of cert_file: %s", exc)
            expiry = None
        if expiry is None:
            facts.pop(CERT_EXPIRY, None)
        else:
            facts[CERT_EXPIRY] = expiry


def _counts(config: AgentConfig) -> str:
    """`targets=3 backups=1`: what the config holds, for the log."""
    return " ".join(f"{key}={len(entries)}" for key, _, entries in config.lists())


def _log_warnings(loaded: LoadedConfig) -> None:
    for warning in loaded.warnings:
        log.warning("%s", warning.as_warning())

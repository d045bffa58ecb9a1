"""`vigil run`: wires config, scheduler, store and web endpoint, and lives under systemd.

READY=1 once the first config is loaded and the endpoint listens; SIGHUP reloads
(an invalid new config is logged and the running one kept, and READY=1 follows
RELOADING=1 whatever happens); the watchdog is pinged from the event loop.

SIGTERM stops in an order that protects the history: the jobs stop first, then the
store drains its writes and closes the database, and only then are child tools still
running killed, so a run they end early can no longer write anything.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path

from agent import children, systemd
from agent.clock import Clock
from agent.collector import Context
from agent.config import ConfigError, LoadedConfig, load_config
from agent.jobs import all_jobs
from agent.ratelimit import RateLimits
from agent.reasons import describe
from agent.scheduler import Scheduler
from agent.statedb import StateDB
from agent.store import Store
from agent.units import format_duration, iso_time
from exporters.prometheus import CERT_EXPIRY, RELOAD_OK, RELOAD_TIME
from exporters.web import Site, WebServer, certificate_expiry
from exporters.webconfig import WebConfig, load_web_config

log = logging.getLogger(__name__)

STOP_TIMEOUT = 5.0  # seconds for jobs to wind down, well inside the unit's TimeoutStopSec


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
        log.info("serving url=%s config=%s targets=%d backups=%d", self.server.url, self._loaded.source,
                 len(config.targets), len(config.backups))
        systemd.notify(f"READY=1\nSTATUS=serving {self.server.url} with {len(config.targets)} targets "
                       f"and {len(config.backups)} backup jobs")
        watchdog = None
        if (interval := systemd.watchdog_interval()) is not None:
            watchdog = asyncio.create_task(systemd.watchdog(interval))
        await self._stop.wait()

        log.info("stopping")
        stopping_since = time.monotonic()
        systemd.notify("STOPPING=1")
        if watchdog is not None:
            watchdog.cancel()
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

    def _reload(self, scheduler: Scheduler) -> None:
        systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            self._apply_new_config(scheduler)
        except ConfigError as exc:
            self._reload_failed("; ".join(map(str, exc.issues)))
            log.error("reload rejected, keeping the running config: %s", self.site.info["reload_error"])
        except Exception as exc:  # a bug must not leave systemd's unit "reloading" nor kill the agent
            self._reload_failed(describe(exc))
            log.exception("reload failed part-way; the jobs or web config may be the old ones")
        finally:
            systemd.notify("READY=1")

    def _apply_new_config(self, scheduler: Scheduler) -> None:
        loaded = load_config(self._config_path)
        web = load_web_config(loaded.config.web_config)
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
        log.info("reloaded config=%s targets=%d", loaded.source, len(new.targets))

    def _reload_failed(self, why: str) -> None:
        """vigil_config_reload_success 0, and the reason in /status.json, until a good reload."""
        self.site.facts[RELOAD_OK] = 0
        self.site.info["reload_error"] = why

    def _loaded_ok(self, web: WebConfig) -> None:
        """vigil_config_reload_* and the served certificate's expiry, for the alerts on them."""
        facts = self.site.facts
        facts[RELOAD_OK], facts[RELOAD_TIME] = 1, time.time()
        self.site.info.pop("reload_error", None)
        try:
            expiry = certificate_expiry(web)
        except ValueError as exc:  # ssl took it, so this is rare: the metric is left out, not the agent
            log.warning("cannot read the expiry of cert_file: %s", exc)
            expiry = None
        if expiry is None:
            facts.pop(CERT_EXPIRY, None)
        else:
            facts[CERT_EXPIRY] = expiry


def _log_warnings(loaded: LoadedConfig) -> None:
    for warning in loaded.warnings:
        log.warning("%s", warning.as_warning())

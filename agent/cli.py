"""The `vigil` command: run, check-config, once, report, version, docs metrics.

Errors are one clear line (or one per config problem); tracebacks only with --debug.
Exit codes: 0 fine, 1 a job failed or the agent could not start, 2 invalid config.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import threading
import time
from pathlib import Path

from agent import __version__, children, logs
from agent.clock import Clock
from agent.config import ConfigError, LoadedConfig, load_config
from agent.model import JobState, Result

log = logging.getLogger("vigil")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup(args.debug)
    try:
        code = args.command(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        count = len(exc.issues)
        print(f"vigil: the configuration has {count} problem{'s' * (count != 1)}", file=sys.stderr)
        code = EXIT_CONFIG
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # a clear line for the admin; the traceback only on request
        if args.debug:
            raise
        print(f"vigil: {exc}", file=sys.stderr)
        code = EXIT_FAILED
    return _exit(code)


def _exit(code: int) -> int:
    """Exit even when a collector thread hangs forever (threads cannot be killed)."""
    deadline = time.monotonic() + 1.0  # idle pool threads end at once after shutdown
    for thread in threading.enumerate():
        if thread.name.startswith("vigil-collect"):
            thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in threading.enumerate() if t.name.startswith("vigil-collect") and t.is_alive()]
    if stuck:
        log.warning("leaving %d collector thread(s) that did not finish", len(stuck))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _options(after_command: bool) -> argparse.ArgumentParser:
    """-c and --debug, before or after the command; after it they must not reset what came before."""
    options = argparse.ArgumentParser(add_help=False,
                                      argument_default=argparse.SUPPRESS if after_command else None)
    options.add_argument("-c", "--config", type=Path,
                         help="config file (default /etc/vigil/vigil.yaml, else the embedded default)")
    options.add_argument("--debug", action="store_true", help="verbose logs and tracebacks")
    return options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", parents=[_options(after_command=False)],
                                     description="Monitoring and backup-verification agent.")
    common = _options(after_command=True)
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[common], help="run the agent (the systemd service)")
    run.set_defaults(command=_run)
    check = commands.add_parser("check-config", parents=[common], help="validate the config; exit 2 if invalid")
    check.set_defaults(command=_check_config)
    once = commands.add_parser("once", parents=[common], help="run each job once, print the results")
    once.add_argument("--target", help="only this target or backup job")
    once.add_argument("--format", choices=("text", "json", "prometheus"), default="text")
    once.set_defaults(command=_once)
    report = commands.add_parser("report", parents=[common], help="summaries from the history")
    report.add_argument("what", choices=("backups",))
    report.add_argument("--days", type=int, default=30, help="how far back (default 30)")
    report.add_argument("--format", choices=("text", "markdown", "csv", "json", "html"), default="text",
                        help="text (default), markdown, csv, json, or html (a page to attach to an e-mail)")
    report.set_defaults(command=_report)
    version = commands.add_parser("version", help="print the version")
    version.set_defaults(command=_version)
    docs = commands.add_parser("docs", help="generate the metrics catalogue or the config reference")
    docs.add_argument("what", choices=("metrics", "config"))
    docs.add_argument("--output", type=Path, help="write to this file (default: standard output)")
    docs.set_defaults(command=_docs)
    return parser


def _run(args: argparse.Namespace) -> int:
    from agent.daemon import Agent  # the web and scheduler stack only when running

    loaded = load_config(args.config)
    try:
        agent = Agent(args.config, loaded)
    except OSError as exc:
        print(f"vigil: cannot listen on {loaded.config.listen}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    asyncio.run(agent.run())
    return EXIT_OK


def _version(args: argparse.Namespace) -> int:
    print(f"vigil {__version__} (Python {platform.python_version()})")
    return EXIT_OK


def _check_config(args: argparse.Namespace) -> int:
    from exporters.webconfig import load_web_config

    loaded = load_config(args.config)
    load_web_config(loaded.config.web_config)
    targets, backups = len(loaded.config.targets), len(loaded.config.backups)
    print(f"{loaded.source}: OK, {targets} target{'s' * (targets != 1)}, "
          f"{backups} backup job{'s' * (backups != 1)}")
    return EXIT_OK


def _once(args: argparse.Namespace) -> int:
    from agent.collector import Context
    from agent.jobs import all_jobs
    from agent.ratelimit import RateLimits
    from agent.statedb import StateDB

    loaded: LoadedConfig = load_config(args.config)
    config = loaded.config
    # integrity checks read data for hours: they keep to their own schedule
    jobs = [job for job in all_jobs(config) if job.kind != "backup_verify"]
    if args.target is not None:
        names = sorted({job.name for job in jobs})
        jobs = [job for job in jobs if job.name == args.target]
        if not jobs:
            print(f"vigil: no target or backup job named `{args.target}` in {loaded.source} "
                  f"(known: {', '.join(names) or 'none'})", file=sys.stderr)
            return EXIT_CONFIG
    clock = Clock()
    db = StateDB.private_copy(config.state_dir)  # a live agent's file is only read, never written
    context = Context(clock, RateLimits(clock), config.state_dir, db)
    results = asyncio.run(_run_all(jobs, context, config.workers))
    db.close()  # first, so runs that outlived their timeout write nothing after ...
    children.stop_all()  # ... their tools are killed here
    states = {job.key: JobState(job.name, job.kind, job.interval, job.collector.METRICS, job.label, result=result,
                                last_success=result.started_at + result.duration if result.ok else None)
              for job, result in zip(jobs, results, strict=True)}
    print(_FORMATS[args.format](states), end="")
    return EXIT_OK if all(result.ok for result in results) else EXIT_FAILED


async def _run_all(specs, context, workers: int) -> list[Result]:
    """Each job once, concurrently, with the agent's own slots, timeouts and isolation."""
    from dataclasses import replace

    from agent.scheduler import Job, Runtime, Slots, pool_sizes

    runtime = Runtime(context.clock, Slots(pool_sizes(workers)))
    jobs = [Job(spec, replace(context, kind=spec.kind, target=spec.name)) for spec in specs]
    try:
        return list(await asyncio.gather(*(job.run(runtime) for job in jobs)))
    finally:
        await asyncio.gather(*(job.discard(runtime) for job in jobs))


def _as_text(states: dict[str, JobState]) -> str:
    lines = []
    for state in states.values():
        result = state.result
        if result.ok:
            lines.append(f"ok      {state.job} ({state.kind}) {result.duration:.2f}s, {len(result.samples)} samples")
            for sample in result.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
                lines.append(f"        {sample.name}{{{labels}}} {sample.value:g}")
        else:
            lines.append(f"FAILED  {state.job} ({state.kind}) {result.duration:.2f}s: {result.error}")
    return "\n".join(lines) + "\n"


def _as_json(states: dict[str, JobState]) -> str:
    return json.dumps([
        {"target": s.job, "kind": s.kind, "ok": s.result.ok, "error": s.result.error,
         "duration_seconds": round(s.result.duration, 3),
         "samples": [{"name": x.name, "labels": dict(x.labels), "value": x.value} for x in s.result.samples]}
        for s in states.values()
    ], indent=1) + "\n"


def _as_prometheus(states: dict[str, JobState]) -> str:
    from exporters.prometheus import Exposition

    return Exposition().render(states, state_ok=True).decode()


_FORMATS = {"text": _as_text, "json": _as_json, "prometheus": _as_prometheus}


def _report(args: argparse.Namespace) -> int:
    from agent.statedb import StateDB
    from checks.report import backup_report, render

    config = load_config(args.config).config
    if args.days < 1:
        print("vigil: --days must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    db = StateDB(config.state_dir)
    now = Clock().time()
    rows = backup_report(db, config.backups, now, args.days)
    db.close()
    since = time.strftime("%Y-%m-%d", time.gmtime(now - args.days * 86400))
    title = f"Backups, last {args.days} days ({since} to {time.strftime('%Y-%m-%d', time.gmtime(now))})"
    print(render(rows, args.format, title), end="")
    return EXIT_OK


def _docs(args: argparse.Namespace) -> int:
    if args.what == "metrics":
        from exporters.catalogue import metrics_markdown as generate
    else:
        from agent.configdoc import config_markdown as generate
    text = generate()
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""The `vigil` command: run, check-config, once, report, web hash-password, version, docs metrics.

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
from functools import partial
from pathlib import Path

from agent import __version__, children, logs, registry
from agent.clock import Clock
from agent.config import ConfigError, ConfigIssue, LoadedConfig, load_config
from agent.model import JobState, Result
from agent.reasons import describe
from agent.section import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, Command

log = logging.getLogger("vigil")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup(args.debug, args.log_level, args.log_format or "text")
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
        print(f"vigil: {describe(exc)}", file=sys.stderr)
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


def _options(after_command: bool, config: bool = True) -> argparse.ArgumentParser:
    """-c, --debug and the log flags, before or after the command; after it they must not
    reset what came before."""
    options = argparse.ArgumentParser(add_help=False,
                                      argument_default=argparse.SUPPRESS if after_command else None)
    if config:
        options.add_argument("-c", "--config", type=Path,
                             help="config file (default /etc/vigil/vigil.yaml, else the embedded default)")
    options.add_argument("--debug", action="store_true", help="debug logs and tracebacks")
    options.add_argument("--log-level", choices=logs.LEVELS,
                         help="least severe level logged (default info, debug with --debug)")
    options.add_argument("--log-format", choices=logs.FORMATS,
                         help="text (default) or json: one object per line, key=value pairs as fields")
    return options


def _command(commands, name: str, summary: str, example: str, parents) -> argparse.ArgumentParser:
    return commands.add_parser(name, parents=parents, help=summary, description=summary[0].upper() + summary[1:] + ".",
                               epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", parents=[_options(after_command=False)],
                                     description="Monitoring and backup-verification agent.",
                                     epilog="`vigil COMMAND --help` tells more about each command.")
    parser.add_argument("--version", action="version", version=f"vigil {__version__} (Python "
                                                                f"{platform.python_version()})")
    common = [_options(after_command=True)]
    no_config = [_options(after_command=True, config=False)]
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run = _command(commands, "run", "run the agent (what the systemd unit starts)",
                   "vigil run -c /etc/vigil/vigil.yaml --listen 127.0.0.1:9840", common)
    run.add_argument("--listen", metavar="HOST:PORT", help="listen here instead of the config's `listen:`")
    run.set_defaults(command=_run)
    check = _command(commands, "check-config", "validate the config (and the web config): exit 2 with one line "
                     "per problem", "vigil check-config -c /etc/vigil/vigil.yaml", common)
    check.set_defaults(command=_check_config)
    once = _command(commands, "once", "run each job once and print what it found, with the conditions the shipped "
                    "alert rules alert on: exit 1 if a target is down or a backup is not ok",
                    "vigil once --target fileserver-nightly --format json", common)
    once.add_argument("--target", help="only this target or backup job")
    once.add_argument("--format", choices=("text", "json", "prometheus"), default="text",
                      help="text (default: verdicts, then every sample), json, or the /metrics exposition")
    once.set_defaults(command=_once)
    for section in registry.sections():  # the backup jobs' own commands (`vigil verify JOB`)
        for declared in section.commands:
            command = _command(commands, declared.name, declared.summary, declared.example, common)
            declared.arguments(command)
            command.set_defaults(command=partial(_section_command, declared))
    alert = _command(commands, "alert", "send a test alert through Alertmanager, to prove the path to the phone",
                     "vigil alert test --alertmanager http://alertmanager.example.org:9093", no_config)
    alert.add_argument("what", choices=("test",))
    alert.add_argument("--alertmanager", required=True, metavar="URL", help="Alertmanager's base URL")
    alert.add_argument("--severity", choices=("critical", "warning"), default="critical",
                       help="critical (default) pages on-call with the shipped routing; warning goes to the day")
    alert.add_argument("--ca-file", type=Path, help="the CA of an Alertmanager behind TLS")
    alert.set_defaults(command=_alert)
    reports = {report.name: report for section in registry.sections() for report in section.reports}
    formats = list(dict.fromkeys(name for report in reports.values() for name in report.formats))
    report = _command(commands, "report", "summaries from the history, such as the monthly backup report",
                      "vigil report backups --days 30 --format html > backups.html", common)
    report.add_argument("what", choices=tuple(reports))
    report.add_argument("--days", type=int, default=30, help="how far back (default 30)")
    report.add_argument("--format", choices=formats, default=formats[0],
                        help="text (default), markdown, csv, json, or html (a page to attach to an e-mail)")
    report.set_defaults(command=_report)
    web = _command(commands, "web", "print a bcrypt hash for web_config's basic_auth_users (the password from a "
                   "prompt, or from stdin)", "vigil web hash-password", no_config)
    web.add_argument("what", choices=("hash-password",))
    web.set_defaults(command=_web)
    version = _command(commands, "version", "print the version", "vigil version", no_config)
    version.set_defaults(command=_version)
    docs = _command(commands, "docs", "print the metrics catalogue or the config reference (markdown)",
                    "vigil docs config --output docs/config.md", no_config)
    docs.add_argument("what", choices=("metrics", "config"))
    docs.add_argument("--output", type=Path, help="write to this file (default: standard output)")
    docs.set_defaults(command=_docs)
    return parser


def _run(args: argparse.Namespace) -> int:
    from agent.daemon import Agent  # the web and scheduler stack only when running

    loaded = load_config(args.config)
    if args.listen is not None:
        loaded = _with_listen(loaded, args.listen)
    try:
        agent = Agent(args.config, loaded)
    except OSError as exc:
        print(f"vigil: cannot listen on {loaded.config.listen}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    asyncio.run(agent.run())
    return EXIT_OK


def _with_listen(loaded: LoadedConfig, listen: str) -> LoadedConfig:
    """The config with `listen:` replaced, validated as if it were written in the file."""
    from dataclasses import replace

    from agent.config import check_listen

    try:
        check_listen(listen)
    except ValueError as exc:
        raise ConfigError([ConfigIssue("--listen", None, "", str(exc))]) from None
    return replace(loaded, config=loaded.config.model_copy(update={"listen": listen}))


def _version(args: argparse.Namespace) -> int:
    print(f"vigil {__version__} (Python {platform.python_version()})")
    return EXIT_OK


def _check_config(args: argparse.Namespace) -> int:
    from exporters.webconfig import load_web_config

    loaded = load_config(args.config)
    load_web_config(loaded.config.web_config)
    for warning in loaded.warnings:
        print(warning.as_warning(), file=sys.stderr)
    count = len(loaded.warnings)
    held = ", ".join(f"{len(entries)} {what}{'s' * (len(entries) != 1)}" for _, what, entries in loaded.config.lists())
    print(f"{loaded.source}: OK, {held}"
          + (f", {count} warning{'s' * (count != 1)}" if count else ""))
    return EXIT_OK


def _once(args: argparse.Namespace) -> int:
    from agent.collector import LONG, Context
    from agent.jobs import all_jobs
    from agent.ratelimit import RateLimits
    from agent.statedb import StateDB

    loaded: LoadedConfig = load_config(args.config)
    config = loaded.config
    # runs that read data for hours (integrity checks) keep to their own schedule
    jobs = [job for job in all_jobs(config) if job.collector.POOL != LONG]
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
    results = asyncio.run(_run_all(jobs, context, config.workers, config.backup_workers))
    db.close()  # first, so runs that outlived their timeout write nothing after ...
    children.stop_all()  # ... their tools are killed here
    states = {job.key: JobState(job.name, job.kind, job.interval, job.collector.METRICS, job.collector.LABEL,
                                result=result,
                                conditions=job.collector.CONDITIONS,
                                last_success=result.started_at + result.duration if result.ok else None)
              for job, result in zip(jobs, results, strict=True)}
    print(_FORMATS[args.format](states), end="")  # its texts were redacted where they were made (agent.redact)
    return EXIT_OK if all(_status(result)[0] == "ok" for result in results) else EXIT_FAILED


def _section_command(command: Command, args: argparse.Namespace) -> int:
    return registry.load(command.run)(args, load_config(args.config))


async def _run_all(specs, context, workers: int, backup_workers: int | None) -> list[Result]:
    """Each job once, concurrently, with the agent's own slots, timeouts and isolation."""
    from dataclasses import replace

    from agent.scheduler import Job, Runtime, Slots, pool_sizes

    runtime = Runtime(context.clock, Slots(pool_sizes(workers, backup_workers)))
    jobs = [Job(spec, replace(context, kind=spec.kind, target=spec.name, interval=spec.interval,
                              timeout=spec.timeout)) for spec in specs]
    try:
        return list(await asyncio.gather(*(job.run(runtime) for job in jobs)))
    finally:
        await asyncio.gather(*(job.discard(runtime) for job in jobs))


def _status(result: Result) -> tuple[str, str]:
    """A job's one-word outcome and why: a backup's verdict, else ok or failed with the reason."""
    if not result.ok:
        return "failed", result.error
    if result.verdict is not None:
        return result.verdict.status, result.verdict.detail
    failed = [f"{s.name}: {s.error}" for s in result.signals if not s.ok]
    return ("ok", "") if not failed else ("partial", "; ".join(failed))


def _as_text(states: dict[str, JobState]) -> str:
    from agent.units import readable_time
    from exporters.status import concerns

    lines = []
    for state in states.values():
        result = state.result
        status, detail = _status(result)
        subject = f"{state.job} ({state.kind})"
        lines.append(f"{status.upper() if status not in ('ok', 'partial') else status:<12} {subject} "
                     f"{result.duration:.2f}s" + (f": {detail}" if detail else f", {len(result.samples)} samples"))
        lines += [f"  {c.severity:<8}   {c.says} ({c.alert})" for c in concerns(state, time.time())]
    for state in states.values():
        if state.result.samples:
            lines += ["", f"# {state.job} ({state.kind})"]
        for sample in state.result.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
            labels = f"{{{labels}}}" if labels else ""
            value = f"{sample.value:.15g}"
            if sample.name.endswith("_timestamp_seconds"):
                value += f"  ({readable_time(sample.value)})"
            lines.append(f"{sample.name}{labels} {value}")
    return "\n".join(lines) + "\n"


def _as_json(states: dict[str, JobState]) -> str:
    from dataclasses import asdict

    from exporters.status import concerns

    jobs = []
    for s in states.values():
        status, detail = _status(s.result)
        jobs.append({"name": s.job, "kind": s.kind, "ok": s.result.ok, "status": status, "detail": detail,
                     "error": s.result.error, "duration_seconds": round(s.result.duration, 3),
                     "concerns": [asdict(c) for c in concerns(s, time.time())],
                     "signals": [{"name": x.name, "ok": x.ok, "error": x.error} for x in s.result.signals],
                     "samples": [{"name": x.name, "labels": dict(x.labels), "value": x.value}
                                 for x in s.result.samples]})
    return json.dumps(jobs, indent=1) + "\n"


def _as_prometheus(states: dict[str, JobState]) -> str:
    from exporters.prometheus import Exposition

    return Exposition().render(states, state_ok=True).decode()


_FORMATS = {"text": _as_text, "json": _as_json, "prometheus": _as_prometheus}


def _alert(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from agent.alerttest import send_test_alert

    print(send_test_alert(args.alertmanager, args.severity, timedelta(minutes=10), args.ca_file))
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from agent.statedb import StateDB

    section, report = next((section, report) for section in registry.sections() for report in section.reports
                           if report.name == args.what)
    config = load_config(args.config).config
    if args.days < 1:
        print("vigil: --days must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    db = StateDB.private_copy(config.state_dir)  # a report only reads: the agent's file is never touched
    now = Clock().time()
    rows = registry.load(report.build)(db, config.entries(section), now, args.days)
    db.close()
    since = time.strftime("%Y-%m-%d", time.gmtime(now - args.days * 86400))
    title = f"{report.title}, last {args.days} days ({since} to {time.strftime('%Y-%m-%d', time.gmtime(now))})"
    print(registry.load(report.render)(rows, args.format, title), end="")
    return EXIT_OK


def _web(args: argparse.Namespace) -> int:
    from exporters.webpassword import hash_password, read_password

    print(hash_password(read_password(sys.stdin)))
    return EXIT_OK


def _docs(args: argparse.Namespace) -> int:
    if args.what == "metrics":
        from agent.catalogue import metrics_markdown as generate
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

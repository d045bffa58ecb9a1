"""The reliability table: every fault the suite injects, what vigil should do, what it did.

Runs the tests that record a `fault_report` row (tests/fault_report.py) against the real
lab peers, then prints one row per fault: the fault, the expected behaviour, what was
observed, the time to recover and the history rows lost (which must be none). The tests
assert the behaviour; this only gathers what they saw into one table.

    python bench/reliability.py                    # run the fault tests (VIGIL_LAB=require), print the table
    python bench/reliability.py -k ssh             # a subset, with pytest's -k
    python bench/reliability.py --from rows.jsonl  # print a table from an earlier run's rows
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("fault", "expected", "observed", "recovered in", "lost")


def run_fault_tests(rows: Path, pytest_args: list[str]) -> int:
    env = {**os.environ, "VIGIL_FAULT_REPORT": str(rows), "VIGIL_LAB": os.environ.get("VIGIL_LAB", "require")}
    argv = [sys.executable, "-m", "pytest", "-q", "--faults-only", "-p", "no:cacheprovider", *pytest_args]
    return subprocess.call(argv, cwd=ROOT, env=env)  # noqa: S603 (our own pytest)


def cells(row: dict) -> tuple[str, ...]:
    recovered = row.get("recovered_in")
    return (row["fault"], row["expected"], row["observed"],
            "-" if recovered is None else f"{recovered:.1f} s", str(row.get("lost", 0)))


def table(rows: list[dict]) -> str:
    """A Markdown table (it reads as well in a terminal as in a note)."""
    escape = str.maketrans({"|": "\\|", "\n": " "})
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.translate(escape) for cell in cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, help="rows written by an earlier run")
    args, pytest_args = parser.parse_known_args()
    status = 0
    if args.source is None:
        with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as handle:
            args.source = Path(handle.name)
        status = run_fault_tests(args.source, pytest_args)
    rows = [json.loads(line) for line in args.source.read_text().splitlines() if line.strip()]
    print(table(rows))
    lost = sum(row.get("lost", 0) for row in rows)
    print(f"\n{len(rows)} faults, {lost} history rows lost" + ("" if status == 0 else f"; pytest exit {status}"))
    return status or (1 if lost else 0)


if __name__ == "__main__":
    sys.exit(main())

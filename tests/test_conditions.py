"""The status page's conditions are the shipped alert rules: the same expressions, judged as Prometheus does.

Each rule of deploy/prometheus/rules is declared once more in the code of its kind (agent.model.Condition,
with words for people). These tests hold the two together: every rule is declared with its very
expression and severity, and the agent's evaluation of every judged expression gives exactly what
Prometheus' own gives (labels and values) at every evaluation time of the rules' promtool fixtures,
checked by promtool itself.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from agent import registry
from agent.conditions import fields, judge, words
from agent.metrics import AGENT_CONDITIONS, JOB_CONDITIONS
from agent.model import Condition, JobState, LastGood, Result, Sample
from agent.promql import Newest, Unsupported, evaluate, parse
from tests.conftest import ROOT
from tests.lab.harness import need

RULES = ROOT / "deploy" / "prometheus" / "rules"
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.test.yml"))
MINUTE = 60.0
LOOKBACK = 5 * MINUTE  # Prometheus' default lookback delta


def declared() -> list[Condition]:
    """Every condition the code declares: the agent's own, then each kind's (kinds may share a tuple)."""
    found = [*AGENT_CONDITIONS, *JOB_CONDITIONS]
    for kind in sorted(registry.COLLECTORS) + sorted(registry.job_kinds()):
        found += [c for c in registry.job_class(kind).CONDITIONS if c not in found]
    return found


def shipped() -> dict[tuple[str, str], dict]:
    """Every alert rule by (name, severity), with the file it is in."""
    rules = {}
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                key = (rule["alert"], rule["labels"]["severity"])
                assert key not in rules, f"{key} twice"
                rules[key] = {**rule, "file": path.name}
    return rules


def normal(expr: str) -> str:
    return " ".join(expr.split())


def test_every_shipped_rule_is_declared_once_with_its_own_expression():
    conditions = {(c.alert, c.severity): c for c in declared()}
    assert len(conditions) == len(declared()), "a rule declared twice"
    rules = shipped()
    assert sorted(rules.keys() - conditions.keys()) == [], "rules the status page does not know"
    assert sorted(conditions.keys() - rules.keys()) == [], "conditions no shipped rule has"
    for key, condition in conditions.items():
        assert normal(condition.expr) == normal(rules[key]["expr"]), key


@pytest.mark.parametrize("condition", declared(), ids=lambda c: f"{c.alert}-{c.severity}")
def test_a_rule_is_left_to_prometheus_only_with_a_reason_and_only_when_needed(condition):
    assert condition.says
    try:
        parse(condition.expr)
    except Unsupported:
        assert condition.not_judged, f"{condition.alert} cannot be judged by the agent: say why (not_judged)"


def test_words_name_the_value_and_the_labels():
    assert words("{value:duration} left", {}, 480) == "8 min left"
    assert words("{value:percent} free on {mountpoint}", {"mountpoint": "/srv"}, 0.034) == "3.4% free on /srv"
    assert words("{value:count failed unit}", {}, 1) == "1 failed unit"
    assert words("{value:count failed unit}", {}, 2) == "2 failed units"
    assert words("licence {value:expires}", {}, 5 * 86400) == "licence expires in 5 d"
    assert words("licence {value:expires}", {}, -2 * 86400) == "licence expired 2 d ago"
    assert words("{device} at {value:ms}", {"device": "mx1"}, 0.25) == "mx1 at 250 ms"


def test_concerns_come_critical_first_with_the_alerts_labels():
    conditions = [Condition("Warm", "warning", "temp > 30", "{room} warm"),
                  Condition("Hot", "critical", "temp > 40", "{room} hot")]
    series = [("temp", {"room": "a"}, 45.0), ("temp", {"room": "b"}, 35.0)]
    concerns = judge(conditions, series, 0)
    assert [(c.alert, c.says) for c in concerns] == [("Hot", "a hot"), ("Warm", "a warm"), ("Warm", "b warm")]
    assert concerns[0].labels == {"room": "a"}


def test_a_failed_poll_keeps_a_power_cut_on_the_page_while_the_rules_range_holds_it():
    """UpsOnBattery reads last_over_time(...[3m]): a failed poll's lost series hold for 3 min after they left."""
    from collectors.ups import metrics as ups_metrics
    from exporters.status import concerns

    good = (Sample("vigil_ups_on_battery", 1), Sample("vigil_ups_battery_runtime_seconds", 480))
    failed = Result("ups1", "nut", False, 60, 1, error="upsd did not answer")
    state = JobState("ups1", "nut", 60, conditions=ups_metrics.CONDITIONS, result=failed,
                     last_good=LastGood(good, gone_at=61))

    def shown(now: float) -> list[tuple[str, str]]:
        return [(concern.alert, concern.says) for concern in concerns(state, now)]

    unreachable = [("VigilJobFailing", "collection failing"), ("UpsUnreachable", "cannot be read")]
    assert shown(61 + 3 * MINUTE) == [("UpsOnBattery", "on battery"), ("UpsRuntimeLow", "8 min left"), *unreachable]
    assert shown(62 + 3 * MINUTE) == unreachable
    assert concerns(state, 61 + 3 * MINUTE)[0].labels == {"target": "ups1"}  # as the alert has it


# --- the agent's evaluation against Prometheus' own, on the rules' promtool fixtures ----------------

STALE = "stale"  # promtool's staleness marker: the series left the scrape


def series_values(notation: str, interval: float) -> list[tuple[float, float | str]]:
    """promtool's expanding notation (`1 2 _ stale 0+60x30 5x10`) as (time, value or STALE), as promtool
    builds it: `a+bxn` is a and n sums after it, `axn` n + 1 times a, `_xn` n gaps."""
    values: list[float | str | None] = []
    for item in notation.split():
        head, times = (item.split("x") + [""])[:2] if "x" in item else (item, "")
        if head in ("_", STALE):
            values += [None if head == "_" else STALE] * (int(times) if times else 1)
            continue
        start, step = _start_and_step(head)
        if not times:
            values.append(start)
            continue
        values.append(start)
        for _ in range(int(times)):
            start += step
            values.append(start)
    return [(index * interval, value) for index, value in enumerate(values) if value is not None]


def _start_and_step(head: str) -> tuple[float, float]:
    for at in range(1, len(head)):
        if head[at] in "+-" and head[at - 1] not in "eE":
            return float(head[:at]), float(head[at:])
    return float(head), 0.0


def duration(text: str) -> float:
    from agent.units import parse_duration

    return parse_duration(text)


def newest(case: dict, at: float) -> dict[str, list[Newest]]:
    """The input series as a query at `at` finds them: each one's newest sample (a range skips stale
    markers) and whether an instant selector still sees it (within the lookback, no stale marker since)."""
    interval = duration(case.get("interval", "1m"))
    seen: dict[str, list[Newest]] = {}
    for item in case["input_series"]:
        name, labels = series_labels(item["series"])
        samples = [(time, value) for time, value in series_values(str(item["values"]), interval) if time <= at]
        good = [(time, value) for time, value in samples if value != STALE]
        if good:
            time, value = good[-1]
            current = samples[-1][1] != STALE and at - time <= LOOKBACK
            seen.setdefault(name, []).append(Newest(labels, float(value), time, current))
    return seen


def series_labels(text: str) -> tuple[str, dict[str, str]]:
    """`name{a="b",c='d'}` as the name and its labels."""
    name, _, rest = text.partition("{")
    pairs = re.findall(r"""(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""", rest)
    return name.strip(), {label: double or single for label, double, single in pairs}


def exposition(labels: dict[str, str]) -> str:
    name = labels.get("__name__", "")
    rest = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def test_the_agent_judges_every_rule_as_prometheus_does_on_the_rules_fixtures(tmp_path):
    by_file: dict[str, list[Condition]] = {}
    conditions = {(c.alert, c.severity): c for c in declared() if not c.not_judged}
    for key, rule in shipped().items():
        if key in conditions:
            by_file.setdefault(rule["file"], []).append(conditions[key])
    held: set[tuple[str, str]] = set()
    generated = []
    for path in RULE_TESTS:
        source = yaml.safe_load(path.read_text())
        rule_files = [str((path.parent / name).resolve()) for name in source["rule_files"]]
        judged = [c for name in source["rule_files"] for c in by_file.get(name.rsplit("/", 1)[-1], [])]
        tests = []
        for case in source["tests"]:
            checks = []
            for at_text in sorted({check["eval_time"] for check in case.get("alert_rule_test", [])}, key=duration):
                at = duration(at_text)
                seen = newest(case, at)
                for condition in judged:
                    points = evaluate(condition.expr, seen, at)
                    for point in points:
                        assert fields(condition.says) <= {*point.labels, "value"}, (condition.alert, point.labels)
                        words(condition.says, point.labels, point.value)
                        held.add((condition.alert, condition.severity))
                    checks.append({"expr": condition.expr, "eval_time": at_text,
                                   "exp_samples": [{"labels": exposition(dict(p.labels)), "value": p.value}
                                                   for p in points]})
            tests.append({key: case[key] for key in ("interval", "input_series", "external_labels") if key in case}
                         | {"name": case["name"], "promql_expr_test": checks})
        target = tmp_path / path.name
        target.write_text(yaml.safe_dump({"rule_files": rule_files, "evaluation_interval":
                                          source.get("evaluation_interval", "1m"), "tests": tests}))
        generated.append(str(target))
    assert held == set(conditions), f"never held in the fixtures: {sorted(set(conditions) - held)}"
    done = subprocess.run([need("promtool"), "test", "rules", *generated], capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]

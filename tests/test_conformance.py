"""The conformance kit: every kind emits exactly what its catalogue declares, by the conventions.

Registry-driven: a new kind is covered once it provides a `<kind>_conformance` fixture (a
target mapping whose collection shows every family; see tests/conftest.py's
pytest_plugins) — and this file fails until it does.
"""

from __future__ import annotations

import re

import pytest

from agent import registry
from agent.catalogue import metrics_markdown
from agent.metrics import AGENT_METRICS
from agent.model import MetricSpec
from tests import collector_kit
from tests.conftest import ROOT

UNITS = ("seconds", "bytes", "ratio", "celsius", "volts", "hertz", "amperes", "watts")


def all_specs() -> list[tuple[str, MetricSpec]]:
    specs = [("agent", spec) for spec in AGENT_METRICS]
    for kind in sorted({**registry.COLLECTORS, **registry.job_kinds()}):
        specs += [(kind, spec) for spec in registry.job_class(kind).METRICS]
    return specs


@pytest.mark.parametrize("kind", sorted(registry.COLLECTORS))
def test_a_kind_emits_exactly_its_declared_metrics(kind, request, context):
    target = request.getfixturevalue(f"{kind}_conformance")
    out = collector_kit.collect(target, context)  # strict: a label or type mismatch raises
    collector_kit.assert_conforms(out, registry.collector_class(kind))


def test_a_backup_job_emits_exactly_its_declared_metrics(tmp_path, context, monkeypatch):
    """borg on both sides (it reports durations), off-site in step, verified: every family shows."""
    from agent.collector import Emitter
    from checks.config import BackupJobConfig
    from checks.job import BackupEvaluation, BackupVerification
    from tests.lab.backup_tools import PASSWORD, BorgRepo

    primary, offsite = BorgRepo(tmp_path, "primary"), BorgRepo(tmp_path, "offsite")
    for repo in (primary, offsite):
        repo.create("nightly-1")
    monkeypatch.setenv("VIGIL_TEST_BORG", PASSWORD)
    borg = {"kind": "borg", "passphrase": "${env:VIGIL_TEST_BORG}"}
    config = BackupJobConfig.model_validate({
        "name": "nightly", "schedule": "0 1 * * *", "deadline": "4h",
        "verify": {"every": "7d", "schedule": "* * * * *"},
        "primary": {**borg, "repository": primary.repository}, "offsite": {**borg, "repository": offsite.repository}})
    BackupVerification(config, context).collect(Emitter((), strict=True), frozenset({"main"}))
    config = _with_a_drill_recorded(config, context)
    out = Emitter(BackupEvaluation.METRICS, strict=True)
    BackupEvaluation(config, context).collect(out, frozenset({"main"}))
    collector_kit.assert_conforms(out, BackupEvaluation)


def _with_a_drill_recorded(config, context):
    """The job with `drill:` and one drill of its primary in the history, which the drill metrics are read from.

    The drill is recorded rather than run, and the config copied rather than validated, until borg declares
    Drilled (part B of issue 23); then this becomes a BackupDrill run like the verification above."""
    from checks.history import BackupHistory, Drill, DrillFile
    from checks.model import DrillConfig

    BackupHistory(context.db, config.name).record_drill(
        Drill("primary", 1.0, 2.0, "nightly-1", True, 1, 4, "nightly/primary", -1, 5, 0, 1.0, "1 restored"),
        [DrillFile("/etc/hostname", "newest", 4, 1.0, 1.0, "ab", "tool", "restored", "")])
    return config.model_copy(update={"drill": DrillConfig(locations="primary")})


def test_a_family_shared_by_several_kinds_has_one_spec():
    """`vigil_server_*` from the host and from ssh: one set of rules and dashboards for every server."""
    seen: dict[str, tuple[str, MetricSpec]] = {}
    for kind, spec in all_specs():
        if spec.name in seen:
            other_kind, other = seen[spec.name]
            assert spec == other, f"{spec.name}: {kind} and {other_kind} declare it differently"
        seen.setdefault(spec.name, (kind, spec))


@pytest.mark.parametrize("kind,spec", all_specs(), ids=lambda value: getattr(value, "name", value))
def test_metric_names_follow_the_conventions(kind, spec):
    assert re.fullmatch(r"vigil_[a-z0-9_]+", spec.name), spec.name
    assert spec.type in ("gauge", "counter")
    assert spec.name.endswith("_total") == (spec.type == "counter"), "_total is for counters only"
    assert spec.help.endswith("."), "HELP is a sentence"
    base = spec.name.removesuffix("_total")
    if spec.unit:
        assert spec.unit in UNITS, f"{spec.unit} is not a base unit"
        assert base.endswith("_" + spec.unit), f"a metric in {spec.unit} ends with _{spec.unit}"
    else:
        assert not base.endswith(tuple("_" + unit for unit in UNITS)), "its unit must be declared"
    if base.endswith("_info"):
        assert spec.type == "gauge" and spec.labels, "_info carries its text in labels"
    assert len(set(spec.labels)) == len(spec.labels)


def test_no_kind_declares_a_metric_twice():
    for kind in {**registry.COLLECTORS, **registry.job_kinds()}:
        names = [spec.name for spec in registry.job_class(kind).METRICS]
        assert len(names) == len(set(names)), kind


def test_docs_metrics_md_is_up_to_date():
    committed = (ROOT / "docs" / "metrics.md").read_text()
    assert committed == metrics_markdown(), "docs/metrics.md is stale: run `make docs`"


def test_the_folder_in_contributing_md_is_the_one_the_tests_run():
    """docs/contributing.md shows a kind's folder to copy; tests/skeleton/ is that folder under the tests'
    package name, the `counting` kind the scheduler's tests and the test agents run: so the page stays true."""
    from agent import kindpage
    from tests.skeleton.collector import Counting
    from tests.test_layering import FAMILY_FILES

    page = (ROOT / "docs" / "contributing.md").read_text()
    shown = {name: text for name, _, text in re.findall(
        r"^#### `collectors/counting/([\w.]+)`\n\n(`{3,4})(?:python|markdown)\n(.*?)^\2$", page, re.M | re.S)}
    folder = ROOT / "tests" / "skeleton"
    assert set(shown) == set(FAMILY_FILES) == {path.name for path in folder.iterdir() if path.is_file()}
    for name, text in shown.items():
        assert text == (folder / name).read_text().replace("tests.skeleton", "collectors.counting"), \
            f"docs/contributing.md's collectors/counting/{name} is not tests/skeleton/{name}"
    assert not kindpage.stale([Counting]), "tests/skeleton/README.md is stale: run `make docs`"


def test_every_location_kind_declares_what_it_can_do():
    """A location says what it can do by subclassing the protocols of checks.model; the backup jobs never guess
    from a method's name, so a method without its protocol (or a protocol without its method) is a mistake."""
    from checks.model import Drilled, Fingerprinted, Location, Measured, Verified, declares
    from checks.sources import LOCATIONS, location_class

    for kind in LOCATIONS:
        cls = location_class(kind)
        assert declares(cls, Location) and cls.kind == kind, kind
        for protocol, method in ((Measured, "measure"), (Verified, "verify"), (Fingerprinted, "fingerprint"),
                                 (Drilled, "restore")):
            written = any(method in vars(base) for base in cls.__mro__ if not getattr(base, "_is_protocol", False))
            assert declares(cls, protocol) == written, f"{kind}: {method}() and {protocol.__name__} go together"

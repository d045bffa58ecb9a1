"""The metric catalogue is the truth: collectors emit exactly what they declare."""

from __future__ import annotations

import pytest

from agent import registry
from agent.config import AgentConfig
from exporters.catalogue import metrics_markdown
from tests.conftest import ROOT
from tests.test_host import systemd_host  # noqa: F401 (used by host_fixture)


@pytest.fixture
def host_fixture(request):
    """The host collector on a systemd Debian host, so every family shows."""
    request.getfixturevalue("systemd_host")
    return {"name": "me", "kind": "host"}


# kind -> the fixture that gives a config whose collection exercises every family
FIXTURES = {"host": "host_fixture"}


def test_every_registered_kind_has_a_catalogue_fixture():
    assert set(FIXTURES) == set(registry.COLLECTORS)


@pytest.mark.parametrize("kind", sorted(FIXTURES))
def test_emitted_metrics_match_the_declared_catalogue(kind, request):
    collector_class = registry.collector_class(kind)
    config = AgentConfig.model_validate({"targets": [request.getfixturevalue(FIXTURES[kind])]}).targets[0]
    samples = collector_class(config, None).collect()
    declared = {spec.name: set(spec.labels) for spec in collector_class.METRICS}
    emitted: dict[str, set[str]] = {}
    for sample in samples:
        emitted.setdefault(sample.name, set()).update(sample.labels)
    assert set(emitted) == set(declared)
    for name, labels in emitted.items():
        assert labels == declared[name], name


def test_metric_names_follow_the_conventions():
    from checks.job import METRICS as BACKUP_METRICS
    from exporters.prometheus import AGENT_METRICS

    specs = list(AGENT_METRICS) + list(BACKUP_METRICS)
    specs += [s for kind in registry.COLLECTORS for s in registry.collector_class(kind).METRICS]
    for spec in specs:
        assert spec.name.startswith("vigil_"), spec.name
        assert spec.name.endswith("_total") == (spec.type == "counter"), spec.name
        assert spec.help.endswith("."), spec.name
    assert len({s.name for s in specs}) == len(specs), "a metric is declared twice"


def test_docs_metrics_md_is_up_to_date():
    committed = (ROOT / "docs" / "metrics.md").read_text()
    assert committed == metrics_markdown(), "docs/metrics.md is stale: run `vigil docs metrics`"


def test_a_backup_job_emits_exactly_its_declared_metrics(tmp_path, context, monkeypatch):
    """borg on both sides (it reports durations), off-site in step, verified: every family shows."""

    from checks.config import BackupJobConfig
    from checks.job import LABEL, METRICS, backup_jobs
    from tests.lab.backup_tools import PASSWORD, BorgRepo

    primary, offsite = BorgRepo(tmp_path, "primary"), BorgRepo(tmp_path, "offsite")
    for repo in (primary, offsite):
        repo.create("nightly-1")
    monkeypatch.setenv("VIGIL_TEST_BORG", PASSWORD)
    borg = {"kind": "borg", "passphrase": "${env:VIGIL_TEST_BORG}"}
    config = BackupJobConfig.model_validate({
        "name": "nightly", "schedule": "0 1 * * *", "deadline": "4h", "verify": {"every": "7d"},
        "primary": {**borg, "repository": primary.repository}, "offsite": {**borg, "repository": offsite.repository}})
    evaluation, verification = backup_jobs(config, context)
    verification.collect()
    samples = evaluation.collect().samples
    declared = {spec.name: set(spec.labels) for spec in METRICS}
    emitted: dict[str, set[str]] = {}
    for sample in samples:
        emitted.setdefault(sample.name, set()).update(sample.labels)
    assert emitted == declared
    assert LABEL == "backup" and evaluation.label == LABEL

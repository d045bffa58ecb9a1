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
    from exporters.prometheus import AGENT_METRICS

    specs = list(AGENT_METRICS) + [s for kind in registry.COLLECTORS for s in registry.collector_class(kind).METRICS]
    for spec in specs:
        assert spec.name.startswith("vigil_"), spec.name
        assert spec.name.endswith("_total") == (spec.type == "counter"), spec.name
        assert spec.help.endswith("."), spec.name
    assert len({s.name for s in specs}) == len(specs), "a metric is declared twice"


def test_docs_metrics_md_is_up_to_date():
    committed = (ROOT / "docs" / "metrics.md").read_text()
    assert committed == metrics_markdown(), "docs/metrics.md is stale: run `vigil docs metrics`"

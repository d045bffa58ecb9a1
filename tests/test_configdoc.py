"""docs/config.md is generated from the models and complete: every key has a meaning."""

from __future__ import annotations

from agent import registry
from agent.configdoc import config_markdown, fields
from checks.sources import LOCATIONS, location_class
from tests.conftest import ROOT


def test_docs_config_md_is_up_to_date():
    committed = (ROOT / "docs" / "config.md").read_text()
    assert committed == config_markdown(), "docs/config.md is stale: run `make docs`"


def test_the_reference_names_every_kind_and_the_keys_of_the_example():
    text = config_markdown()
    for kind in registry.COLLECTORS:
        assert f"`targets:` `kind: {kind}`" in text
    for kind in LOCATIONS:
        assert f"Location `kind: {kind}`" in text
    assert "| `verify.read_data_subset` | text |" in text and "| `deadline` | duration | required |" in text


def test_the_agent_and_backup_keys_all_have_a_description():
    from agent.config import AgentConfig, Defaults
    from agent.schema import TargetConfig
    from checks.config import BackupJobConfig
    from checks.model import LocationConfig

    missing = [f"{model.__name__}.{name}" for model in (AgentConfig, Defaults, TargetConfig, BackupJobConfig,
                                                        LocationConfig)
               for name, info in fields(model) if not info.description
               and name not in ("targets", "backups", "defaults")]
    assert not missing, missing


def test_every_key_of_every_kind_and_location_has_a_description():
    from agent.schema import TargetConfig
    from checks.model import LocationConfig

    missing = [f"targets kind {kind}: {name}" for kind in registry.COLLECTORS
               for name, info in fields(registry.collector_class(kind).Config, TargetConfig) if not info.description]
    missing += [f"location kind {kind}: {name}" for kind in LOCATIONS
                for name, info in fields(location_class(kind).Config, LocationConfig)
                if not info.description]
    assert not missing, missing


def test_a_key_in_every_member_of_a_union_lists_every_member_s_values():
    from typing import Literal

    from pydantic import Field

    from agent.configdoc import type_of
    from agent.schema import StrictModel

    class Community(StrictModel):
        version: Literal["2c"] = Field(description="Community based.")

    class Users(StrictModel):
        version: Literal[3, "3"] = Field(description="With users.")

    class Target(StrictModel):
        snmp: Community | Users

    version = dict(fields(Target))["snmp.version"]
    assert (type_of(version), version.description) == ("one of `2c`, `3`", "Community based. With users.")
    committed = (ROOT / "docs" / "config.md").read_text()
    assert "| `snmp.version` | one of `2c`, `3` | required |" in committed

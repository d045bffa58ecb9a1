"""A section that takes one of several shapes (SNMP v2c or v3) is judged by the shape it names: one
message naming the real problem, not every other shape's missing keys."""

from __future__ import annotations

import types
import typing

import pytest
from pydantic import BaseModel

from agent import registry
from agent.config import AgentConfig, ConfigError, load_config
from checks.config import BackupJobConfig
from checks.sources import LOCATIONS

SNMP = "targets:\n  - name: ups\n    kind: ups\n    host: 10.0.0.20\n    snmp: {snmp}\n"


@pytest.mark.parametrize("snmp, expected", [
    ('{version: 2c, community: public}',
     ["targets[0].snmp.community: must be a secret reference: ${env:NAME}, ${file:/path} or ${cred:name} "
      "(secrets are never written inline)"]),
    ('{community: "${env:T_SECRET}"}', ["targets[0].snmp: missing required key `version` (`2c` or `3`)"]),
    ('{version: 1, community: "${env:T_SECRET}"}', ["targets[0].snmp.version: unknown version `1`; valid: `2c`, `3`"]),
    ('{version: 3, user: vigil, auth_key: "${env:T_SECRET}"}', ["targets[0].snmp: missing required key `priv_key`"]),
    ('{version: "3", user: vigil, auth_key: "${env:T_SECRET}", priv_key: "${env:T_SECRET}", contxt: ups}',
     ["targets[0].snmp.contxt: unknown key `contxt`; did you mean `context`?"]),
    ('{version: 2c, community: "${env:T_SECRET}", user: vigil}',
     ["targets[0].snmp.user: unknown key `user`; valid keys: version, community"]),
    ('public', ["targets[0].snmp: expected a mapping (key: value)"]),
])
def test_a_union_section_gets_one_message_about_the_shape_it_names(write_config, monkeypatch, snmp, expected):
    monkeypatch.setenv("T_SECRET", "a-community")
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(SNMP.format(snmp=snmp)))
    assert [f"{issue.path}: {issue.message}" for issue in caught.value.issues] == expected
    assert all(issue.line == 5 for issue in caught.value.issues)


def _models() -> list[type[BaseModel]]:
    """Every model a config can hold: the agent's, every target kind's, every backup location kind's."""
    roots = [AgentConfig, BackupJobConfig]
    roots += [registry.load(path).Config for path in {**registry.COLLECTORS, **LOCATIONS}.values()]
    seen: list[type[BaseModel]] = []
    while roots:
        model = roots.pop()
        if model in seen:
            continue
        seen.append(model)
        for info in model.model_fields.values():
            roots += [arg for arg in _flatten(info.annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)]
    return seen


def _flatten(annotation) -> list:
    args = typing.get_args(annotation)
    return [annotation, *(item for arg in args for item in _flatten(arg))]


def test_every_union_of_shapes_in_the_config_is_told_apart_by_a_key():
    """A union of models without a discriminator gives every member's errors at once: none may exist."""
    undiscriminated = []
    for model in _models():
        for name, info in model.model_fields.items():
            for union in _flatten(info.annotation):
                if typing.get_origin(union) not in (typing.Union, types.UnionType):
                    continue
                shapes = [arg for arg in typing.get_args(union) if isinstance(arg, type) and issubclass(arg, BaseModel)]
                if len(shapes) > 1 and info.discriminator is None:
                    undiscriminated.append(f"{model.__qualname__}.{name}")
    assert len(_models()) > 20 and not undiscriminated, undiscriminated

"""Fixtures for the Meraki Dashboard API contract fake (tests/fakes/meraki.py), and the
`meraki_conformance` target: every endpoint group on, so every declared family is emitted."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.fakes.meraki import MerakiFake, Org, make_org
from tests.lab.pki import PKI, make_pki

KEY = "test-key"


@pytest.fixture(scope="session")
def meraki_pki(tmp_path_factory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("meraki-pki"))


@pytest.fixture
def meraki_fakes(meraki_pki) -> Iterator[Callable[..., MerakiFake]]:
    """Start fakes: `meraki_fakes([make_org(...)], rate=..., ...)`; all stop at the end of the test."""
    started: list[MerakiFake] = []

    def start(orgs: list[Org], **options) -> MerakiFake:
        fake = MerakiFake(meraki_pki, orgs, **options).__enter__()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.__exit__(None, None, None)


@pytest.fixture
def meraki_target(meraki_pki, tmp_path) -> Callable[..., dict]:
    """A `kind: meraki` target mapping for a fake, its key in a secret file."""

    def target(fake: MerakiFake, key: str = KEY, **options) -> dict:
        secret = tmp_path / f"meraki-key-{len(key)}-{abs(hash(key))}"
        secret.write_text(key + "\n")
        return {"name": "meraki", "kind": "meraki", "api_key": f"${{file:{secret}}}", "base_url": fake.url,
                "ca_file": str(meraki_pki.ca), **options}

    return target


@pytest.fixture
def meraki_conformance(meraki_fakes, meraki_target) -> dict:
    fake = meraki_fakes([make_org("549236", "Conformance", networks=3, devices=40)])
    return meraki_target(fake, wireless_channel_utilization=True, switch_port_statuses=True,
                         assurance_alerts=True)


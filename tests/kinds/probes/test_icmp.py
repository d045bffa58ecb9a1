"""`kind: icmp` with unprivileged (datagram) ping: loopback answers, a silent address does not, and a
kernel that allows no ping says which setting to change."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from collectors.probes.collector import IcmpProbe
from tests import collector_kit as kit
from tests.kinds.probes.probing import held_after, probe
from tests.lab.blackhole import UNRESOLVABLE
from tests.lab.harness import need
from tests.lab.icmp import ANSWERING, need_datagram_ping, silent_address

RTT = ("min", "avg", "max")


@pytest.fixture(autouse=True)
def _ping_allowed():
    need_datagram_ping()


def ping(host: str, **more) -> dict:
    return {"name": "ping", "kind": "icmp", "host": host, **more}


def test_conformance_loopback_emits_every_family(icmp_conformance, context):
    out = kit.collect(icmp_conformance, context)
    kit.assert_conforms(out, IcmpProbe)
    assert out.verdict.status == "ok"


@pytest.mark.parametrize("host", [ANSWERING, "::1", "localhost"])
def test_an_answering_host_loses_nothing(context, host):
    status, reason, series = probe(ping(host, count=4, spacing="50ms"), context)
    assert (status, reason, series["vigil_probe_success"], series["vigil_probe_icmp_loss_ratio"]) == ("ok", "", 1, 0)
    low, mean, high = (series[f"vigil_probe_icmp_round_trip_{what}_seconds"] for what in RTT)
    assert 0 < low <= mean <= high
    assert {key for key in series if key.startswith("vigil_probe_duration")} == {
        f"vigil_probe_duration_seconds:{phase}" for phase in ("resolve", "ping", "total")}


def test_a_silent_address_is_down_with_every_ping_lost(context):
    with silent_address() as silent:
        status, reason, series = probe(ping(silent, count=2, wait="300ms"), context)
    assert (status, reason) == ("down", f"no reply to 2 pings from {silent}")
    assert (series["vigil_probe_success"], series["vigil_probe_icmp_loss_ratio"]) == (0, 1)
    assert not [key for key in series if "round_trip" in key]  # no round trip to tell


def test_an_unresolvable_host_says_so(context):
    status, reason, _ = probe(ping(UNRESOLVABLE), context)
    assert status == "down" and reason.startswith(f"cannot resolve {UNRESOLVABLE} (")


def test_no_socket_outlives_a_probe(context):
    assert held_after(ping(ANSWERING), context, "icmp") == 0
    assert held_after(ping("::1"), context, "icmp") == 0
    with silent_address() as silent:  # cut short by its deadline
        assert held_after(ping(silent, count=1, wait="5s", timeout="1s"), context, "icmp") == 0


PROBE_IN_A_NEW_NETWORK_NAMESPACE = """
import asyncio, json, sys
from agent.clock import Clock
from agent.collector import Context, run_once
from agent.ratelimit import RateLimits
from tests import collector_kit as kit
clock = Clock()
context = Context(clock, RateLimits(clock), None, None)
out = asyncio.run(run_once(kit.build({"name": "ping", "kind": "icmp", "host": "127.0.0.1"}, context)))
print(json.dumps([out.verdict.status, out.verdict.detail]))
"""


def test_a_kernel_that_allows_no_unprivileged_ping_names_the_setting():
    """A new network namespace has the kernel's default ping_group_range, "1 0": no group at all."""
    unshare = need("unshare", "apt-get install util-linux")
    done = subprocess.run([unshare, "--net", sys.executable, "-c", PROBE_IN_A_NEW_NETWORK_NAMESPACE],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    status, reason = json.loads(done.stdout)
    assert (status, reason) == ("down", "the kernel does not allow unprivileged ping to this agent's group 0 "
                                        "(net.ipv4.ping_group_range is \"1 0\"): set net.ipv4.ping_group_range = "
                                        "0 2147483647 in /etc/sysctl.d/ and run sysctl --system")

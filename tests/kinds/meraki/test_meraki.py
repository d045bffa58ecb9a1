"""kind: meraki against the Dashboard API contract fake (tests/fakes/meraki.py) on loopback HTTPS."""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest

from agent.collector import run_once
from collectors.meraki.api import Client, MerakiError
from collectors.meraki.collector import MerakiCollector
from tests.collector_kit import assert_conforms, build, collect, values
from tests.fakes.meraki import MODELS, ROUTES, make_org

LICENSES = "/organizations/{org}/licenses/overview"
AVAILABILITIES = "/organizations/{org}/devices/availabilities"
INVENTORY = "/organizations/{org}/devices"
STATUSES = ("online", "alerting", "offline", "dormant")


def one(out, name: str, **labels) -> float:
    """The value of the one series of `name` whose labels include `labels`."""
    found = [value for key, value in values(out, name).items() if set(labels.items()) <= set(key)]
    assert len(found) == 1, f"{name}{labels}: {len(found)} series"
    return found[0]


def test_conformance(meraki_conformance, context):
    out = collect(meraki_conformance, context)
    assert_conforms(out, MerakiCollector)


def test_values_are_mapped_from_the_documented_answers(meraki_fakes, meraki_target, context):
    org = make_org("1001", "Acme", networks=4, devices=60, offline_every=3)
    fake = meraki_fakes([org])
    out = collect(meraki_target(fake, wireless_channel_utilization=True, switch_port_statuses=True,
                                assurance_alerts=True), context)
    assert not out.errors
    assert one(out, "vigil_meraki_organization_info", org="1001") == 1
    assert one(out, "vigil_meraki_networks", org="1001") == 4

    offline = next(d for d in org.devices if d["status"] == "offline" and d["productType"] == "wireless")
    network = next(n["name"] for n in org.networks if n["id"] == offline["networkId"])
    series = {status: one(out, "vigil_meraki_device_status", serial=offline["serial"], status=status)
              for status in STATUSES}
    assert series == {"online": 0, "alerting": 0, "offline": 1, "dormant": 0}
    assert one(out, "vigil_meraki_device_status", serial=offline["serial"], status="offline",
               network=network, device=offline["name"], model="MR34", product_type="wireless") == 1

    for kind in MODELS:  # wirelessController, campusGateway and secureConnect too
        for status in STATUSES:
            expected = sum(1 for d in org.devices if d["productType"] == kind and d["status"] == status)
            assert one(out, "vigil_meraki_devices", product_type=kind, status=status) == expected
    controller = next(d for d in org.devices if d["productType"] == "wirelessController")
    assert one(out, "vigil_meraki_device_status", serial=controller["serial"], status=controller["status"],
               model="CW9800H1", product_type="wirelessController") == 1

    down = next(d for d in org.devices if d["productType"] == "appliance" and d["status"] == "offline")
    assert one(out, "vigil_meraki_uplink_status", serial=down["serial"], uplink="wan1", status="failed") == 1
    assert one(out, "vigil_meraki_uplink_status", serial=down["serial"], uplink="wan1", status="active") == 0
    assert one(out, "vigil_meraki_uplink_status", serial=down["serial"], uplink="wan2",
               status="not connected", device=down["name"]) == 1

    # the fake's appliance 1: loss 0.5 %, latency 20 + 1 + n ms at n = 0..4 minutes ago
    mx = next(d for d in org.devices if d["name"] == "appliance-00001")
    assert one(out, "vigil_meraki_uplink_loss_ratio", serial=mx["serial"], uplink="wan1", ip="8.8.8.8") \
        == pytest.approx(0.005)
    assert one(out, "vigil_meraki_uplink_latency_seconds", serial=mx["serial"], uplink="wan1") \
        == pytest.approx(0.023)
    assert not [key for key in values(out, "vigil_meraki_uplink_loss_ratio") if ("serial", down["serial"]) in key]

    assert one(out, "vigil_meraki_license_ok", org="1001") == 1
    assert one(out, "vigil_meraki_license_expiration_timestamp_seconds", org="1001") \
        == datetime(2030, 2, 8, tzinfo=UTC).timestamp()
    switches = sum(1 for d in org.devices if d["productType"] == "switch")
    assert one(out, "vigil_meraki_licensed_devices", license="MS") == switches - 1
    assert one(out, "vigil_meraki_devices_over_license", license="MS") == 1
    assert one(out, "vigil_meraki_devices_over_license", license="MR") == 0

    switch = next(d for d in org.devices if d["productType"] == "switch")
    ports = {status: one(out, "vigil_meraki_switch_ports", serial=switch["serial"], status=status)
             for status in ("connected", "disconnected", "disabled")}
    assert ports == {"connected": 5, "disconnected": 2, "disabled": 1}
    alerts = {s: one(out, "vigil_meraki_assurance_alerts", severity=s)
              for s in ("critical", "warning", "informational")}
    assert alerts == {"critical": 1, "warning": 2, "informational": 1}
    ap = next(d for d in org.devices if d["productType"] == "wireless")
    assert one(out, "vigil_meraki_wireless_channel_utilization_ratio", serial=ap["serial"], band="2.4",
               type="total") == pytest.approx(0.615)
    assert one(out, "vigil_meraki_wireless_channel_utilization_ratio", serial=ap["serial"], band="5",
               type="non_wifi") == pytest.approx(0.0184)


def test_lists_are_read_across_pages(meraki_fakes, meraki_target, context):
    org = make_org("1002", "Big", networks=5, devices=2500)
    fake = meraki_fakes([org])
    out = collect(meraki_target(fake, switch_port_statuses=True, requests_per_second=10, timeout="50s"), context)
    assert not out.errors
    pages = [seen for seen in fake.calls() if seen.path == AVAILABILITIES]
    assert [seen.query.get("perPage") for seen in pages] == [["1000"]] * 3
    assert [seen.query.get("startingAfter") is not None for seen in pages] == [False, True, True]
    assert [seen.query.get("perPage") for seen in fake.calls() if seen.path == INVENTORY] == [["5000"]]
    serials = {dict(key)["serial"]: dict(key)["model"] for key in values(out, "vigil_meraki_device_status")}
    assert serials == {d["serial"]: d["model"] for d in org.devices}
    switches = [d for d in org.devices if d["productType"] == "switch"]
    port_pages = [seen for seen in fake.calls() if seen.path.endswith("bySwitch")]
    assert len(port_pages) == -(-len(switches) // 20)
    assert {dict(key)["serial"] for key in values(out, "vigil_meraki_switch_ports")} == {d["serial"] for d in switches}


def test_api_calls_per_cycle_do_not_grow_with_devices(meraki_fakes, meraki_target, context):
    calls = {}
    for devices in (10, 1000, 1001):
        fake = meraki_fakes([make_org("1003", "Sized", networks=5, devices=devices)])
        out = collect(meraki_target(fake, timeout="50s"), context)
        assert not out.errors
        calls[devices] = sorted(seen.path for seen in fake.calls())
    assert calls[10] == calls[1000], calls  # one page of each list: the same calls for 10 and 1,000 devices
    # 1,001 devices: a second page of availabilities (1,000 a page; the inventory's pages hold 5,000)
    assert Counter(calls[1001]) - Counter(calls[1000]) == Counter([AVAILABILITIES])


def test_no_device_is_left_out_of_the_counts(meraki_fakes, meraki_target, context):
    """Every product type the Dashboard has, and one it may add later, is counted as itself."""
    org = make_org("1010", "Everything", networks=3, devices=60)
    future = org.add_device("holographicGateway", "HG1", status="offline")
    fake = meraki_fakes([org])
    out = collect(meraki_target(fake), context)
    assert not out.errors
    counted = values(out, "vigil_meraki_devices")
    assert sum(counted.values()) == len(org.devices)
    for kind in {d["productType"] for d in org.devices}:
        assert sum(v for key, v in counted.items() if dict(key)["product_type"] == kind) \
            == sum(1 for d in org.devices if d["productType"] == kind), kind
    assert one(out, "vigil_meraki_devices", product_type="holographicGateway", status="offline") == 1
    assert one(out, "vigil_meraki_device_status", serial=future["serial"], status="offline", model="HG1",
               product_type="holographicGateway") == 1


def test_only_current_operations_are_called_with_documented_parameters(meraki_fakes, meraki_target, context):
    """The fake refuses what the spec does not document; a full cycle never meets a refusal."""
    fake = meraki_fakes([make_org("1011", "Documented", networks=3, devices=40)])
    out = collect(meraki_target(fake, wireless_channel_utilization=True, switch_port_statuses=True,
                                assurance_alerts=True), context)
    assert not out.errors
    assert {seen.status for seen in fake.calls()} == {200}
    assert {seen.path for seen in fake.calls()} == set(ROUTES)
    assert not [seen for seen in fake.calls() if "statuses" in seen.path and "uplinks" not in seen.path
                and "bySwitch" not in seen.path]  # getOrganizationDevicesStatuses is deprecated


@pytest.mark.parametrize("path, query", [
    ("/organizations/1012/devices/availabilities", {"models[]": "MR34"}),  # statuses took models[]; this does not
    ("/organizations/1012/licenses/overview", {"perPage": "10"}),
    ("/organizations/1012/devices/statuses", {}),  # deprecated: not served here
])
def test_the_fake_refuses_what_the_spec_does_not_document(meraki_fakes, meraki_pki, path, query):
    fake = meraki_fakes([make_org("1012", "Strict")])
    response = httpx.get(fake.url + path, params=query, headers={"Authorization": "Bearer test-key"},
                         verify=ssl.create_default_context(cafile=meraki_pki.ca))
    assert response.status_code in (400, 404)
    assert isinstance(response.json()["errors"], list) and response.json()["errors"]
    if query:
        assert response.status_code == 400 and next(iter(query)) in response.json()["errors"][0]


def test_a_429_storm_is_ridden_out_without_losing_the_cycle(meraki_fakes, meraki_target, context):
    fake = meraki_fakes([make_org("1004", "Busy", networks=3, devices=30)], rate=2, burst=2)
    out = collect(meraki_target(fake, requests_per_second=10, timeout="50s"), context)
    assert not out.errors
    assert fake.calls(429), "the fake's budget was never exceeded: the test proves nothing"
    assert values(out, "vigil_meraki_device_status")
    throttled = sum(count for (api, code), count in context.api.requests().items()
                    if api.startswith("org 1004 ") and code == "429")
    assert throttled == len(fake.calls(429))


def test_two_organizations_keep_separate_budgets(meraki_fakes, meraki_target, context):
    fake = meraki_fakes([make_org("2001", "One", networks=3, devices=30), make_org("2002", "Two", networks=3,
                                                                                 devices=30)], rate=4, burst=4)
    out = collect(meraki_target(fake, requests_per_second=3, timeout="50s"), context)
    assert not out.errors and not fake.calls(429)
    both = sorted(seen.at for seen in fake.calls() if seen.org)
    assert {seen.org for seen in fake.calls() if seen.org} == {"2001", "2002"}
    assert fake.peak_rate("2001") <= 4 and fake.peak_rate("2002") <= 4  # paced at 3/s, +1 for arrival jitter
    overlapping = max(sum(1 for at in both if start <= at < start + 1) for start in both)
    assert overlapping > 4, "the two organizations' calls did not overlap: one shared budget?"


def test_a_bad_key_is_a_clear_reason(meraki_fakes, meraki_target, context):
    fake = meraki_fakes([make_org("1005", "Acme")])
    with pytest.raises(MerakiError) as caught:
        collect(meraki_target(fake, key="not-the-key"), context)
    message = str(caught.value)
    assert "401" in message and "api_key" in message and "Invalid API key" in message
    assert "not-the-key" not in message
    assert context.api.requests() == {("organizations", "401"): 1}


def test_a_failing_licence_endpoint_keeps_the_device_statuses(meraki_fakes, meraki_target, context):
    fake = meraki_fakes([make_org("1006", "Acme")])
    fake.fail_next(500, count=5, path=LICENSES)
    out = collect(meraki_target(fake), context)
    assert set(out.errors) == {"licenses"}
    assert "licenses/overview" in out.errors["licenses"] and "HTTP 500" in out.errors["licenses"]
    assert values(out, "vigil_meraki_device_status") and values(out, "vigil_meraki_uplink_status")
    assert not values(out, "vigil_meraki_license_expiration_timestamp_seconds")


def test_malformed_json_fails_its_signal_only(meraki_fakes, meraki_target, context):
    fake = meraki_fakes([make_org("1007", "Acme")])
    fake.malformed_next(path="/organizations/{org}/uplinks/statuses")
    fake.malformed_next(b'[{"serial": 5}]', path="/organizations/{org}/devices/uplinksLossAndLatency")
    out = collect(meraki_target(fake), context)
    assert set(out.errors) == {"uplinks", "uplink_quality"}
    assert "not valid JSON" in out.errors["uplinks"]
    assert "unexpected answer (0.serial" in out.errors["uplink_quality"]
    assert values(out, "vigil_meraki_device_status")


def test_5xx_and_timeouts_are_retried(meraki_fakes, meraki_target, context):
    fake = meraki_fakes([make_org("1008", "Acme")])
    fake.fail_next(503, count=2, path=AVAILABILITIES)
    fake.hang_next(4, path=LICENSES)
    out = collect(meraki_target(fake, deadline="9s", timeout="20s"), context)  # 3 s a request
    assert not out.errors
    assert [seen.status for seen in fake.calls() if seen.path == AVAILABILITIES] == [503, 503, 200]
    counted = context.api.requests()
    assert counted[("org 1008 devices", "503")] == 2 and counted[("org 1008 licenses", "timeout")] == 1


def test_a_cycle_out_of_time_reports_what_it_has(meraki_fakes, meraki_target, context):
    fake = meraki_fakes([make_org("1009", "Acme")])
    fake.hang_next(5, count=4, path=LICENSES)
    out = collect(meraki_target(fake, deadline="2s", timeout="20s", requests_per_second=10), context)
    assert set(out.errors) == {"licenses"}
    assert "not finished within the 2s deadline" in out.errors["licenses"]
    assert values(out, "vigil_meraki_device_status")


def test_one_failing_organization_keeps_the_others(meraki_fakes, meraki_target, context):
    fake = meraki_fakes([make_org("3001", "Good"), make_org("3002", "Bad")])
    fake.fail_next(500, count=1, path="/organizations/{org}/uplinks/statuses")
    out = collect(meraki_target(fake), context)
    assert not out.errors
    success = {dict(key)["org"]: value for key, value in values(out, "vigil_meraki_collect_success").items()
               if dict(key)["signal"] == "uplinks"}
    assert sorted(success.values()) == [0, 1]
    good = next(org for org, ok in success.items() if ok)
    assert {dict(key)["org"] for key in values(out, "vigil_meraki_uplink_status")} == {good}
    assert {dict(key)["org"] for key in values(out, "vigil_meraki_device_status")} == {"3001", "3002"}


def test_configured_organizations_and_disabled_api_access(meraki_fakes, meraki_target, context):
    fake = meraki_fakes([make_org("4001", "A"), make_org("4002", "B")])
    out = collect(meraki_target(fake, organizations=["4002", "9999"]), context)
    assert {dict(key)["org"] for key in values(out, "vigil_meraki_organization_info")} == {"4002"}
    assert not [seen for seen in fake.calls() if seen.org == "4001"]
    with pytest.raises(MerakiError, match="sees none of the organizations"):
        collect(meraki_target(fake, organizations=["9999"]), context)


def test_optional_groups_are_off_by_default_and_licences_are_slow(meraki_fakes, meraki_target, context):
    fake = meraki_fakes([make_org("5001", "A")])
    collector = build(meraki_target(fake), context)
    signals = collector.signals()
    assert set(signals) == {"main", "devices", "uplinks", "uplink_quality", "licenses"}
    assert signals["licenses"].every == 3600
    out = asyncio.run(run_once(collector, due=frozenset({"main", "devices"}), strict=True))
    assert out.ran == {"main", "devices"}
    paths = {seen.path.rsplit("/", 1)[-1] for seen in fake.calls()}
    assert paths == {"organizations", "networks", "availabilities", "devices"}


def test_the_config_refuses_plain_http_and_inline_keys(meraki_fakes, meraki_target, context):
    fake = meraki_fakes([make_org("5002", "A")])
    with pytest.raises(Exception, match="https://"):
        build({**meraki_target(fake), "base_url": "http://api.meraki.com/api/v1"}, context)
    with pytest.raises(Exception, match="secret reference"):
        build({**meraki_target(fake), "api_key": "0123456789abcdef"}, context)


def test_next_links_leave_neither_the_host_nor_https():
    client = Client(None, "https://api.meraki.com/api/v1")

    def page(link: str) -> httpx.Response:
        return httpx.Response(200, headers={"Link": f"<{link}>; rel=next"}, content=b"[]")

    assert client._next(page("https://n42.meraki.com/api/v1/x?startingAfter=a"), "x")
    assert client._next(page("https://api.meraki.com/api/v1/x?startingAfter=a"), "x")
    for link in ("https://evil.example/api/v1/x", "http://api.meraki.com/api/v1/x", "https://meraki.com.evil.io/"):
        with pytest.raises(MerakiError, match="not followed"):
            client._next(page(link), "x")



def test_the_deadline_stays_inside_the_jobs_timeout(meraki_fakes, meraki_target, context):
    fake = meraki_fakes([make_org("5003", "A")])
    deadline = {options: build(meraki_target(fake, **dict(options)), context).deadline
                for options in ((), (("timeout", "10s"),), (("interval", "15s"),), (("deadline", "5s"),))}
    assert list(deadline.values()) == [16, 8, pytest.approx(9.6), 5]
    with pytest.raises(Exception, match="deadline must be shorter than the timeout"):
        build(meraki_target(fake, timeout="5s", deadline="5s"), context)


def test_disabled_api_access_and_other_licensing_models(meraki_fakes, meraki_target, context):
    disabled, per_device = make_org("6001", "Closed"), make_org("6002", "Per device")
    disabled.api_enabled, per_device.licensing = False, "per-device"
    fake = meraki_fakes([disabled, per_device])
    out = collect(meraki_target(fake), context)
    assert not out.errors
    assert {dict(key)["org"] for key in values(out, "vigil_meraki_organization_info")} == {"6002"}
    assert not [seen for seen in fake.calls() if seen.org == "6001"]
    assert not [seen for seen in fake.calls() if seen.path.endswith("licenses/overview")]
    assert not values(out, "vigil_meraki_license_ok")
    with pytest.raises(MerakiError, match="API access is disabled"):
        collect(meraki_target(fake, organizations=["6001"]), context)


def test_tls_trusts_the_ca_file_over_the_environment(meraki_fakes, meraki_target, context, tmp_path, monkeypatch):
    from tests.lab.pki import make_pki

    other = make_pki(tmp_path / "other-ca")
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(name, str(other.ca))
    fake = meraki_fakes([make_org("6003", "A")])
    assert not collect(meraki_target(fake), context).errors
    target = meraki_target(fake)
    del target["ca_file"]
    with pytest.raises(MerakiError, match="not trusted.*ca_file"):
        collect(target, context)

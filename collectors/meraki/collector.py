"""Cisco Meraki organizations through the Dashboard API v1, inside the rate limit at any size.

Meraki exporters that poll per network or per device hit 429s at a few hundred networks.
This reads only organization-wide endpoints, paged at their maximum `perPage`, so a cycle
costs a fixed handful of calls per organization (plus one per 1,000 devices), whatever
the number of networks. Every call of an organization waits for that organization's
token bucket (`requests_per_second`, default 5 of the 10/s that every application of
the organization shares; two vigil targets on one organization share one bucket), and
429s are retried after Retry-After.

Each endpoint group is a signal, so a failing licence endpoint keeps the device
statuses. Device statuses come from devices/availabilities and names and models from the
device inventory, both organization-wide and paged: the devices/statuses operation they
replace is deprecated (Dashboard API, October 2024). Organizations are read concurrently, each one's groups in turn; an
organization that fails a group is marked in `vigil_meraki_collect_success` and the
others keep their data (the signal fails only when every organization failed it). A
cycle that runs out of its `deadline` reports what it has and names what it did not
finish, instead of hanging until the job's timeout drops everything.

Requests are counted in the agent's `vigil_api_requests_total{api,code}` with
`api="org <id> <group>"` (and `api="organizations"` for the list of organizations): one
series per organization, endpoint group and status, bounded, and it survives a failed
run.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.collector import MAIN, Collector, Emitter, Signal, describe
from agent.reasons import shorten
from collectors.meraki import api as shape
from collectors.meraki.api import Client, MerakiError
from collectors.meraki.config import MerakiConfig
from collectors.meraki.metrics import (
    ALERT_SEVERITIES,
    ASSURANCE_ALERTS,
    CHANNEL_UTILIZATION,
    COLLECT_SUCCESS,
    CONDITIONS,
    DEVICE_STATUS,
    DEVICE_STATUSES,
    DEVICES,
    LICENSE_EXPIRATION,
    LICENSE_OK,
    LICENSED_DEVICES,
    METRICS,
    NETWORKS,
    ORG_INFO,
    OVER_LICENSE,
    PORT_STATUSES,
    PRODUCT_TYPES,
    SWITCH_PORTS,
    UPLINK_LATENCY,
    UPLINK_LOSS,
    UPLINK_STATUS,
    UPLINK_STATUSES,
    UTILIZATION,
)

log = logging.getLogger(__name__)

LOSS_TIMESPAN = 300  # seconds: the most uplinksLossAndLatency allows
CHANNEL_TIMESPAN = 1800  # seconds: channel utilisation is averaged over the last half hour


# --- one organization's cycle -------------------------------------------------------------------

@dataclass
class _OrgRun:
    """What one organization's groups returned this cycle: data, or the reason they failed."""

    org: shape.Org
    networks: dict[str, str] = field(default_factory=dict)  # id -> name
    product_types: set[str] = field(default_factory=set)
    devices: dict[str, shape.Device] = field(default_factory=dict)  # serial -> inventory record, when read
    data: dict[str, Any] = field(default_factory=dict)  # signal -> what it read
    errors: dict[str, str] = field(default_factory=dict)  # signal (or main) -> why it failed

    def network(self, network_id: str | None) -> str:
        return self.networks.get(network_id or "", network_id or "")

    def device(self, serial: str) -> str:
        known = self.devices.get(serial)
        return (known.name if known and known.name else "") or serial


class MerakiCollector(Collector[MerakiConfig]):
    """Reads every configured organization's devices, uplinks and licences each cycle."""

    Config = MerakiConfig
    METRICS = METRICS
    CONDITIONS = CONDITIONS
    SIGNALS = {
        MAIN: Signal(help="organizations and networks"),
        "devices": Signal(help="devices/availabilities and the device inventory (devices)"),
        "uplinks": Signal(help="uplinks/statuses"),
        "uplink_quality": Signal(help="devices/uplinksLossAndLatency"),
        "licenses": Signal(every=3600.0, help="licenses/overview (co-term organizations)"),
        "wireless": Signal(help="wireless channel utilisation by device (optional)"),
        "switch_ports": Signal(help="switch port statuses by switch (optional)"),
        "alerts": Signal(help="assurance alerts (optional)"),
    }
    OPTIONAL = {"wireless": "wireless_channel_utilization", "switch_ports": "switch_port_statuses",
                "alerts": "assurance_alerts"}

    def signals(self) -> Mapping[str, Signal]:
        chosen = {name: signal for name, signal in self.SIGNALS.items()
                  if name not in self.OPTIONAL or getattr(self.config, self.OPTIONAL[name])}
        chosen["licenses"] = Signal(every=self.config.licenses_every, help=self.SIGNALS["licenses"].help)
        return chosen

    @property
    def deadline(self) -> float:
        """80% of the job's timeout (`defaults:` applied), so a cycle ends with its own reasons."""
        return self.config.deadline or 0.8 * self.ctx.timeout

    async def open(self) -> None:
        """One client for the target's life; a request may take a third of the deadline, so a
        cycle survives one timeout and its retry."""
        from agent.net.http import AsyncApi

        key = self.config.api_key.get_secret_value()
        self._api = AsyncApi(self.config.base_url, self.ctx, ca_file=self.config.ca_file,
                             timeout=min(10.0, self.deadline / 3), headers={"Authorization": f"Bearer {key}"},
                             max_retry_wait=self.deadline / 2)
        self._client = Client(self._api, self.config.base_url)

    async def close(self) -> None:
        api = getattr(self, "_api", None)
        if api is not None:
            await api.aclose()

    async def collect(self, out: Emitter, due: frozenset[str]) -> None:
        ends = self.ctx.clock.monotonic() + self.deadline
        try:
            async with asyncio.timeout(self.deadline):  # retries included: a silent host is named as such
                orgs = await self._organizations()
        except TimeoutError:
            raise MerakiError(f"{self._host}: no list of organizations within the {self.deadline:g}s deadline; "
                              "check that the host is up and base_url") from None
        runs = [_OrgRun(org) for org in orgs]
        groups = [name for name in GROUPS if name in due and name in self.signals()]
        tasks = [asyncio.create_task(self._read(run, groups)) for run in runs]
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, ends - self.ctx.clock.monotonic()))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for run in runs:
            for group in [MAIN, *groups]:
                if group not in run.data and group not in run.errors:
                    run.errors[group] = f"not finished within the {self.deadline:g}s deadline"
        self._emit_main(out, runs)
        for group in groups:
            with out.signal(group):
                self._emit_group(out, runs, group)

    # --- reading ----------------------------------------------------------------------------------

    async def _organizations(self) -> list[shape.Org]:
        orgs = await self._client.pages("/organizations", shape.Org, 9000, api="organizations",
                                        what=f"{self._host}: the list of organizations")
        if not self.config.organizations:
            enabled = [org for org in orgs if org.api.enabled]
            if not enabled:
                raise MerakiError(f"{self._host}: the API key sees no organization with API access enabled")
            return enabled
        seen = {org.id: org for org in orgs}
        wanted = list(dict.fromkeys(self.config.organizations))
        missing = [org_id for org_id in wanted if org_id not in seen]
        if len(missing) == len(wanted):
            raise MerakiError(f"{self._host}: the API key sees none of the organizations {missing}; "
                              f"it sees {sorted(seen)[:10]}")
        for org_id in missing:
            log.warning("meraki organization not visible target=%s org=%s", self.ctx.target, org_id)
        return [seen[org_id] for org_id in wanted if org_id in seen]

    @property
    def _host(self) -> str:
        return self.config.base_url.split("/")[2]

    async def _read(self, run: _OrgRun, groups: list[str]) -> None:
        """One organization's groups in turn, each on the organization's own budget."""
        org = run.org
        if not org.api.enabled:
            run.errors[MAIN] = (f"organization {org.id} ({org.name}): API access is disabled; enable it under "
                                "Organization > Settings > Dashboard API access")
            return
        # burst 1: calls are paced evenly, so no one-second window holds more than the share
        bucket = self.ctx.rate_limits.bucket(f"meraki:{org.id}", self.config.requests_per_second, 1)
        try:
            networks = await self._client.pages(f"/organizations/{org.id}/networks", shape.Network, 100000,
                                                api=f"org {org.id} networks", bucket=bucket,
                                                what=f"organization {org.id} networks")
        except Exception as exc:  # one organization's failure, kept with its reason
            run.errors[MAIN] = _reason(exc)
            return
        run.networks = {network.id: network.name for network in networks}
        run.product_types = {kind for network in networks for kind in network.productTypes} & set(PRODUCT_TYPES)
        run.data[MAIN] = networks
        for group in groups:
            try:
                run.data[group] = await READERS[group](self, run, bucket)
            except Exception as exc:  # this group of this organization fails alone
                run.errors[group] = _reason(exc)

    def _get(self, run: _OrgRun, group: str, bucket: Any) -> Callable[..., Awaitable[Any]]:
        org = run.org.id

        def get(path: str, model: Any, per_page: int | None = None, **options: Any) -> Awaitable[Any]:
            what = f"organization {org} {path}"
            url = f"/organizations/{org}/{path}"
            if per_page is None:
                return self._client.get(url, model, api=f"org {org} {group}", what=what, bucket=bucket, **options)
            return self._client.pages(url, model, per_page, api=f"org {org} {group}", what=what, bucket=bucket,
                                      **options)

        return get

    async def _devices(self, run: _OrgRun, bucket: Any) -> list[shape.Availability]:
        """Statuses (1,000 devices a page), and the inventory for names and models (5,000 a page)."""
        get = self._get(run, "devices", bucket)
        statuses = await get("devices/availabilities", shape.Availability, 1000)
        run.devices = {device.serial: device for device in await get("devices", shape.Device, 5000)}
        return statuses

    async def _uplinks(self, run: _OrgRun, bucket: Any) -> list[shape.UplinkDevice]:
        return await self._get(run, "uplinks", bucket)("uplinks/statuses", shape.UplinkDevice, 1000)

    async def _uplink_quality(self, run: _OrgRun, bucket: Any) -> list[shape.LossLatency]:
        return await self._get(run, "uplink_quality", bucket)(
            "devices/uplinksLossAndLatency", list[shape.LossLatency], params={"timespan": LOSS_TIMESPAN})

    async def _licenses(self, run: _OrgRun, bucket: Any) -> shape.License | None:
        if run.org.licensing.model != "co-term":
            return None  # per-device and subscription organizations have no co-term overview
        return await self._get(run, "licenses", bucket)("licenses/overview", shape.License)

    async def _wireless(self, run: _OrgRun, bucket: Any) -> list[shape.Radio]:
        return await self._get(run, "wireless", bucket)("wireless/devices/channelUtilization/byDevice", shape.Radio,
                                                        1000, params={"timespan": CHANNEL_TIMESPAN})

    async def _switch_ports(self, run: _OrgRun, bucket: Any) -> list[shape.Switch]:
        return await self._get(run, "switch_ports", bucket)("switch/ports/statuses/bySwitch", shape.Switch, 20,
                                                            items="items")

    async def _alerts(self, run: _OrgRun, bucket: Any) -> list[shape.Alert]:
        return await self._get(run, "alerts", bucket)("assurance/alerts", shape.Alert, 300)

    # --- emitting ---------------------------------------------------------------------------------

    def _emit_main(self, out: Emitter, runs: list[_OrgRun]) -> None:
        if all(MAIN in run.errors for run in runs):
            raise MerakiError(runs[0].errors[MAIN])
        for run in runs:
            if MAIN in run.errors:
                log.warning("meraki organization failed target=%s org=%s error=%s", self.ctx.target, run.org.id,
                            run.errors[MAIN])
                continue
            out.gauge(ORG_INFO, 1, org=run.org.id, name=run.org.name, licensing=run.org.licensing.model)
            out.gauge(NETWORKS, len(run.networks), org=run.org.id)

    def _emit_group(self, out: Emitter, runs: list[_OrgRun], group: str) -> None:
        """The group's samples of every organization that read it; fails when none did."""
        good = [run for run in runs if group in run.data]
        if not good:
            reasons = {run.errors.get(group) or run.errors.get(MAIN, "") for run in runs}
            raise MerakiError(shorten("; ".join(sorted(reasons)), 600))
        for run in runs:
            ok = group in run.data
            if not ok:
                log.warning("meraki group failed target=%s org=%s signal=%s error=%s", self.ctx.target,
                            run.org.id, group, run.errors.get(group) or run.errors.get(MAIN))
            out.gauge(COLLECT_SUCCESS, int(ok), org=run.org.id, signal=group)
            if ok:
                EMITTERS[group](out, run, run.data[group])


def _emit_devices(out: Emitter, run: _OrgRun, data: list[shape.Availability]) -> None:
    """One-hot status per device, and the counts by product type and status of every device listed."""
    org = run.org.id
    counts: Counter[tuple[str, str]] = Counter()
    for device in data:
        kind, status = device.productType or "unknown", device.status or "unknown"
        counts[kind, status] += 1
        known = run.devices.get(device.serial)
        labels = dict(org=org, network=run.network(device.network.id), device=device.name or run.device(device.serial),
                      serial=device.serial, model=(known.model if known else None) or "", product_type=kind)
        for member in DEVICE_STATUSES:
            out.gauge(DEVICE_STATUS, int(status == member), **labels, status=member)
    statuses = [*DEVICE_STATUSES, *sorted({status for _, status in counts} - set(DEVICE_STATUSES))]
    for kind in sorted(run.product_types | {kind for kind, _ in counts}):
        for status in statuses:
            out.gauge(DEVICES, counts[kind, status], org=org, status=status, product_type=kind)


def _emit_uplinks(out: Emitter, run: _OrgRun, data: list[shape.UplinkDevice]) -> None:
    for device in data:
        for uplink in device.uplinks:
            labels = dict(org=run.org.id, network=run.network(device.networkId), device=run.device(device.serial),
                          serial=device.serial, uplink=uplink.interface)
            for status in UPLINK_STATUSES:
                out.gauge(UPLINK_STATUS, int(uplink.status == status), **labels, status=status)


def _emit_uplink_quality(out: Emitter, run: _OrgRun, data: list[shape.LossLatency]) -> None:
    for probe in data:
        labels = dict(org=run.org.id, network=run.network(probe.networkId), device=run.device(probe.serial),
                      serial=probe.serial, uplink=probe.uplink, ip=probe.ip or "")
        out.gauge(UPLINK_LOSS, _mean((p.lossPercent for p in probe.timeSeries), 0.01), **labels)
        out.gauge(UPLINK_LATENCY, _mean((p.latencyMs for p in probe.timeSeries), 0.001), **labels)


def _emit_licenses(out: Emitter, run: _OrgRun, data: shape.License | None) -> None:
    if data is None:
        return
    org = run.org.id
    out.gauge(LICENSE_OK, int((data.status or "").upper() == "OK"), org=org)
    out.gauge(LICENSE_EXPIRATION, _expiration(data.expirationDate), org=org)
    licensed = data.licensedDeviceCounts or {}
    for key, count in licensed.items():
        out.gauge(LICENSED_DEVICES, count, org=org, license=key)
    if not run.devices:
        return  # device statuses failed this cycle: the overage cannot be counted
    used = dict.fromkeys(licensed, 0)
    for device in run.devices.values():
        key = max((key for key in licensed if (device.model or "").startswith(key)), key=len, default=None)
        if key is not None:
            used[key] += 1
    for key, count in licensed.items():
        out.gauge(OVER_LICENSE, max(0, used[key] - count), org=org, license=key)


def _emit_wireless(out: Emitter, run: _OrgRun, data: list[shape.Radio]) -> None:
    for radio in data:
        labels = dict(org=run.org.id, network=run.network(radio.network.id), device=run.device(radio.serial),
                      serial=radio.serial)
        for band in radio.byBand:
            for field_name, kind in UTILIZATION:
                percentage = getattr(band, field_name).percentage
                out.gauge(CHANNEL_UTILIZATION, None if percentage is None else percentage / 100, **labels,
                          band=band.band, type=kind)


def _emit_switch_ports(out: Emitter, run: _OrgRun, data: list[shape.Switch]) -> None:
    for switch in data:
        counts = dict.fromkeys(PORT_STATUSES, 0)
        for port in switch.ports:
            status = (port.status or "").lower()
            if status in counts:
                counts[status] += 1
        for status, count in counts.items():
            out.gauge(SWITCH_PORTS, count, org=run.org.id, network=run.network(switch.network.id),
                      device=switch.name or run.device(switch.serial), serial=switch.serial, status=status)


def _emit_alerts(out: Emitter, run: _OrgRun, data: list[shape.Alert]) -> None:
    counts = dict.fromkeys(ALERT_SEVERITIES, 0)
    for alert in data:
        if alert.severity in counts:
            counts[alert.severity] += 1
    for severity, count in counts.items():
        out.gauge(ASSURANCE_ALERTS, count, org=run.org.id, severity=severity)


def _reason(exc: Exception) -> str:
    """A MerakiError says it all; anything else (a bug) is named by its type too."""
    return str(exc) if isinstance(exc, MerakiError) else describe(exc)


def _mean(values: Any, scale: float) -> float | None:
    """The mean of the points the API has (it leaves a gap as null), in base units."""
    numbers = [value for value in values if value is not None]
    return scale * sum(numbers) / len(numbers) if numbers else None


def _expiration(text: str | None) -> float | None:
    """'Feb 8, 2020 UTC', the overview's format, as epoch seconds; None for 'N/A' and the like."""
    try:
        return datetime.strptime((text or "").replace(" UTC", ""), "%b %d, %Y").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


READERS: dict[str, Callable[[MerakiCollector, _OrgRun, Any], Awaitable[Any]]] = {
    "devices": MerakiCollector._devices, "uplinks": MerakiCollector._uplinks,
    "uplink_quality": MerakiCollector._uplink_quality, "licenses": MerakiCollector._licenses,
    "wireless": MerakiCollector._wireless, "switch_ports": MerakiCollector._switch_ports,
    "alerts": MerakiCollector._alerts,
}
EMITTERS: dict[str, Callable[[Emitter, _OrgRun, Any], None]] = {
    "devices": _emit_devices, "uplinks": _emit_uplinks, "uplink_quality": _emit_uplink_quality,
    "licenses": _emit_licenses, "wireless": _emit_wireless, "switch_ports": _emit_switch_ports,
    "alerts": _emit_alerts,
}
GROUPS = tuple(READERS)  # the order an organization's groups are read in: devices first, for names

"""The `vigil_meraki_*` catalogue: every family carries `org`; the values of its status labels; its rules."""

from agent.model import Condition, MetricSpec

DEVICE_STATUSES = ("online", "alerting", "offline", "dormant")
UPLINK_STATUSES = ("active", "ready", "connecting", "not connected", "failed")
# The product types devices/availabilities reports (spec v1.72.0); every device is counted under its own
# type, one not listed here too: these only give a network's product types their zero counts.
PRODUCT_TYPES = ("appliance", "camera", "campusGateway", "cellularGateway", "secureConnect", "sensor", "switch",
                 "wireless", "wirelessController")
PORT_STATUSES = ("connected", "disconnected", "disabled")
ALERT_SEVERITIES = ("critical", "warning", "informational")
UTILIZATION = (("wifi", "wifi"), ("nonWifi", "non_wifi"), ("total", "total"))


def _spec(name: str, help: str, labels: tuple[str, ...], unit: str = "") -> MetricSpec:
    return MetricSpec(name, "gauge", help, ("org", *labels), unit)


ORG_INFO = _spec("vigil_meraki_organization_info", "A Meraki organization the API key reads (value 1).",
                 ("name", "licensing"))
NETWORKS = _spec("vigil_meraki_networks", "Networks in the organization.", ())
COLLECT_SUCCESS = _spec("vigil_meraki_collect_success",
                        "1 when the organization's endpoint group was read this cycle, 0 when it failed.",
                        ("signal",))
DEVICE_STATUS = _spec("vigil_meraki_device_status",
                      "Device status, one-hot (online, alerting, offline, dormant), from devices/availabilities; "
                      "the model from the device inventory (devices).",
                      ("network", "device", "serial", "model", "product_type", "status"))
DEVICES = _spec("vigil_meraki_devices",
                "Devices by status and product type, counted from devices/availabilities; a product type or status "
                "vigil does not know is counted under its own name.", ("status", "product_type"))
UPLINK_STATUS = _spec("vigil_meraki_uplink_status",
                      "Appliance and gateway uplink status, one-hot (active, ready, connecting, not connected, "
                      "failed).", ("network", "device", "serial", "uplink", "status"))
UPLINK_LOSS = _spec("vigil_meraki_uplink_loss_ratio",
                    "Packet loss to the uplink's probe destination, mean over the last 5 minutes.",
                    ("network", "device", "serial", "uplink", "ip"), "ratio")
UPLINK_LATENCY = _spec("vigil_meraki_uplink_latency_seconds",
                       "Latency to the uplink's probe destination, mean over the last 5 minutes.",
                       ("network", "device", "serial", "uplink", "ip"), "seconds")
LICENSE_OK = _spec("vigil_meraki_license_ok", "1 when the co-term licence status is OK.", ())
LICENSE_EXPIRATION = _spec("vigil_meraki_license_expiration_timestamp_seconds",
                           "When the organization's co-term licence expires.", (), "seconds")
LICENSED_DEVICES = _spec("vigil_meraki_licensed_devices", "Devices the co-term licence covers, by licence type.",
                         ("license",))
OVER_LICENSE = _spec("vigil_meraki_devices_over_license",
                     "Devices of a licence type beyond the number the licence covers.", ("license",))
CHANNEL_UTILIZATION = _spec("vigil_meraki_wireless_channel_utilization_ratio",
                            "Access point channel utilisation by band and source, mean over the last 30 minutes.",
                            ("network", "device", "serial", "band", "type"), "ratio")
SWITCH_PORTS = _spec("vigil_meraki_switch_ports", "Switch ports by status (connected, disconnected, disabled).",
                     ("network", "device", "serial", "status"))
ASSURANCE_ALERTS = _spec("vigil_meraki_assurance_alerts", "Active assurance alerts by severity.", ("severity",))

# deploy/prometheus/rules/meraki.yml
CONDITIONS = (
    Condition("MerakiApplianceOffline", "critical",
              'vigil_meraki_device_status{product_type="appliance", status="offline"} == 1',
              "appliance {device} offline"),
    Condition("MerakiDeviceOffline", "warning",
              'vigil_meraki_device_status{product_type!="appliance", status="offline"} == 1', "{device} offline"),
    Condition("MerakiDeviceAlerting", "warning", 'vigil_meraki_device_status{status="alerting"} == 1',
              "{device} alerting"),
    Condition("MerakiUplinkFailed", "warning", 'vigil_meraki_uplink_status{status="failed"} == 1',
              "uplink {uplink} of {device} failed"),
    Condition("MerakiUplinkLossHigh", "warning", "vigil_meraki_uplink_loss_ratio > 0.05",
              "uplink {uplink} of {device} losing {value:percent}"),
    Condition("MerakiUplinkLatencyHigh", "warning", "vigil_meraki_uplink_latency_seconds > 0.2",
              "uplink {uplink} of {device} at {value:ms}"),
    Condition("MerakiLicenseExpiringSoon", "warning",
              "vigil_meraki_license_expiration_timestamp_seconds - time() < 30 * 86400",
              "licence of {org} {value:expires}"),
    Condition("MerakiLicenseNotOk", "warning", "vigil_meraki_license_ok == 0", "licence of {org} not ok"),
    Condition("MerakiApiFailing", "warning",
              'vigil_meraki_collect_success == 0 or label_replace(vigil_collect_signal_success{kind="meraki", '
              'signal!="main"} == 0, "org", "all", "", "")', "API failing for {org} ({signal})"),
    Condition("MerakiApiThrottled", "warning",
              'sum by (job, instance, target) (rate(vigil_api_requests_total{kind="meraki", code="429"}[15m])) > 0.05',
              "API throttled", not_judged="a rate over 15 min of samples"),
)

METRICS = (ORG_INFO, NETWORKS, COLLECT_SUCCESS, DEVICE_STATUS, DEVICES, UPLINK_STATUS, UPLINK_LOSS,
           UPLINK_LATENCY, LICENSE_OK, LICENSE_EXPIRATION, LICENSED_DEVICES, OVER_LICENSE,
           CHANNEL_UTILIZATION, SWITCH_PORTS, ASSURANCE_ALERTS)

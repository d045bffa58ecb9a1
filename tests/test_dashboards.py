"""The Grafana dashboards and provisioning under deploy/grafana.

Static checks (valid JSON, unique ids, the datasource variable, only catalogued metric
names) run everywhere. The main test runs every panel's every query, with its template
variables filled the way Grafana fills them, against a real Prometheus scraping a real
agent (a host target, a Linux and a Windows server over SSH, a Meraki target on the Dashboard
API fake, an SNMP and a NUT UPS, an m365 tenant on the Graph contract fake, a vCenter simulated
by vcsim, a restic job with an off-site copy, verification and restore drills, a borg job, probes of the lab's nginx
(http, tcp), dnsmasq, loopback (ping) and the PostgreSQL and MariaDB replicas), and requires that each one
succeeds and returns data.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from dataclasses import dataclass

import pytest
import yaml

from tests.conftest import ROOT, vigil_argv
from tests.lab.harness import Peer, free_port, http_get, wait_until

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = {"vigil-overview", "vigil-servers", "vigil-backups", "vigil-meraki", "vigil-ups",
              "vigil-m365", "vigil-vmware", "vigil-services"}
DASHBOARD_DIR = "/var/lib/grafana/dashboards/vigil"  # where the provider reads them; the installer copies them
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Grafana's built-in variables, as Grafana would fill them for a range of the last minute
# with 1 s scrapes: $__rate_interval = max($__interval + scrape interval, 4 x scrape interval),
# rounded up here to a comfortable 15 s.
RANGE = 60
STEP = 2
BUILTINS = {"__interval": f"{STEP}s", "__interval_ms": str(STEP * 1000), "__rate_interval": "15s",
            "__range": f"{RANGE}s", "__range_s": str(RANGE), "__range_ms": str(RANGE * 1000)}
# Metrics the agent emits only where the host has the thing: a panel on one of these may be
# empty, but only when the agent under test does not export the metric at all.
ENVIRONMENT_DEPENDENT = {"vigil_server_systemd_failed_units": "emitted on systemd hosts only"}

VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)")
METRIC = re.compile(r"\bvigil_\w+")
RANGE_FUNCTION = re.compile(r"\b(?:rate|irate|increase)\s*\([^\[]*\[([^\]]+)\]")


def load(name: str) -> dict:
    return json.loads((GRAFANA / "dashboards" / f"{name}.json").read_text())


def panels(dashboard: dict) -> list[dict]:
    """Every panel, rows and the panels of collapsed rows included."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return found


def queries(dashboard: dict) -> list[tuple[dict, dict]]:
    return [(panel, target) for panel in panels(dashboard) for target in panel.get("targets", [])]


def variable_query(variable: dict) -> str:
    query = variable.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else query


def catalogue() -> set[str]:
    return set(re.findall(r"^\| `(vigil_\w+)`", (ROOT / "docs" / "metrics.md").read_text(), re.MULTILINE))


def test_the_dashboards_are_all_there():
    assert {path.stem for path in (GRAFANA / "dashboards").iterdir()} == DASHBOARDS
    uids = [load(name)["uid"] for name in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_the_dashboard_is_well_formed(name):
    text = (GRAFANA / "dashboards" / f"{name}.json").read_text()
    dashboard = json.loads(text)
    assert text == json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n", "keep the JSON in 2-space form"
    assert dashboard["title"] and dashboard["uid"] == name and len(dashboard["uid"]) <= 40
    assert dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    for panel in panels(dashboard):
        where = f"{name} panel {panel['id']} {panel.get('title')!r}"
        assert panel.get("title") and panel["type"], where
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, where
        if panel["type"] == "row":
            assert not panel.get("targets"), where
            continue
        assert panel["targets"], f"{where} has no query"
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), where
        for thing in (panel, *panel["targets"]):
            assert thing.get("datasource", DATASOURCE) == DATASOURCE, f"{where}: use the ${{datasource}} variable"
        for target in panel["targets"]:
            assert target["expr"].strip(), where
            for window in RANGE_FUNCTION.findall(target["expr"]):
                assert window == "$__rate_interval", f"{where}: rate windows are $__rate_interval, not {window}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_the_dashboard_uses_its_variables_and_only_catalogued_metrics(name):
    dashboard = load(name)
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
    texts = [target["expr"] for _, target in queries(dashboard)]
    texts += [variable_query(variable) for variable in variables.values() if variable["type"] == "query"]
    known = catalogue()
    for text in texts:
        assert set(METRIC.findall(text)) <= known, f"not in docs/metrics.md: {set(METRIC.findall(text)) - known}"
        for match in VARIABLE.finditer(text):
            variable = next(group for group in match.groups() if group)
            assert variable in variables or variable in BUILTINS or variable.isdigit(), \
                f"{name}: unknown variable ${variable} in {text!r}"
        for variable in variables.values():
            if variable.get("multi") or variable.get("includeAll"):
                assert not re.search(rf'[^=!~]=\s*"\$\{{?{variable["name"]}\b', text), \
                    f"{name}: the multi-value ${variable['name']} needs =~, not =, in {text!r}"


def test_the_required_variables():
    hosts = {variable["name"]: variable for variable in load("vigil-servers")["templating"]["list"]}
    assert variable_query(hosts["target"]) == "label_values(vigil_server_cpus, target)" and hosts["target"]["multi"]
    backups = {variable["name"]: variable for variable in load("vigil-backups")["templating"]["list"]}
    assert variable_query(backups["backup"]) == "label_values(vigil_backup_status, backup)"


def test_the_provisioning_files():
    dashboards = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "vigil.yml").read_text())
    assert dashboards["apiVersion"] == 1
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file" and provider["folder"]
    assert provider["options"]["path"] == DASHBOARD_DIR
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "vigil.yml").read_text())
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] and source["url"].startswith("http")
    assert source["jsonData"]["timeInterval"], "Grafana needs the scrape interval for $__rate_interval"


# -- every query against a real Prometheus scraping a real agent -----------------------------

ALWAYS_FIRING = {"groups": [{"name": "dashboard-test", "rules": [{
    "alert": "DashboardTestAlwaysFiring", "expr": "vector(1)", "labels": {"severity": "info"},
    "annotations": {"summary": "Fires in tests/test_dashboards.py so that ALERTS has data"}}]}]}


@dataclass
class Lab:
    prometheus_url: str
    agent_url: str

    def api(self, path: str, **params: str) -> tuple[bool, object]:
        status, body = http_get(f"{self.prometheus_url}/api/v1/{path}?" + urllib.parse.urlencode(params, doseq=True))
        reply = json.loads(body)
        if status != 200 or reply.get("status") != "success":
            return False, reply.get("error", body[:300])
        return True, reply["data"]

    def values(self, expr: str) -> list[dict]:
        ok, data = self.api("query", query=expr)
        assert ok, data
        return data["result"]


@pytest.fixture(scope="module")
def vcenter(tmp_path_factory):
    """A vCenter with a disconnected host, a red alarm and a VM snapshot."""
    from tests.lab import vcsim

    with vcsim.start_vcsim(tmp_path_factory.mktemp("vcsim"), *vcsim.SMALL, "-disconnect", "DC0_C0_H1",
                           "-alarm", "DC0_C0_H2=red") as sim:
        vcsim.snapshot(sim.connect(), "DC0_H0_VM0")
        yield sim


@pytest.fixture(scope="module")
def lab(tmp_path_factory, snmp_lab, nut_lab, ssh_server, vcenter, nginx, dnsmasq_lab, pg_lab, maria_lab):
    from tests.fakes.graph import GraphFake
    from tests.fakes.meraki import MerakiFake, make_org
    from tests.kinds.m365.fixtures import CLIENT_ID, SECRET, TENANT, busy_tenant
    from tests.kinds.probes.fixtures import db_target
    from tests.kinds.ssh.fixtures import ssh_target
    from tests.lab.backup_tools import PASSWORD, BorgRepo, ResticRepo
    from tests.lab.icmp import need_datagram_ping
    from tests.lab.pki import make_pki
    from tests.lab.prometheus import prometheus
    from tests.lab.vcsim import PASSWORD as VCENTER_PASSWORD

    need_datagram_ping()  # the icmp probe's
    tmp = tmp_path_factory.mktemp("dashboards")
    graph_pki = make_pki(tmp / "graph-pki")
    graph = GraphFake(graph_pki, tenant=TENANT, client_id=CLIENT_ID, client_secret=SECRET).__enter__()
    busy_tenant(graph)
    (tmp / "m365-secret").write_text(SECRET)
    primary, offsite = ResticRepo(tmp, "primary"), ResticRepo(tmp, "offsite")
    primary.copy_to(offsite, primary.backup())
    borg = BorgRepo(tmp)  # borg, unlike restic 0.14, says how long a backup took
    borg.create("mail-1")
    (tmp / "secret").write_text(PASSWORD + "\n")
    secret = f"${{file:{tmp}/secret}}"
    listen = f"127.0.0.1:{free_port()}"

    def ssh(name: str, **extra: str) -> str:
        """A Linux and a Windows server over SSH (tests/kinds/ssh/fixtures.py): the servers dashboard's other half."""
        fields = {**ssh_target(ssh_server, name=name), "interval": "5s", "timeout": "4500ms", **extra}
        return ", ".join(f"{key}: {value}" for key, value in fields.items())

    def database(kind: str, lab) -> dict:
        """A probe of the lab's replica (its lag), its password from a file."""
        (tmp / f"{kind}-password").write_text(lab.password)
        return {**db_target(kind, lab, lab.replica, name=f"{kind}-replica"), "interval": "1s",
                "password": f"${{file:{tmp}/{kind}-password}}"}

    meraki_pki = make_pki(tmp / "meraki-pki")
    meraki = MerakiFake(meraki_pki, [make_org("549236", "Acme", networks=3, devices=40)]).__enter__()
    (tmp / "meraki-key").write_text("test-key\n")
    # A backup made now is ok under a nightly schedule at any time of day: the last closed
    # window started at least `deadline` ago. The restic job reads two repositories (and
    # runs `restic stats` on each the first time), so it gets more than the 1.5 s a
    # one-location job needs.
    config = tmp / "vigil.yaml"
    config.write_text(f"""
listen: {listen}
state_dir: {tmp / "state"}
targets:
  - {{name: monitor-01, kind: host, interval: 1s}}
  - {{{ssh("fileserver-01")}}}
  - {{{ssh("windows-01", os="windows")}}}
  - {{name: meraki, kind: meraki, api_key: "${{file:{tmp}/meraki-key}}", base_url: "{meraki.url}",
     ca_file: {meraki_pki.ca}, requests_per_second: 10, interval: 3s, timeout: 2500ms}}
  - {json.dumps(snmp_lab.v2c("ups-3ph", community="rfc1628-3phase", interval="1s"))}
  - {json.dumps(nut_lab.target("alarm", name="ups-nut", interval="1s"))}
  - {{name: contoso, kind: m365, interval: 2s, timeout: 1500ms, tenant_id: {TENANT}, client_id: {CLIENT_ID},
     client_secret: "${{file:{tmp}/m365-secret}}", authority: "{graph.url}", graph_url: "{graph.url}",
     ca_file: {graph_pki.ca}, usage_reports: true}}
  - {{name: vcenter, kind: vmware, interval: 2s, host: 127.0.0.1, port: {vcenter.port},
      user: "{vcenter.target()["user"]}", password: "${{env:VIGIL_TEST_VCENTER_PASSWORD}}",
      ca_file: "{vcenter.pki.ca}"}}
  - {{name: web, kind: http, url: "{nginx.url("good")}", ca_file: "{nginx.ca}", interval: 1s}}
  - {{name: web-legacy, kind: http, url: "{nginx.url("tls1.0", "/error")}", ca_file: "{nginx.ca}", interval: 1s}}
  - {{name: web-tls, kind: tcp, host: 127.0.0.1, port: {nginx.ports["good"]}, tls: true, ca_file: "{nginx.ca}",
     interval: 1s}}
  - {{name: www-address, kind: dns, server: 127.0.0.1, port: {dnsmasq_lab.port}, query_name: www.lab.example,
     interval: 1s}}
  - {{name: loopback, kind: icmp, host: 127.0.0.1, interval: 1s}}
  - {json.dumps(database("postgres", pg_lab))}
  - {json.dumps(database("mysql", maria_lab))}
backups:
  - name: fileserver-nightly
    schedule: "0 1 * * *"
    timezone: Europe/Brussels
    deadline: 4h
    interval: 5s
    timeout: 4s
    primary: {{kind: restic, repository: {primary.repository}, password: "{secret}"}}
    offsite: {{kind: restic, repository: {offsite.repository}, password: "{secret}"}}
    verify: {{every: 1d, schedule: "* * * * *"}}
    drill: {{every: 1d, schedule: "* * * * *", files: 2}}
  - name: mail-nightly
    schedule: "30 2 * * *"
    timezone: UTC
    deadline: 2h
    interval: 2s
    timeout: 1500ms
    primary: {{kind: borg, repository: {borg.repository}, passphrase: "{secret}"}}
""")
    rules = tmp / "always-firing.yml"
    rules.write_text(yaml.safe_dump(ALWAYS_FIRING))
    agent = Peer(vigil_argv("run", "-c", str(config)), tmp / "agent.log", cwd=ROOT,
                 env={"VIGIL_TEST_VCENTER_PASSWORD": VCENTER_PASSWORD})

    def wait(check, timeout: float, what: str, why=lambda: "") -> None:
        try:
            wait_until(check, timeout, what)
        except pytest.fail.Exception as exc:
            pytest.fail(f"{exc} {why()}\nthe agent's log:\n{agent.output()[-3000:]}")

    try:
        wait(lambda: http_get(f"http://{listen}/-/ready")[0] == 200 if agent.alive() else pytest.fail("exited"),
             20, "the agent to be ready")
        scrape = [{"job_name": "vigil", "static_configs": [{"targets": [listen]}]}]
        with prometheus(tmp, scrape, rule_files=[str(rules)]) as prom:
            lab = Lab(prom.url, f"http://{listen}")
            used = set().union(*(METRIC.findall(target["expr"]) for name in DASHBOARDS
                                 for _, target in queries(load(name))))
            wanted = used - set(ENVIRONMENT_DEPENDENT)

            def missing() -> set[str]:
                present = lab.values('count by (__name__) ({__name__=~"vigil_.+"})')
                return wanted - {series["metric"]["__name__"] for series in present}

            wait(lambda: not missing(), 60, "every metric the dashboards use", lambda: f"missing: {missing()}")
            wait(lambda: len(lab.values('vigil_backup_status{status="ok"} == 1')) == 2, 20,
                 "both backup jobs to be ok", lambda: lab.values("vigil_backup_status == 1"))
            wait(lambda: lab.values("count_over_time(vigil_server_cpus[15s]) >= 5"), 20,
                 "a few scrapes, so that rates have samples")
            wait(lambda: lab.values('ALERTS{alertstate="firing"}'), 20, "the test alert to fire")
            yield lab
    finally:
        agent.stop()
        meraki.__exit__(None, None, None)
        graph.__exit__(None, None, None)


def variable_values(lab: Lab, dashboard: dict) -> dict[str, str]:
    """Each variable's value as Grafana puts it in a query: every value it can take, selected."""
    values = dict(BUILTINS)
    for variable in dashboard["templating"]["list"]:
        name = variable["name"]
        if variable["type"] == "datasource":
            values[name] = "prometheus"
            continue
        assert variable["type"] == "query", f"no test support for {variable['type']} variables"
        match = re.fullmatch(r"label_values\((?:(.+),\s*)?(\w+)\)", substitute(variable_query(variable), values))
        assert match, f"${name}: only label_values(metric, label) queries are supported here"
        metric, label = match.groups()
        ok, found = lab.api(f"label/{label}/values", **({"match[]": metric} if metric else {}))
        assert ok and found, f"${name}: {variable_query(variable)} finds nothing ({found})"
        if variable.get("multi") or variable.get("includeAll"):
            values[name] = "(" + "|".join(re.sub(r"[\\^$.|?*+()\[\]{}]", r"\\\\\g<0>", v) for v in found) + ")"
        else:
            values[name] = found[0]
    return values


def substitute(text: str, values: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        name = next(group for group in match.groups() if group)
        if name.isdigit():  # label_replace's "$1", which Grafana leaves alone too
            return match.group()
        return values[name]

    return VARIABLE.sub(one, text)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_query_returns_data(lab, name):
    dashboard = load(name)
    values = variable_values(lab, dashboard)
    exported = http_get(lab.agent_url + "/metrics")[1].decode()
    problems = []
    for panel, target in queries(dashboard):
        expr = substitute(target["expr"], values)
        where = f"panel {panel['id']} {panel['title']!r} query {target['refId']}"
        instant = target.get("instant", False)
        now = time.time()
        if instant:
            ok, data = lab.api("query", query=expr, time=str(now))
        else:
            ok, data = lab.api("query_range", query=expr, start=str(now - RANGE), end=str(now), step=str(STEP))
        if not ok:
            problems.append(f"{where} fails: {data}\n    {expr}")
            continue
        if not data["result"]:
            excused = [metric for metric in METRIC.findall(expr) if metric in ENVIRONMENT_DEPENDENT
                       and not re.search(rf"^{metric}[{{ ]", exported, re.MULTILINE)]
            if not excused:
                problems.append(f"{where} returns nothing\n    {expr}")
            continue
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
            if not any(label in series["metric"] for series in data["result"]):
                problems.append(f"{where}: the legend names {{{{{label}}}}}, which the result does not carry")
    assert not problems, f"{name}:\n" + "\n".join(problems)

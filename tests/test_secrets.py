"""Secrets stay secret: a credential written inside a URL is refused without being echoed,
and no output of a running agent with every kind configured shows one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from agent.cli import main
from tests.conftest import ROOT, vigil_argv
from tests.lab.harness import wait_until

LEAKED = "Tr0ub4dor-in-a-url"
B = "backups:\n  - name: nightly\n    schedule: \"0 1 * * *\"\n    deadline: 4h\n    primary: "
T = "targets:\n  - name: t\n    "
IN_URLS = {  # where: (config, the line the error names, the field it names)
    "meraki base_url": (T + f"kind: meraki\n    api_key: ${{env:X}}\n    base_url: https://u:{LEAKED}@api.meraki.com/"
                        "api/v1\n", 5, "base_url"),
    "m365 graph_url": (T + "kind: m365\n    tenant_id: contoso.onmicrosoft.com\n    client_id: "
                       "00000000-0000-0000-0000-000000000000\n    client_secret: ${env:X}\n"
                       f"    graph_url: https://u:{LEAKED}@graph.microsoft.com\n", 7, "graph_url"),
    "m365 authority": (T + "kind: m365\n    tenant_id: contoso.onmicrosoft.com\n    client_id: "
                       "00000000-0000-0000-0000-000000000000\n    client_secret: ${env:X}\n"
                       f"    authority: https://login.microsoftonline.com/?client_secret={LEAKED}\n", 7, "authority"),
    "azure account_url with a SAS": (B + "{kind: azure_blob, account_url: \"https://a.blob.core.windows.net/?sv=1&"
                                     f"sig={LEAKED}\", container: c, credential: \"${{env:X}}\"}}\n", 5, "account_url"),
    "s3 endpoint_url": (B + f"{{kind: s3, bucket: b, endpoint_url: \"https://id:{LEAKED}@s3.example\"}}\n", 5,
                        "endpoint_url"),
    "veeam url": (B + f"{{kind: veeam, url: \"https://admin:{LEAKED}@veeam:9419\", user: u, password: \"${{env:X}}\", "
                  "job: j}\n", 5, "url"),
    "restic rest repository": (B + f"{{kind: restic, repository: \"rest:https://u:{LEAKED}@backup:8000/r\", "
                               "password: \"${env:X}\"}\n", 5, "repository"),
    "borg ssh repository": (B + f"{{kind: borg, repository: \"ssh://u:{LEAKED}@backup/./r\", "
                            "passphrase: \"${env:X}\"}\n", 5, "repository"),
}


@pytest.mark.parametrize("where", IN_URLS)
def test_a_credential_inside_a_url_is_refused_without_being_echoed(tmp_path, capsys, monkeypatch, where):
    text, line, field = IN_URLS[where]
    monkeypatch.setenv("X", "a-referenced-secret")
    config = tmp_path / "vigil.yaml"
    config.write_text(text)
    assert main(["check-config", "-c", str(config)]) == 2
    out = capsys.readouterr()
    first = out.err.splitlines()[0]
    assert first.startswith(f"{config}:{line}"), first
    assert field in first and ("credentials" in first or "password" in first), first
    assert LEAKED not in out.err + out.out


@pytest.fixture
def every_kind(ssh_conformance, snmp_lab, nut_conformance, vmware_conformance, meraki_conformance, m365_target,
               tmp_path, monkeypatch):
    """A config holding every kind, each with its lab peer's credentials by reference, and those secrets."""
    from tests.fakes.veeam import VeeamFake
    from tests.fixtures_m365 import SECRET as GRAPH_SECRET
    from tests.lab import backup_tools, nut, snmpsim, vcsim
    from tests.lab.meraki import KEY as MERAKI_KEY
    from tests.lab.pki import make_pki
    from tests.test_source_veeam import PASSWORD as VEEAM_PASSWORD
    from tests.test_source_veeam import one_success

    restic = backup_tools.ResticRepo(tmp_path)
    restic.backup()
    monkeypatch.setenv("VIGIL_TEST_RESTIC", backup_tools.PASSWORD)
    monkeypatch.setenv("VIGIL_TEST_VEEAM_PASSWORD", VEEAM_PASSWORD)
    pki = make_pki(tmp_path / "veeam-pki")
    with VeeamFake(pki, password=VEEAM_PASSWORD) as veeam:
        one_success(veeam)
        targets = [*ssh_conformance, snmp_lab.v3("apc-v3", "apc"), nut_conformance, vmware_conformance,
                   meraki_conformance, m365_target(credential="secret"), {"name": "me", "kind": "host"}]
        backups = [{"name": "restic-nightly", "schedule": "0 1 * * *", "deadline": "4h",
                    "primary": {"kind": "restic", "repository": restic.repository,
                                "password": "${env:VIGIL_TEST_RESTIC}"},
                    "offsite": {"kind": "veeam", "url": veeam.url, "user": "vigil", "job": "Fileserver Backup",
                                "password": "${env:VIGIL_TEST_VEEAM_PASSWORD}", "ca_file": str(pki.ca)}}]
        key_lines = [line for line in Path(ssh_conformance[0]["key_file"]).read_text().splitlines()
                     if not line.startswith("-----")]
        secrets = {backup_tools.PASSWORD, nut.PASSWORD, vcsim.PASSWORD, MERAKI_KEY, GRAPH_SECRET, VEEAM_PASSWORD,
                   *snmpsim.USERS["vigil"][1::2], *key_lines}
        yield targets, backups, secrets


def test_no_output_of_an_agent_with_every_kind_shows_a_secret(every_kind, start_agent, write_config, tmp_path):
    targets, backups, secrets = every_kind
    text = "listen: 127.0.0.1:{port}\nstate_dir: {state}\n" + yaml.safe_dump(
        {"defaults": {"interval": "2s"}, "targets": targets, "backups": backups}, sort_keys=False)
    config = write_config(text)
    agent = start_agent(config, options=("--debug",))  # every library's debug log too
    wait_until(lambda: all(f'target="{t["name"]}"' in agent.metrics() for t in targets), 60,
               "every target collected")
    outputs = {path: agent.get(path)[1].decode(errors="replace")
               for path in ("/metrics", "/status.json", "/", "/-/ready", "/runbooks/VigilBackupFailed")}
    for fmt in ("text", "json", "prometheus"):
        done = subprocess.run(vigil_argv("--debug", "once", "-c", str(config), "--format", fmt), cwd=ROOT,
                              capture_output=True, text=True, timeout=180)
        outputs[f"once --format {fmt}"] = done.stdout + done.stderr
    for fmt in ("text", "markdown", "csv", "json", "html"):
        done = subprocess.run(vigil_argv("report", "backups", "-c", str(config), "--format", fmt), cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        outputs[f"report --format {fmt}"] = done.stdout + done.stderr
    outputs["the agent's log"] = agent.peer.output()
    agent.peer.stop()
    state = tmp_path / "state"
    outputs["the state database"] = b"".join(path.read_bytes() for path in state.glob("vigil.db*")).decode(
        errors="replace")
    # every secret was used: each peer that asks for one answered
    down = [line for line in outputs["/metrics"].splitlines() if line.startswith("vigil_up{") and line.endswith(" 0")]
    assert not down, down
    assert '"restic-nightly"' in outputs["/status.json"]
    leaks = [f"{where}: {secret[:4]}…" for where, text in outputs.items() for secret in secrets if secret in text]
    assert not leaks, leaks

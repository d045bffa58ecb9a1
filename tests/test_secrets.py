"""Secrets stay secret: a credential written inside a URL is refused without being echoed,
and no output of a running agent with every kind configured shows one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from agent.cli import main
from tests.conftest import ROOT, vigil_argv
from tests.every_kind import DUE, lab  # noqa: F401 (a fixture)
from tests.fakes.meraki import make_org
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


MULTI_LINE = "line1-SECRET-aaaa\nline2-SECRET-bbbb"  # the issue's
SENT_ONE_LINE = {  # where a secret travels in a header, a URL or a line of a protocol: (config, line, field, use)
    "meraki api_key": (T + "kind: meraki\n    api_key: ${file:SECRET}\n", 4, "api_key", "an HTTP header"),
    "s3 access_key_id": (B + "{kind: s3, bucket: b, access_key_id: \"${file:SECRET}\", secret_access_key: "
                         "\"${env:X}\"}\n", 5, "access_key_id", "an HTTP header"),
    "azure credential": (B + "{kind: azure_blob, account_url: \"https://a.blob.core.windows.net\", container: c, "
                         "credential: \"${file:SECRET}\"}\n", 5, "credential", "an HTTP header or URL"),
    "nut password": (T + "kind: nut\n    host: ups\n    ups: rack1\n    username: u\n    password: ${file:SECRET}\n",
                     7, "password", "one line of upsd's protocol"),
}


@pytest.mark.parametrize("where", SENT_ONE_LINE)
def test_a_secret_with_a_line_break_is_refused_where_it_travels_in_one_line(tmp_path, capsys, monkeypatch, where):
    """A header value cannot hold a line break: h11 refused it in a message that showed the secret's second
    line (the first was masked as a bearer token); in upsd's protocol it would start a second command."""
    text, line, field, use = SENT_ONE_LINE[where]
    monkeypatch.setenv("X", "a-referenced-secret")
    secret = tmp_path / "secret"
    secret.write_text(MULTI_LINE + "\n")
    config = tmp_path / "vigil.yaml"
    config.write_text(text.replace("SECRET", str(secret)))
    assert main(["check-config", "-c", str(config)]) == 2
    out = capsys.readouterr()
    first = out.err.splitlines()[0]
    assert first.startswith(f"{config}:{line}: ") and first.endswith(
        f"{field}: the secret holds a line break or another control character, which {use} cannot carry; "
        "remove it from the secret"), first
    assert "SECRET-" not in out.err + out.out


def test_a_header_secret_outside_ascii_is_refused_without_showing_it(tmp_path, capsys):
    """httpx refused it with "'ascii' codec can't encode character '\\xe9' in position 5": a character of it."""
    secret = tmp_path / "secret"
    secret.write_text("clé-de-l-api-0123\n")
    config = tmp_path / "vigil.yaml"
    config.write_text(SENT_ONE_LINE["meraki api_key"][0].replace("SECRET", str(secret)))
    assert main(["check-config", "-c", str(config)]) == 2
    out = capsys.readouterr()
    assert out.err.splitlines()[0] == f"{config}:4: targets[0].api_key: the secret holds a character outside " \
                                      "ASCII, which an HTTP header cannot carry", out.err
    assert "é" not in out.err and "xe9" not in out.err


def test_once_with_a_multi_line_api_key_refuses_it_and_shows_no_line_of_it(meraki_fakes, meraki_target, tmp_path,
                                                                          write_config, fault_report):
    """The issue's repro, `once --format json` against a Meraki peer: it printed
    `Illegal header value b'Bearer ***\\nline2-SECRET-bbbb'`."""
    target = meraki_target(meraki_fakes([make_org("549236", "Lab", networks=1, devices=1)]), key=MULTI_LINE)
    config = write_config("state_dir: {state}\n" + yaml.safe_dump({"targets": [target]}, sort_keys=False))
    done = subprocess.run(vigil_argv("once", "-c", str(config), "--format", "json"), cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "targets[0].api_key: the secret holds a line break" in done.stderr, done.stderr
    assert "SECRET-" not in done.stdout + done.stderr
    fault_report(fault="a Meraki api_key with a line break, `once --format json`", expected="exit 2, the field "
                 "named, no line of the key shown", observed=done.stderr.splitlines()[0].split(": ", 1)[1])


@pytest.fixture
def every_kind(lab, snmp_lab, tmp_path):  # noqa: F811 (a fixture)
    """The every-kind lab, plus an SNMPv3 unit, an m365 app signing in with a client secret and a restic
    repository whose password has two lines; and the secrets they use: passwords, keys, and the lines of the
    private keys on disk."""
    from tests.kinds.m365.fixtures import SECRET as GRAPH_SECRET
    from tests.kinds.meraki.fixtures import KEY as MERAKI_KEY
    from tests.lab import backup_tools, nut, snmpsim, vcsim
    from tests.secrets_audit import forms

    graph_secret = tmp_path / "graph-secret"
    graph_secret.write_text(GRAPH_SECRET + "\n")
    m365 = next(target for target in lab.targets if target["kind"] == "m365")
    with_secret = {key: value for key, value in m365.items() if key != "client_certificate"}
    targets = [*lab.targets, snmp_lab.v3("apc-v3", "apc"),
               {**with_secret, "name": "m365-secret", "client_secret": f"${{file:{graph_secret}}}"}]
    key_files = [target["key_file"] for target in targets if target["kind"] == "ssh"]
    key_files += [m365["client_certificate"]["key_file"][len("${file:"):-1]]
    key_lines = {line for path in key_files for line in Path(path).read_text().splitlines()
                 if line and not line.startswith("-----")}
    multi_line = backup_tools.MULTI_LINE_PASSWORD
    repository = backup_tools.ResticRepo(tmp_path, "multi-line", env={"RESTIC_PASSWORD": multi_line})
    repository.backup()
    password = tmp_path / "restic-password"
    password.write_text(multi_line + "\n")
    backups = [*lab.backups, {"name": "restic-multi-line", **DUE, "primary": {
        "kind": "restic", "repository": repository.repository, "password": f"${{file:{password}}}"}}]
    secrets = {backup_tools.PASSWORD, multi_line, nut.PASSWORD, vcsim.PASSWORD, MERAKI_KEY,
               GRAPH_SECRET, *(value for value in lab.env.values() if len(value) >= 12), *snmpsim.USERS["vigil"][1::2],
               *key_lines}
    return targets, backups, {form for secret in secrets for form in forms(secret)}, lab.env


def test_no_output_of_an_agent_with_every_kind_shows_a_secret(every_kind, start_agent, write_config, tmp_path):
    targets, backups, secrets, env = every_kind
    text = "listen: 127.0.0.1:{port}\nstate_dir: {state}\n" + yaml.safe_dump(
        {"targets": targets, "backups": backups}, sort_keys=False)
    config = write_config(text)
    agent = start_agent(config, env=env, options=("--debug",))  # every library's debug log too
    wait_until(lambda: all(f'target="{t["name"]}"' in agent.metrics() for t in targets), 60,
               "every target collected")
    outputs = {path: agent.get(path)[1].decode(errors="replace")
               for path in ("/metrics", "/status.json", "/", "/-/ready", "/runbooks/VigilBackupFailed")}
    for fmt in ("text", "json", "prometheus"):
        done = subprocess.run(vigil_argv("--debug", "once", "-c", str(config), "--format", fmt), cwd=ROOT,
                              capture_output=True, text=True, timeout=180, env={**os.environ, **env})
        outputs[f"once --format {fmt}"] = done.stdout + done.stderr
    for fmt in ("text", "markdown", "csv", "json", "html"):
        done = subprocess.run(vigil_argv("report", "backups", "-c", str(config), "--format", fmt), cwd=ROOT,
                              capture_output=True, text=True, timeout=60, env={**os.environ, **env})
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
    assert all(f'"{job["name"]}"' in outputs["/status.json"] for job in backups)
    leaks = [f"{where}: {secret[:4]}…" for where, text in outputs.items() for secret in secrets if secret in text]
    assert not leaks, leaks

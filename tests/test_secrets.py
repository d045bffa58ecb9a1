"""Secrets stay secret: a credential written inside a URL is refused without being echoed,
and no output of a running agent with every kind configured shows one."""

from __future__ import annotations

import pytest

from agent.cli import main

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

"""One redaction for every text that leaves the agent, and no credentials in repository URLs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse

import pytest

from agent import redact
from agent.collector import Emitter, Signal
from agent.config import ConfigError, load_config
from agent.model import Verdict
from agent.secrets import resolve_reference
from tests.conftest import ROOT, vigil_argv


@pytest.mark.parametrize("text, expected", [
    ("borg: ssh://backup:s3cr3t@nas:22/./repo: Connection closed",
     "borg: ssh://backup:***@nas:22/./repo: Connection closed"),
    ("Fatal: unable to open config file: s3:http://AKIAXYZ:wJalrXUtnFEMI@127.0.0.1:9000/bucket",
     "Fatal: unable to open config file: s3:http://AKIAXYZ:***@127.0.0.1:9000/bucket"),
    ("sftp://vigil:pa@ss@host/srv", "sftp://vigil:***@host/srv"),  # an unencoded @ in the password
    ("'https://u:p@vbr:9419/api' refused", "'https://u:***@vbr:9419/api' refused"),
    ("GET /c?restype=container&comp=list&sv=2021&sig=AbC%2Bdef%3D&se=2026 HTTP/1.1",
     "GET /c?restype=container&comp=list&sv=2021&sig=***&se=2026 HTTP/1.1"),
    ("https://b.s3/key?X-Amz-Credential=AKIA%2F2026&X-Amz-Signature=9f86d08&X-Amz-Date=x",
     "https://b.s3/key?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Date=x"),
    ("/login?user=a&password=hunter22&next=/", "/login?user=a&password=***&next=/"),
    ("/api?token=eyJhbGciOi.x.y", "/api?token=***"),
    ("{'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIA/2026/us-east-1/s3/aws4_request, "
     "SignedHeaders=host, Signature=0123abcd'}",
     "{'Authorization': b'AWS4-HMAC-SHA256 ***, SignedHeaders=host, Signature=***'}"),
    ("Authorization: Bearer eyJ0eXAi.abc.def", "Authorization: Bearer ***"),
    ("send: b'GET / HTTP/1.1\\r\\nAuthorization: Basic cHJvbTpwdw==\\r\\n'",
     "send: b'GET / HTTP/1.1\\r\\nAuthorization: Basic ***\\r\\n'"),
    ("token refused: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi.payload.sig", "token refused: Bearer ***"),
    ("basic auth failed client=127.0.0.1 user=prometheus", "basic auth failed client=127.0.0.1 user=prometheus"),
    ("botocore.auth: Signature:\n147cf27e7b51703304f542c690a854b01ff3ef37", "botocore.auth: Signature:\n***"),
    # what must stay: a user without a password, a port, plain query values
    ("ssh://borg@nas:22/./repo and sftp:backup@nas:/srv", "ssh://borg@nas:22/./repo and sftp:backup@nas:/srv"),
    ("https://vcenter.example.org:443/sdk?page=2&limit=10", "https://vcenter.example.org:443/sdk?page=2&limit=10"),
])
def test_credentials_in_text_are_masked(text, expected):
    assert redact.redact(text) == expected


def test_every_resolved_secret_is_masked_wherever_it_appears(monkeypatch):
    monkeypatch.setenv("TEST_REDACT_SECRET", "Tr0ub4dor&3 horse")
    assert resolve_reference("${env:TEST_REDACT_SECRET}").get_secret_value() == "Tr0ub4dor&3 horse"
    text = "restic said: wrong password Tr0ub4dor&3 horse; url-encoded: Tr0ub4dor%263%20horse"
    assert redact.redact(text) == "restic said: wrong password ***; url-encoded: ***"


def test_free_texts_are_redacted_where_they_become_records():
    """An exception described, a reason or a verdict handed to the Emitter: what the status page, `once`
    and the log show of a run (names and labels never pass through redaction)."""
    out = Emitter((), signals={"main": Signal(), "uplinks": Signal(), "licenses": Signal()})
    with out.signal("uplinks"):
        raise ConnectionError("ssh://u:pw@h/x refused")
    out.fail("licenses", "GET /x?sig=abc refused (403)")
    out.judge(Verdict("failed", "restic: s3:http://id:key@h/b", notes={"off-site lag": "?token=t0k3n"}))
    assert out.errors == {"uplinks": "ConnectionError: ssh://u:***@h/x refused",
                          "licenses": "GET /x?sig=*** refused (403)"}
    assert out.verdict.detail == "restic: s3:http://id:***@h/b" and out.verdict.notes == {"off-site lag": "?token=***"}


LOGS = r"""
import logging, os
from agent import logs
from agent.secrets import resolve_reference
logs.setup(debug=True)
resolve_reference("${env:TEST_REDACT_KEY}")
logging.getLogger("urllib3.connectionpool").debug('%s "%s %s HTTP/1.1" 200', "https://acct:443", "GET",
                                                   "/c?comp=list&sig=SIGVALUE&sv=1")
logging.getLogger("botocore.endpoint").debug("Sending http request: %s", {"url": "https://k:wJalrSECRET@s3/b"})
try:
    raise RuntimeError("restic failed for s3:http://id:" + os.environ["TEST_REDACT_KEY"] + "@h/b")
except RuntimeError:
    logging.getLogger("vigil").exception("job failed key=%s", os.environ["TEST_REDACT_KEY"])
"""


def test_every_log_record_is_redacted_on_the_root_handler_even_third_party_debug_logs():
    env = {**os.environ, "TEST_REDACT_KEY": "KEY-0123456789"}
    done = subprocess.run([sys.executable, "-c", LOGS], capture_output=True, text=True, cwd=ROOT, env=env,
                          check=True)
    for secret in ("SIGVALUE", "wJalrSECRET", "KEY-0123456789"):
        assert secret not in done.stderr
    assert "urllib3.connectionpool: https://acct:443 \"GET /c?comp=list&sig=***&sv=1 HTTP/1.1\" 200" in done.stderr
    assert "job failed key=***" in done.stderr
    assert 'RuntimeError: restic failed for s3:http://id:***@h/b' in done.stderr  # the traceback too


BACKUP = """
backups:
  - name: nightly
    schedule: "0 1 * * *"
    deadline: 4h
    primary: {location}
"""


@pytest.mark.parametrize("location, message", [
    ('{kind: restic, repository: "s3:http://id:key@127.0.0.1:9000/b", password: "${env:TEST_PW}"}',
     "primary.repository: must not hold a password (user:password@): remove it and set AWS_ACCESS_KEY_ID and "
     "AWS_SECRET_ACCESS_KEY under `env:`"),
    ('{kind: restic, repository: "rest:https://u:pw@backup:8000/", password: "${env:TEST_PW}"}',
     "primary.repository: must not hold a password (user:password@): remove it and set RESTIC_REST_USERNAME "
     "and RESTIC_REST_PASSWORD under `env:`"),
    ('{kind: restic, repository: "sftp://u:pw@nas//srv/restic", password: "${env:TEST_PW}"}',
     "primary.repository: must not hold a password (user:password@): remove it and restic logs in over SFTP "
     "with an SSH key: set key_file"),
    ('{kind: borg, repository: "ssh://u:pw@nas:22/./repo"}',
     "primary.repository: must not hold a password (ssh://user:password@): borg logs in with an SSH key; "
     "remove the password and set key_file"),
    ('{kind: s3, bucket: b, endpoint_url: "https://id:key@s3.example.org"}',
     "primary.endpoint_url: must not hold credentials (id:key@): set access_key_id and secret_access_key"),
    ('{kind: veeam, url: "https://u:pw@vbr:9419", user: u, password: "${env:TEST_PW}", job: j}',
     "primary.url: must not hold credentials (user:password@): set `user` and `password`"),
    ('{kind: azure_blob, account_url: "https://u:pw@acct.blob.core.windows.net", container: c, '
     'credential: "${env:TEST_PW}"}',
     "primary.account_url: must not hold a SAS token or credentials: put them in `credential`"),
])
def test_repository_urls_with_credentials_are_refused_with_the_key_to_use(write_config, monkeypatch, location,
                                                                          message):
    monkeypatch.setenv("TEST_PW", "pw-from-env")
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(BACKUP.replace("{location}", location)))
    (issue,) = caught.value.issues
    assert str(issue).endswith(f":6: backups[0].{message}"), str(issue)
    assert "pw" not in issue.message.replace("password", "")


@pytest.mark.parametrize("location", [
    '{kind: restic, repository: "sftp:backup@nas:/srv/restic", password: "${env:TEST_PW}"}',
    '{kind: restic, repository: "s3:https://s3.example.org/backups", password: "${env:TEST_PW}"}',
    '{kind: borg, repository: "ssh://borg@nas:22/./repo"}',
    '{kind: s3, bucket: b, endpoint_url: "https://s3.example.org:9000"}',
])
def test_urls_without_a_password_still_load(write_config, monkeypatch, location):
    monkeypatch.setenv("TEST_PW", "pw-from-env")
    assert load_config(write_config(BACKUP.replace("{location}", location))).config.backups


def test_check_config_never_echoes_the_refused_url(write_config):
    path = write_config(BACKUP.replace("{location}", '{kind: borg, repository: "ssh://u:Sup3rSecret@nas/./r"}'))
    done = subprocess.run(vigil_argv("check-config", "-c", str(path)), capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "Sup3rSecret" not in done.stdout + done.stderr


def test_a_secret_inside_a_configured_name_is_kept_there_and_masked_everywhere_else(monkeypatch):
    monkeypatch.setenv("TEST_REDACT_SECRET", "office")
    resolve_reference("${env:TEST_REDACT_SECRET}")
    redact.keep(["office-monitor", "office-dumps"])
    assert redact.redact("office-monitor: wrong password office; /srv/office/x, office-dumps") == \
        "office-monitor: wrong password ***; /srv/***/x, office-dumps"


def test_a_name_shelters_only_a_secret_wholly_inside_it(monkeypatch):
    monkeypatch.setenv("TEST_REDACT_SECRET", "monitor-pw")
    resolve_reference("${env:TEST_REDACT_SECRET}")
    redact.keep(["office-monitor"])
    # the secret starts inside the name and runs past it: the secret wins, the name loses its tail
    assert redact.redact("office-monitor-pw and office-monitor") == "office-*** and office-monitor"
    assert redact.redact("xmonitor-pw") == "x***"


MULTI_LINE = "line1-SECRET-aaaa\nline2-SECRET-bbbb"  # the issue's


@pytest.mark.parametrize("text, expected", [
    # h11's refusal of the header (the issue's leak: the Bearer pattern masked the first line only)
    (f"Illegal header value {('Bearer ' + MULTI_LINE).encode()!r}", "Illegal header value b'Bearer ***'"),
    (repr({"detail": MULTI_LINE}), "{'detail': '***'}"),
    (json.dumps({"detail": MULTI_LINE}), '{"detail": "***"}'),
    ("restic: line2-SECRET-bbbb was refused", "restic: *** was refused"),  # a tool that prints one line
    (f"a %-encoded one: {urllib.parse.quote(MULTI_LINE, safe='')}", "a %-encoded one: ***"),
])
def test_a_multi_line_secret_is_masked_in_every_form_a_text_gives_it(monkeypatch, text, expected):
    monkeypatch.setenv("TEST_REDACT_SECRET", MULTI_LINE)
    resolve_reference("${env:TEST_REDACT_SECRET}")
    assert redact.redact(text) == expected


ODD = "it's-pässwörd\twith\\escapes"  # a quote, non-ASCII, a tab and a backslash


@pytest.mark.parametrize("shown", [
    repr(ODD), repr(ODD + '"'), repr(ODD.encode()), repr(ODD.encode() + b'"'), json.dumps(ODD),
    json.dumps(ODD, ensure_ascii=False)], ids=["repr", "repr, ' escaped", "bytes", "bytes, ' escaped", "json",
                                              "json, UTF-8"])
def test_a_secret_is_masked_however_python_or_json_escapes_it(monkeypatch, shown):
    """repr quotes with " when the text holds ' (else with ', escaped inside); bytes escape the UTF-8; JSON
    \\u-escapes or not."""
    monkeypatch.setenv("TEST_REDACT_SECRET", ODD)
    resolve_reference("${env:TEST_REDACT_SECRET}")
    masked = redact.redact(f"failed: {shown}")
    assert "pässwörd" not in masked and "p\\xc3\\xa4" not in masked and "p\\u00e4" not in masked, masked
    assert "***" in masked

"""No code path trusts a peer it has not been told to trust: every host key pinned, every
certificate verified except where a target says `insecure_skip_verify` (and that is logged).

The behaviour is tested against real peers per kind (tests/test_net_ssh.py, test_ssh.py,
test_source_sftp.py, test_backup_offsite.py, test_vmware.py); this reads the whole source (as
installed) so that a new module cannot slip a trusting default past them.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import PACKAGES, PACKAGES_DIR

# what would trust an unknown peer: (pattern, why it is refused)
TRUSTING = {
    r"AutoAddPolicy|WarningPolicy": "accepts an unknown SSH host key",
    r"StrictHostKeyChecking=(no|accept-new|off)": "lets ssh accept an unknown host key",
    r"UserKnownHostsFile=/dev/null": "forgets the pinned host keys",
    r"load_system_host_keys|~/\.ssh/known_hosts": "trusts whatever the running user's known_hosts holds",
    r"verify\s*=\s*False|connection_verify\s*=\s*False": "turns certificate verification off",
    r"CERT_NONE|check_hostname\s*=\s*False|_create_unverified_context": "turns certificate verification off",
    r"--insecure-tls|--no-check-certificate|-k\b(?=.*curl)": "tells a tool to skip verification",
}
ALLOWED = {
    # the one explicit, logged switch: insecure_skip_verify on a vmware target
    ("collectors/vmware/session.py", "CERT_NONE"), ("collectors/vmware/session.py", "check_hostname"),
    # the server side: /metrics asks no client certificate unless web.yml's client_auth_type does
    ("exporters/webconfig.py", "CERT_NONE"),
    # the probes' second look, after verification refused the server: the chain it sends is read, and the
    # oldest version it accepts asked, over a context that sends nothing else (the probe has failed already)
    ("collectors/probes/tls.py", "CERT_NONE"), ("collectors/probes/tls.py", "check_hostname"),
    # a database target's explicit `tls: required` (encrypted, not verified), logged as the vmware switch is
    ("collectors/probes/database.py", "CERT_NONE"), ("collectors/probes/database.py", "check_hostname"),
}


def sources() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (PACKAGES_DIR / package).rglob("*.py"))


def test_no_module_trusts_an_unknown_host_key_or_certificate():
    found = []
    for path in sources():
        relative = path.relative_to(PACKAGES_DIR).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for pattern, why in TRUSTING.items():
                match = re.search(pattern, line)
                if match and not any(relative == allowed and word in match.group(0) for allowed, word in ALLOWED):
                    found.append(f"{relative}:{number}: {line.strip()} ({why})")
    assert not found, "\n".join(found)


def test_the_one_switch_that_skips_verification_is_explicit_and_logged():
    session = (PACKAGES_DIR / "collectors/vmware/session.py").read_text()
    config = (PACKAGES_DIR / "collectors/vmware/config.py").read_text()
    assert "insecure_skip_verify: bool = Field(False" in config
    assert re.search(r"if not self\._verify:\s+log\.warning\(\"TLS verification is off", session)


def test_a_database_probe_s_unverified_tls_is_asked_for_and_logged():
    database = (PACKAGES_DIR / "collectors/probes/database.py").read_text()
    config = (PACKAGES_DIR / "collectors/probes/config.py").read_text()
    assert re.search(r'tls: Literal\["verify", "required", "off"\] = Field\(\s+"verify"', config)
    assert re.search(r'if config\.tls == "required":\s+log\.warning\("TLS verification is off', database)


def test_the_probes_read_a_refused_chain_only_after_verification_failed():
    """tls.py's unverified context serves the second look, never a probe's own request: only `refused` (the
    chain of a certificate verification refused) and `_oldest` (the versions a server accepts) use it."""
    users = set()
    for path in sources():
        function = ""
        for line in path.read_text().splitlines():
            if match := re.match(r"(?:async )?def (\w+)", line):
                function = match[1]
            if "unverified_context(" in line and not line.lstrip().startswith("def "):
                users.add((path.relative_to(PACKAGES_DIR).as_posix(), function))
    assert users == {("collectors/probes/tls.py", "refused"), ("collectors/probes/tls.py", "_oldest")}


def test_every_paramiko_client_uses_the_pinned_policy():
    calls = [(path.relative_to(PACKAGES_DIR).as_posix(), line.strip()) for path in sources()
             for line in path.read_text().splitlines() if "set_missing_host_key_policy" in line]
    assert calls, "the ssh transport sets a policy"
    assert all("_PinnedOnly" in line for _, line in calls), calls

"""A real Dovecot serving IMAP and POP3 with STARTTLS on free loopback ports.

`dovecot -F -c CONFIG` runs in the foreground from a config of the test's own: its sockets,
state and mail live in a 0755 folder of its own (the mail process runs as `nobody`, the
login processes as Debian's `dovenull`, which cannot enter pytest's 0700 folders). Its
five small processes start in about a second. Plaintext logins are refused before STARTTLS,
except that Dovecot counts a connection as secured when it comes from the address it
arrives at: from 127.0.0.1 to 127.0.0.1 no LOGINDISABLED is announced (a client bound to
another 127.x source sees it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.lab.harness import Peer, free_port, need, running
from tests.lab.pki import PKI
from tests.lab.smtp import greeting

USER, PASSWORD = "vigil", "dovecot-lab-password"


@dataclass(frozen=True)
class Dovecot:
    imap_port: int
    pop3_port: int
    ca: Path  # verifies its certificate (for 127.0.0.1 and localhost)
    peer: Peer


@contextmanager
def dovecot(directory: Path, pki: PKI) -> Iterator[Dovecot]:
    binary = need("dovecot", "run tests/lab/setup.sh (dovecot-imapd, dovecot-pop3d)")
    directory.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="vigil-dovecot-"))  # short: its sockets' paths have at most 107 bytes
    os.chmod(home, 0o755)
    mail = home / "mail"
    mail.mkdir()
    shutil.chown(mail, "nobody", "nogroup")
    for source, name in ((pki.server_cert, "cert.pem"), (pki.server_key, "key.pem")):
        shutil.copy(source, home / name)  # read by the master, as root
    (home / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    imap_port, pop3_port = free_port(), free_port()
    (home / "dovecot.conf").write_text(f"""\
base_dir = {home}/run
state_dir = {home}/state
log_path = /dev/stderr
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{home}/cert.pem
ssl_key = <{home}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = {home}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={mail}/%u
}}
mail_location = maildir:~/Maildir
default_internal_user = dovecot
default_login_user = dovenull
service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
""")

    def ready() -> bool:
        return greeting(imap_port).startswith(b"* OK") and greeting(pop3_port).startswith(b"+OK")

    try:
        with running([binary, "-F", "-c", str(home / "dovecot.conf")], directory / "dovecot.log", ready,
                     "dovecot") as peer:
            yield Dovecot(imap_port, pop3_port, pki.ca, peer)
    finally:
        shutil.rmtree(home, ignore_errors=True)

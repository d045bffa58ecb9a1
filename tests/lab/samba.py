"""Samba 4 as Active Directory domain controllers on loopback, for `kind: ad`: one DC, or two
that replicate.

A DC's LDAP ports (389, 636, 3268, 3269) are fixed, so each DC gets a loopback address of
its own instead of a port: on Linux all of 127/8 is local, and `interfaces = ADDR/8` makes
Samba serve an address that is not configured on `lo` (a bare `ADDR` finds no interface and
the DC exits). A session claims a set of addresses with a lock file, so two sessions on one
machine take different ones.

Provisioning is cached: a template per recipe and addresses under `.lab/samba/`, copied for
each session and rebuilt after a week. Each DC runs as `samba -i -M standard` (a process per
service; `-M single` deadlocks a replicating pair and then ignores SIGTERM) in a mount
namespace of its own whose /etc/hosts and /etc/resolv.conf name the lab's DCs: replication
partners find each other by `<guid>._msdcs.<domain>` through the DCs' own DNS, and the lab's
`ldapsearch` verifies a DC's certificate (made by Samba's own CA, for `DC1.corp.example.org`,
no subjectAltName) by the DC's name."""

from __future__ import annotations

import base64
import calendar
import fcntl
import hashlib
import itertools
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.lab.harness import REQUIRED, Peer, need, wait_until

DOMAIN = "corp.example.org"
REALM = DOMAIN.upper()
WORKGROUP = "CORP"
BASE_DN = "DC=corp,DC=example,DC=org"
ADMIN, ADMIN_PASSWORD = "Administrator", "Lab-Admin-Pass-1"
# samba-tool's credentials over the network: with the domain named, as no winbindd runs to map another
ADMIN_CREDENTIALS = (f"--username={WORKGROUP}\\{ADMIN}", f"--password={ADMIN_PASSWORD}")
MONITOR, MONITOR_PASSWORD = "vigil-monitor", "Lab-Monitor-Pass-1"  # a plain Domain Users member
LOCKOUT_THRESHOLD = 3  # bad passwords before an account locks (for 30 minutes)
REPLICATION_INTERVAL = 5  # seconds between a DC's pulls from its partners (Samba's default: 300)
# The address sets a session may claim: (dc1, dc2); each set has its own template.
ADDRESSES = (("127.0.0.2", "127.0.0.3"), ("127.0.1.2", "127.0.1.3"), ("127.0.2.2", "127.0.2.3"))
TEMPLATES = Path(__file__).resolve().parents[2] / ".lab" / "samba"
TEMPLATE_DAYS = 7
HINT = "run tests/lab/setup.sh (samba samba-ad-dc samba-ad-provision winbind ldap-utils krb5-user libfaketime)"
RUNTIME = ("run", "msg.sock", "msg.lock")  # sockets and pid files: never copied


def smb_options(directory: Path, address: str) -> list[str]:
    """smb.conf lines a lab DC needs besides its provisioned ones: its address, its own
    runtime folders (the defaults under /run/samba are shared by every Samba on the host),
    no file server, NetBIOS or winbindd (the monitoring is agentless: LDAP, DNS and
    Kerberos), and replication pulls every few seconds."""
    return [f"interfaces = {address}/8", "bind interfaces only = yes",
            f"pid directory = {directory}/run", f"ncalrpc dir = {directory}/run/ncalrpc",
            f"winbindd socket directory = {directory}/run/winbindd",
            f"ntp signd socket directory = {directory}/run/ntp_signd",
            f"log file = {directory}/log.%m", "panic action =",
            "dns forwarder = 127.0.0.1",  # not the host's resolver: names outside the domain fail at once
            "server services = -s3fs -nbt -wrepl -winbindd -ntp_signd",
            # samba_dnsupdate skips loopback addresses and wants nsupdate (bind9-dnsutils) without this
            f"dns update command = /usr/sbin/samba_dnsupdate --use-samba-tool --current-ip {address}",
            f"dreplsrv:periodic_interval = {REPLICATION_INTERVAL}", "dreplsrv:periodic_startup_interval = 1",
            "kccsrv:periodic_startup_interval = 1"]


def recipe(addresses: tuple[str, ...]) -> list[list[str]]:
    """The commands that make a template, with DIR for its folder: the template's key."""
    dc1 = "DIR/dc1"
    commands = [["samba-tool", "domain", "provision", f"--realm={REALM}", f"--domain={WORKGROUP}",
                 f"--adminpass={ADMIN_PASSWORD}", "--server-role=dc", "--dns-backend=SAMBA_INTERNAL",
                 "--use-rfc2307", f"--targetdir={dc1}", f"--host-ip={addresses[0]}", "--host-name=dc1",
                 *(f"--option={line}" for line in smb_options(Path(dc1), addresses[0]))],
                ["samba-tool", "domain", "passwordsettings", "set", f"--account-lockout-threshold={LOCKOUT_THRESHOLD}",
                 "--account-lockout-duration=30", "--reset-account-lockout-after=30"],
                ["samba-tool", "user", "create", MONITOR, MONITOR_PASSWORD,
                 "--description=vigil's least-privilege monitoring account"]]
    for index, address in enumerate(addresses[1:], start=2):
        directory = Path(f"DIR/dc{index}")
        commands.append(["samba-tool", "domain", "join", DOMAIN, "DC", f"--server={addresses[0]}",
                         *ADMIN_CREDENTIALS, f"--targetdir={directory}", "--dns-backend=SAMBA_INTERNAL",
                         f"--option=netbios name = DC{index}",
                         *(f"--option={line}" for line in smb_options(directory, address))])
    return commands


class LdapError(Exception):
    """ldapsearch failed: its exit status and what it printed."""

    def __init__(self, returncode: int, message: str):
        super().__init__(f"ldapsearch exited with {returncode}: {message.strip()}")
        self.returncode, self.message = returncode, message


@dataclass
class DomainController:
    name: str  # dc1: its host name is dc1.corp.example.org
    address: str
    directory: Path  # provisioned or joined: etc/smb.conf, private/ (sam.ldb, tls/ca.pem)
    view: Path  # the hosts and resolv.conf of the lab's processes
    peer: Peer | None = None

    @property
    def host(self) -> str:
        return f"{self.name}.{DOMAIN}"

    @property
    def smb_conf(self) -> Path:
        return self.directory / "etc" / "smb.conf"

    @property
    def ca_file(self) -> Path:
        """The CA Samba made for this DC on its first start (each DC has its own)."""
        return self.directory / "private" / "tls" / "ca.pem"

    def url(self, service: str = "ldaps") -> str:
        """ldaps (636), ldap (389, for StartTLS), gc (3268, for StartTLS) or gcs (3269), by host name."""
        scheme, port = {"ldaps": ("ldaps", 636), "ldap": ("ldap", 389), "gc": ("ldap", 3268),
                        "gcs": ("ldaps", 3269)}[service]
        return f"{scheme}://{self.host}:{port}"

    def start(self, clock: str | None = None) -> None:
        """Started and answering; with `clock` (libfaketime's offset, such as "+10m") its clock is off
        by that much, the monotonic clock (its timers) left alone."""
        argv = [need("samba", HINT), "-i", "-M", "standard", "-s", str(self.smb_conf)]
        self.peer = Peer(in_view(self.view, argv), self.directory / "samba.log", faked_clock(clock) if clock else None)
        wait_until(lambda: self.answers() if self.peer.alive() else pytest.fail(
            f"Samba DC {self.host} exited with {self.peer.process.returncode}:\n{self.peer.output()[-3000:]}"),
                   120, f"Samba DC {self.host} to answer LDAP on {self.address}", interval=0.2)

    def stop(self) -> None:
        """SIGTERM to samba, which passes it to its process group (a process per service and per
        connection); done when the last of them has exited, and let go of its ports and files."""
        if self.peer is not None:
            group = self.peer.pid  # samba leads its own process group
            self.peer.stop(timeout=30)
            self.peer = None
            wait_until(lambda: not _members(group), 30, f"the processes of {self.host} to exit")

    def answers(self) -> bool:
        """The root DSE answers an anonymous search, as it does once the DC serves LDAP."""
        try:
            return bool(self.root_dse("dnsHostName"))
        except LdapError:
            return False

    def root_dse(self, *attributes: str) -> dict[str, list[str]]:
        """The root DSE, anonymously over plain LDAP by address (AD allows that, and nothing else)."""
        done = subprocess.run([need("ldapsearch", HINT), "-LLL", "-o", "ldif-wrap=no", "-x", "-H",
                               f"ldap://{self.address}", "-s", "base", "-b", "", "(objectClass=*)", *attributes],
                              capture_output=True, text=True, timeout=10)
        if done.returncode:
            raise LdapError(done.returncode, done.stderr)
        entries = parse_ldif(done.stdout)
        return entries[0] if entries else {}


@dataclass
class Domain:
    controllers: list[DomainController]
    directory: Path
    names: Iterator[int] = field(default_factory=lambda: itertools.count(1))  # for names not used before

    @property
    def dc1(self) -> DomainController:
        return self.controllers[0]

    def ca_bundle(self) -> Path:
        """Every DC's CA in one file: each Samba DC made its own, where a real domain has one CA."""
        bundle = self.directory / "ca-bundle.pem"
        bundle.write_text("".join(dc.ca_file.read_text() for dc in self.controllers))
        return bundle

    def samba_tool(self, *args: str, dc: DomainController | None = None) -> str:
        """samba-tool on a DC's own database (the local sam.ldb, as an administrator on the DC would)."""
        dc = dc or self.dc1
        done = subprocess.run([need("samba-tool", HINT), *args, "-s", str(dc.smb_conf)], capture_output=True,
                              text=True, timeout=120)
        if done.returncode:
            raise AssertionError(f"samba-tool {' '.join(args[:3])} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def add_user(self, prefix: str = "user", password: str = "Lab-User-Pass-1", ou: str | None = None) -> str:
        """A new user (a name not used before in this domain) in Users or in OU=`ou`; its name."""
        name = f"{prefix}-{next(self.names)}"
        where = []
        if ou is not None:
            if f"OU={ou}" not in self.samba_tool("ou", "list"):
                self.samba_tool("ou", "create", f"OU={ou}")
            where = [f"--userou=OU={ou}"]
        self.samba_tool("user", "create", name, password, *where)
        return name

    def add_to_group(self, user: str, group: str = "Domain Admins") -> None:
        self.samba_tool("group", "addmembers", group, user)

    def lock_out(self, user: str, dc: DomainController | None = None) -> None:
        """Wrong passwords to the KDC until the account locks (the lockout threshold is
        LOCKOUT_THRESHOLD); lockoutTime replicates to the other DCs."""
        for _ in range(LOCKOUT_THRESHOLD):
            done = self.kinit(user, "not-the-password", dc)
            assert done.returncode != 0, f"kinit {user} with a wrong password succeeded"

    def expire_password_in(self, user: str, days: int) -> None:
        """A password settings object with a maximum age of `days` for this user alone: its
        password (set just now) expires in `days` days (msDS-UserPasswordExpiryTimeComputed)."""
        pso = f"expiry-{user}"
        self.samba_tool("domain", "passwordsettings", "pso", "create", pso, "10", f"--max-pwd-age={days}",
                        "--min-pwd-age=0")
        self.samba_tool("domain", "passwordsettings", "pso", "apply", pso, user)

    def kinit(self, user: str, password: str, dc: DomainController | None = None) -> subprocess.CompletedProcess:
        """A Kerberos AS exchange with one DC's KDC (port 88) for user@REALM."""
        dc = dc or self.dc1
        config = self.directory / f"krb5-{dc.name}.conf"
        config.write_text(f"[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n"
                          f" dns_lookup_realm = false\n rdns = false\n[realms]\n {REALM} = {{\n"
                          f"  kdc = {dc.address}\n }}\n")
        cache = self.directory / f"krb5cc-{user}"
        return subprocess.run([need("kinit", HINT), f"{user}@{REALM}"], input=password + "\n", capture_output=True,
                              text=True, timeout=30,
                              env={**os.environ, "KRB5_CONFIG": str(config), "KRB5CCNAME": f"FILE:{cache}"})

    def search(self, base: str = BASE_DN, query: str = "(objectClass=*)", *attributes: str,
               scope: str = "sub", service: str = "ldaps", dc: DomainController | None = None,
               user: str = MONITOR, password: str = MONITOR_PASSWORD,
               ca_file: Path | None = None) -> list[dict[str, list]]:
        """ldapsearch with a simple bind as `user` over TLS (ldaps, gcs; or StartTLS on ldap, gc:
        AD refuses simple binds in the clear), the certificate verified by the DC's host name
        with `ca_file` (the DC's own CA by default). Entries as {"dn": [..], attribute: [values]},
        binary values as bytes; LdapError if ldapsearch fails."""
        dc = dc or self.dc1
        starttls = ["-ZZ"] if service in ("ldap", "gc") else []
        argv = [need("ldapsearch", HINT), "-LLL", "-o", "ldif-wrap=no", "-o", "nettimeout=10", "-x",
                "-H", dc.url(service), *starttls, "-D", f"{user}@{DOMAIN}", "-w", password, "-b", base,
                "-s", scope, query, *attributes]
        done = subprocess.run(in_view(dc.view, argv), capture_output=True, timeout=60,
                              env={**os.environ, "LDAPTLS_CACERT": str(ca_file or dc.ca_file),
                                   "LDAPTLS_REQCERT": "demand"})
        if done.returncode:
            raise LdapError(done.returncode, done.stderr.decode(errors="replace"))
        return parse_ldif(done.stdout.decode())

    def replication(self, dc: DomainController | None = None) -> dict:
        """What samba-tool drs showrepl --json says of a DC's partners: the lab's own view of
        replication (over DRSUAPI, as an administrator), to compare a collector's with."""
        dc = dc or self.dc1
        return json.loads(self.samba_tool("drs", "showrepl", "--json", dc.address, *ADMIN_CREDENTIALS,
                                          dc=dc))

    @contextmanager
    def stopped(self, dc: DomainController) -> Iterator[DomainController]:
        """A DC stopped (by its PID) for the duration, then started again and answering."""
        dc.stop()
        try:
            yield dc
        finally:
            dc.start()

    @contextmanager
    def skewed(self, dc: DomainController, clock: str) -> Iterator[DomainController]:
        """A DC whose clock is off by `clock` ("+10m", "-6m") for the duration (restarted under
        libfaketime), then restarted with the true time."""
        dc.stop()
        try:
            dc.start(clock)
            yield dc
        finally:
            dc.stop()
            dc.start()


def _members(group: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    members = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(pid))
    return members


def faked_clock(offset: str) -> dict[str, str]:
    """The environment that puts a process's clock `offset` off: libfaketime preloaded (not its
    `faketime` command, which forks, so that the PID would not be Samba's), the monotonic clock
    left alone, and ldb's modules loaded without RTLD_DEEPBIND, which would bypass the preload
    (the root DSE's currentTime would stay true while the KDC's clock moved)."""
    library = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))), None)
    if library is None:
        _missing(f"libfaketime is not installed ({HINT})")
    return {"LD_PRELOAD": str(library), "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "LDB_MODULES_DISABLE_DEEPBIND": "1"}


def parse_ldif(text: str) -> list[dict[str, list]]:
    """ldapsearch -LLL -o ldif-wrap=no output: one dict per entry; `attr:: base64` values as bytes."""
    entries = []
    for block in text.strip().split("\n\n"):
        entry: dict[str, list] = {}
        for line in block.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            if value.startswith(":"):
                entry.setdefault(name, []).append(base64.b64decode(value[1:].strip()))
            else:
                entry.setdefault(name, []).append(value.strip())
        if entry:
            entries.append(entry)
    return entries


def dns_query(server: str, name: str, record: str = "SRV", timeout: float = 3) -> list:
    """One DNS question over UDP to `server`:53 (dnspython): SRV answers as (priority, weight, port, target),
    A as the address, CNAME as the name; [] if none; TimeoutError when no answer comes."""
    try:
        reply = dns.query.udp(dns.message.make_query(name, record), server, timeout=timeout)
    except dns.exception.Timeout:
        raise TimeoutError(f"no DNS answer from {server} within {timeout}s") from None
    wanted = dns.rdatatype.from_text(record)
    found = [rdata for rrset in reply.answer if rrset.rdtype == wanted for rdata in rrset]
    if record == "SRV":
        return [(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True)) for r in found]
    if record == "CNAME":
        return [r.target.to_text(omit_final_dot=True) for r in found]
    return [r.address for r in found]


def in_view(view: Path, argv: list[str]) -> list[str]:
    """argv run in a mount namespace whose /etc/hosts and /etc/resolv.conf are the lab's."""
    unshare = need("unshare", "apt-get install util-linux")
    mounts = " && ".join(f"mount --bind {view / name} /etc/{name}" for name in ("hosts", "resolv.conf"))
    return [unshare, "--mount", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$@"', "lab", *argv]


def write_view(view: Path, addresses: tuple[str, ...]) -> None:
    view.mkdir(parents=True, exist_ok=True)
    (view / "hosts").write_text("127.0.0.1 localhost\n" + "".join(
        f"{address} dc{index}.{DOMAIN} dc{index}\n" for index, address in enumerate(addresses, start=1)))
    (view / "resolv.conf").write_text(f"search {DOMAIN}\n" + "".join(f"nameserver {address}\n"
                                                                     for address in addresses))


def template_key(addresses: tuple[str, ...]) -> str:
    version = subprocess.run([need("samba", HINT), "--version"], capture_output=True, text=True).stdout
    return hashlib.sha256(repr((recipe(addresses), version)).encode()).hexdigest()[:16]


def build_template(final: Path, addresses: tuple[str, ...]) -> None:
    """Provision dc1 and join the others, every DC started once (Samba makes its TLS keys then)
    and, with partners, replicating both ways; then stopped and copied to `final`. Built in
    /tmp: the DCs' socket paths must stay under the 108 bytes a Unix socket's name can have."""
    work = Path(tempfile.mkdtemp(prefix="vigil-samba-build-"))
    write_view(work / "view", addresses)
    controllers = _controllers(work, addresses)
    commands = [[part.replace("DIR", str(work)) for part in command] for command in recipe(addresses)]
    provision, *settings = [command for command in commands if command[1:3] != ["domain", "join"]]
    joins = [command for command in commands if command[1:3] == ["domain", "join"]]
    try:
        with ExitStack() as running:
            _run(provision)
            for command in settings:
                _run([*command, "-s", str(controllers[0].smb_conf)])
            for index, dc in enumerate(controllers):
                if index:
                    _run(in_view(work / "view", joins[index - 1]))
                dc.start()
                running.callback(dc.stop)
                if index:  # its DNS records on dc1 now (dc1 needs them to pull from it), not in ten minutes
                    _run(in_view(work / "view", ["samba_dnsupdate", "--use-samba-tool", f"--current-ip={dc.address}",
                                                 f"--rpc-server-ip={addresses[0]}", "-s", str(dc.smb_conf)]))
            if len(controllers) > 1:
                _replicating(Domain(controllers, work))
        (work / ".built-in").write_text(str(work))
        partial = final.with_name(f"{final.name}.partial")
        shutil.copytree(work, partial, symlinks=True, ignore=_runtime)
        partial.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _replicating(domain: Domain) -> None:
    """Every DC in DNS and pulling from every other: the knowledge consistency checker run now
    (it would wait 15 minutes to add the new partner), then a clean pull each way."""
    since = time.time()
    for dc in domain.controllers:
        wait_until(lambda dc=dc: (0, 100, 389, dc.host) in dns_query(dc.address, f"_ldap._tcp.dc._msdcs.{DOMAIN}"),
                   120, f"{dc.host} to register its SRV records")
        domain.samba_tool("drs", "kcc", dc.address, *ADMIN_CREDENTIALS, dc=dc)
    wait_replicated(domain, since)


def wait_replicated(domain: Domain, since: float) -> None:
    """Wait until every DC has pulled every naming context from every partner since `since`."""
    for dc in domain.controllers:
        wait_until(lambda dc=dc: _pulled_since(domain, dc, since), 120, f"{dc.host} to replicate from its partners")


def _pulled_since(domain: Domain, dc: DomainController, since: float) -> bool:
    neighbours = domain.replication(dc)["repsFrom"]
    partners = {neighbour["DSA objectGUID"] for neighbour in neighbours}
    return len(partners) == len(domain.controllers) - 1 and all(
        neighbour["consecutive failures"] == 0 and _showrepl_time(neighbour["last success"]) >= int(since)
        for neighbour in neighbours)


def _showrepl_time(value: str) -> float:
    """samba-tool's "Mon Dec  7 20:22:24 2026 UTC" (or NTTIME(0): never) as a Unix time."""
    if value.startswith("NTTIME"):
        return 0
    return calendar.timegm(time.strptime(value, "%a %b %d %H:%M:%S %Y UTC"))


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise AssertionError(f"{' '.join(argv[:4])} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr}")


def _controllers(directory: Path, addresses: tuple[str, ...]) -> list[DomainController]:
    return [DomainController(f"dc{index}", address, directory / f"dc{index}", directory / "view")
            for index, address in enumerate(addresses, start=1)]


@contextmanager
def samba_domain(controllers: int = 1) -> Iterator[Domain]:
    """A domain of `controllers` DCs (1 or 2) copied from its template, started and answering,
    in a folder of its own (pytest's get pruned by concurrent runs); stopped and removed after."""
    for program in ("samba", "samba-tool", "ldapsearch", "kinit"):
        need(program, HINT)
    if os.geteuid() != 0:
        _missing("a Samba domain controller needs root (its ports are below 1024)")
    with ExitStack() as stack:
        addresses = stack.enter_context(_claimed(controllers))
        template = _template(addresses)
        directory = Path(tempfile.mkdtemp(prefix="vigil-samba-"))
        stack.callback(shutil.rmtree, directory, True)
        with _locked(template.with_name(f"{template.name}.lock"), fcntl.LOCK_SH):
            shutil.copytree(template, directory, dirs_exist_ok=True, symlinks=True, ignore=_runtime)
        built_in = (directory / ".built-in").read_text()
        domain = Domain(_controllers(directory, addresses), directory)
        since = time.time()
        for dc in domain.controllers:
            dc.smb_conf.write_text(dc.smb_conf.read_text().replace(built_in, str(directory)))
            stack.callback(dc.stop)
            dc.start()
        if controllers > 1:
            wait_replicated(domain, since)
        yield domain


def _template(addresses: tuple[str, ...]) -> Path:
    """The template for these addresses, built now if there is none. Templates over a week old
    go, of any recipe (a changed recipe leaves its old one behind): their passwords would
    expire in 42 days, and a pair must not be offline longer than the tombstone lifetime."""
    TEMPLATES.mkdir(parents=True, exist_ok=True)
    template = TEMPLATES / f"{template_key(addresses)}-{'-'.join(addresses)}"
    for folder in TEMPLATES.iterdir():
        if folder.is_dir() and time.time() - folder.stat().st_mtime > TEMPLATE_DAYS * 86400:
            with _locked(folder.with_name(f"{folder.name}.lock"), fcntl.LOCK_EX):
                shutil.rmtree(folder, ignore_errors=True)
    with _locked(template.with_name(f"{template.name}.lock"), fcntl.LOCK_EX):
        shutil.rmtree(template.with_name(f"{template.name}.partial"), ignore_errors=True)  # a copy cut short
        if not template.exists():
            build_template(template, addresses)
    return template


@contextmanager
def _locked(path: Path, operation: int) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, operation)
        yield


@contextmanager
def _claimed(count: int) -> Iterator[tuple[str, ...]]:
    """The first set of addresses no other session holds and no other server listens on,
    held (by a lock file) until the end."""
    for candidates in ADDRESSES:
        addresses = candidates[:count]
        with (Path(tempfile.gettempdir()) / f"vigil-lab-samba-{candidates[0]}.lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            if all(_free(address) for address in candidates):
                yield addresses
                return
    _missing(f"no free loopback addresses for Samba among {ADDRESSES}")


def _free(address: str) -> bool:
    """Nothing listens on the DC ports of `address` (a server on 0.0.0.0 takes them on every address)."""
    for port in (53, 88, 389, 636):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError:
                return False
    return True


def _runtime(folder: str, names: list[str]) -> set[str]:
    """What a copy of a stopped DC leaves out: sockets, pid files, its log."""
    return {name for name in names if name in RUNTIME or name == "samba.log"
            or stat.S_ISSOCK(os.lstat(os.path.join(folder, name)).st_mode)}


def _missing(message: str) -> None:
    if REQUIRED:
        pytest.fail(f"VIGIL_LAB=require: {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def samba_dc() -> Iterator[Domain]:
    """One DC for the session (tests that change it make names of their own: `add_user`)."""
    with samba_domain(1) as domain:
        yield domain


@pytest.fixture(scope="session")
def samba_pair() -> Iterator[Domain]:
    """Two DCs replicating both ways, on addresses other than `samba_dc`'s."""
    with samba_domain(2) as domain:
        yield domain

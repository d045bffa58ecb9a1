"""`kind: ssh`: remote Linux and Windows servers over SSH, with nothing installed on them.

One persistent SSH connection per server, opened in `open()` and reused by every poll;
the agent makes a new instance (a new connection) after a failed run, and within the
poll when the server closed a connection that served earlier polls (KeptConnectionClosed). A poll is one
exec: a shell script on Linux (collectors/ssh/linux_poll.sh), one PowerShell invocation
on Windows (windows_poll.ps1), parsed here. The slow `inventory` signal (pending updates,
OS, kernel, hardware; every 6h by default) is a second exec on Linux only when due, and
part of the same PowerShell invocation on Windows.

paramiko blocks, so the lifecycle methods are plain: the agent runs them in threads,
and every command is bounded by `command_timeout` and by what is left of the run's timeout.
The server bounds it too, a second later: sshd does not stop a command started without a
terminal when its channel is closed, so a hung one would otherwise stay there for good.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial

from agent.collector import MAIN, Collector, Emitter, Signal
from agent.net.ssh import ConnectionClosed, KeptConnectionClosed, SshError, connect, run
from agent.reasons import shorten
from collectors.ssh import linux, windows
from collectors.ssh.config import SshConfig
from collectors.ssh.metrics import CONDITIONS, METRICS
from collectors.ssh.output import OutputError

INVENTORY = "inventory"
INVENTORY_HELP = "pending updates, OS, kernel and hardware"
MAX_REPLY = 4 << 20
MARGIN = 0.25  # seconds of the run's timeout kept for parsing and handing the result over
LEAST = 0.5  # an inventory with less time left than this fails at once, saying why
SERVER_GRACE = 1  # seconds a command may run on the server after vigil stopped waiting, before it is ended there
class SshCollector(Collector[SshConfig]):
    Config = SshConfig
    METRICS = METRICS
    CONDITIONS = CONDITIONS
    SIGNALS = {MAIN: Signal(), INVENTORY: Signal(every=6 * 3600.0, help=INVENTORY_HELP)}
    CONCURRENCY = 16  # polls at once: each holds a thread while its command runs

    client = None
    jump_client = None
    served = False  # the connection ran a command: closed later, it was closed while kept

    def signals(self) -> Mapping[str, Signal]:
        return {MAIN: Signal(), INVENTORY: Signal(every=self.config.updates_every, help=INVENTORY_HELP)}

    def open(self) -> None:
        jump = self.config._jump
        # connecting ends before the run's timeout, so a silent server is reported as such
        timeout = min(self.config.command_timeout, max(0.1, self.ctx.timeout - MARGIN))
        if jump is not None:
            self.jump_client = connect(jump.endpoint(timeout))
        self.client = connect(self.config.endpoint(timeout),
                              via=self.jump_client.get_transport() if self.jump_client else None)

    def collect(self, out: Emitter, due: frozenset[str]) -> None:
        """Every command ends before the run's own timeout would: a slow inventory (apt on a busy
        server) then fails its signal only, instead of failing the run, again and again."""
        config = self.config
        ends = self.ctx.clock.monotonic() + self.ctx.timeout - MARGIN
        if config.os == "windows":
            document = self._parsed(out, partial(windows.command, INVENTORY in due),
                                    f"the poll script {windows.SCRIPT_NAME}", windows.parse, ends)
            self._checked(windows.emit_poll, out, document, config.ignore_services, config.exclude_mountpoints)
            if INVENTORY in due:
                with out.signal(INVENTORY):
                    self._checked(windows.emit_inventory, out, document)
            return
        text = self._parsed(out, partial(linux.command, linux.POLL_SCRIPT), f"the poll script {linux.POLL_SCRIPT}",
                            str, ends)
        self._checked(linux.emit_poll, out, text, config.exclude_mountpoints, config.exclude_interfaces)
        if INVENTORY in due:
            with out.signal(INVENTORY):
                left = ends - self.ctx.clock.monotonic()
                if left < LEAST:
                    raise SshError(f"ssh {self._where}: {max(left, 0):.1f}s left of the run's "
                                   f"{self.ctx.timeout:g}s timeout for the inventory; give the target a "
                                   "longer timeout")
                inventory = self._parsed(out, partial(linux.command, linux.INVENTORY_SCRIPT),
                                         f"the inventory script {linux.INVENTORY_SCRIPT}", str, ends)
                self._checked(linux.emit_inventory, out, inventory)

    def close(self) -> None:
        for client in (self.client, self.jump_client):
            if client is not None:
                client.close()
        self.client = self.jump_client = None

    def _parsed(self, out: Emitter, command: Callable[[int], str], what: str, parse, ends: float):
        """Run one command (ending by `ends` at the latest, on the server a little later: `command(seconds)`
        is its line) and parse its reply; a failure names the server, the script (`what`, never its shell
        quoting) and what came back."""
        if self.client is None:
            raise SshError(f"ssh {self._where}: not connected")
        timeout = max(0.1, min(self.config.command_timeout, ends - self.ctx.clock.monotonic()))
        try:
            status, stdout, stderr = run(self.client, command(math.ceil(timeout) + SERVER_GRACE), timeout=timeout,
                                         max_bytes=MAX_REPLY, what=what)
        except SshError as exc:
            if isinstance(exc, ConnectionClosed) and self.served:  # nothing ran: the agent polls once more
                raise KeptConnectionClosed(f"ssh {self._where}: the server closed the connection") from None
            out.request("exec", "error")
            text = str(exc)
            if text.startswith("ssh: "):  # a lost connection does not know whose it was
                raise SshError(f"ssh {self._where}: {text[5:]}") from None
            raise
        out.request("exec", status)
        self.served = True
        if status != 0:
            said = stderr.decode("utf-8", "replace").strip().splitlines()
            raise SshError(f"ssh {self._where}: {what} exited with status {status}"
                           + (f": {shorten(said[-1], 200)}" if said else ""))
        return self._checked(parse, stdout.decode("utf-8", "replace"))

    def _checked(self, function, *args):
        try:
            return function(*args)
        except OutputError as exc:
            raise OutputError(f"ssh {self._where}: unexpected reply: {exc}") from None

    @property
    def _where(self) -> str:
        return self.config.endpoint(self.config.command_timeout).where

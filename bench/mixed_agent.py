"""A real `vigil run` over many mixed jobs against the lab, for bench/load.py and bench/soak.py.

The lab (tests/lab/mixed.py: sshd, snmpsim, upsd, vcsim, the Meraki and Graph fakes,
restic and borg repositories) runs in a child process of its own, so the fakes' threads
do not share this process's GIL with the scrapers being timed; the agent is a third process.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.lab.harness import Peer, free_port, http_get  # noqa: E402


@dataclass(frozen=True)
class Agent:
    url: str
    pid: int
    jobs: int
    log: Path


def _serve_lab(directory: Path, count: int, interval: float, listen: str, pipe) -> None:
    """In the child: start every peer, send the agent's config and the secrets it references
    (the lab's, set in this process's environment), keep serving until told to stop."""
    import os

    from tests.lab.mixed import start_mixed_lab

    with start_mixed_lab(directory) as lab:
        config = lab.config(count, interval, listen, directory / "state")
        pipe.send((config, {name: value for name, value in os.environ.items() if name.startswith("VIGIL_TEST_")}))
        pipe.recv()


@contextmanager
def mixed_agent(directory: Path, count: int, interval: float, ready_timeout: float = 120) -> Iterator[Agent]:
    """The lab in a child process and the agent on `count` jobs every `interval` s, until the block ends."""
    listen = f"127.0.0.1:{free_port()}"
    ours, theirs = multiprocessing.get_context("fork").Pipe()
    lab = multiprocessing.get_context("fork").Process(target=_serve_lab, daemon=True,
                                                      args=(directory, count, interval, listen, theirs))
    lab.start()
    agent = None
    try:
        if not ours.poll(300):
            raise SystemExit("the lab did not start within 300 s")
        text, secrets = ours.recv()
        config = directory / "vigil.yaml"
        config.write_text(text)
        agent = Peer([sys.executable, "-m", "agent.cli", "run", "-c", str(config)], directory / "agent.log",
                     secrets, cwd=ROOT)
        deadline = time.monotonic() + ready_timeout
        while not _ready(listen):
            if not agent.alive() or time.monotonic() > deadline:
                raise SystemExit(f"the agent did not get ready:\n{agent.output()[-2000:]}")
            time.sleep(0.2)  # waiting for /-/ready, bounded by ready_timeout
        yield Agent(f"http://{listen}/", agent.pid, count, directory / "agent.log")
    finally:
        if agent is not None:
            agent.stop()
        ours.send("stop")
        lab.join(60)


def _ready(listen: str) -> bool:
    try:
        return http_get(f"http://{listen}/-/ready", timeout=2)[0] == 200
    except OSError:
        return False

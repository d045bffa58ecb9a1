"""What comparing a drilled file with its live source costs, each way (checks/sources/livesource.py).

One file of --mib MiB of random bytes is hashed as a drill's `compare:` would: on this host
(`local`), by `sha256sum` on the server over SSH (`hash: remote`), and read over SFTP into a
hash here (`hash: stream`). The server is the lab's OpenSSH on loopback (tests/lab/sshd.py),
so the bytes cross no network: the figures are the hashing and the SSH transport alone.
Prints the wall time and the agent's CPU seconds (paramiko runs in the agent's threads); the
server's `sha256sum` is not in them, though on loopback it runs on this machine too.

    python bench/livesource.py [--mib 256]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.clock import Clock  # noqa: E402
from agent.config import AgentConfig  # noqa: E402
from checks.model import Candidate  # noqa: E402
from checks.sources.livesource import LiveSource  # noqa: E402
from tests.lab.sshd import sshd  # noqa: E402


class _Context:
    clock = Clock()


def _cpu(who: int) -> float:
    used = resource.getrusage(who)
    return used.ru_utime + used.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="the file's size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        data = tmp / "data.bin"
        with data.open("wb") as file:
            for _ in range(args.mib):
                file.write(os.urandom(1 << 20))
        os.utime(data, (1.7e9, 1.7e9))
        found = data.stat()
        candidate = Candidate("bench", str(data), found.st_size, found.st_mtime, found.st_ctime)
        with sshd(tmp / "sshd") as server:
            target = {"name": "fs1", "kind": "ssh", "host": server.host, "port": server.port, "user": server.user,
                      "key_file": str(server.key_file), "known_hosts": str(server.known_hosts)}
            print(f"{'way':8} {'MiB':>5} {'wall s':>7} {'agent CPU s':>12}")
            for way, compare, targets in (("local", {"target": "local"}, []),
                                          ("remote", {"target": "fs1"}, [target]),
                                          ("stream", {"target": "fs1", "hash": "stream"}, [target])):
                job = {"name": "bench", "schedule": "0 1 * * *", "deadline": "4h",
                       "primary": {"kind": "files", "path": str(tmp)}, "drill": {"compare": compare}}
                config = AgentConfig.model_validate({"targets": targets, "backups": [job]})
                source = LiveSource(config.backups[0].drill.compare, _Context())
                cpu, start = _cpu(resource.RUSAGE_SELF), time.perf_counter()
                try:
                    source.sha256(candidate)
                    wall = time.perf_counter() - start
                finally:
                    source.close()
                print(f"{way:8} {args.mib:>5} {wall:>7.2f} {_cpu(resource.RUSAGE_SELF) - cpu:>12.2f}")


if __name__ == "__main__":
    main()

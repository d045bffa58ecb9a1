"""Latency of the shared transports against real local peers: SSH commands and HTTPS requests.

SSH: connect (handshake + key auth) and `run()` of a trivial command on one connection,
against the lab's OpenSSH sshd. HTTPS: GETs of a small JSON answer through AsyncApi
(sequential, then 20 at once) and SyncApi, against the tests' own HTTPS server.

    python bench/net.py [--runs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from agent.clock import Clock  # noqa: E402
from agent.collector import Context  # noqa: E402
from agent.net.http import AsyncApi, SyncApi, ssl_context  # noqa: E402
from agent.net.ssh import SshEndpoint, connect, run  # noqa: E402
from agent.ratelimit import RateLimits  # noqa: E402
from tests.lab.http_peer import http_peer  # noqa: E402
from tests.lab.pki import make_pki  # noqa: E402
from tests.lab.sshd import sshd  # noqa: E402


def ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    return (f"p50 {statistics.median(ordered) * 1000:.1f} ms, "
            f"p95 {ordered[int(len(ordered) * 0.95) - 1] * 1000:.1f} ms")


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def bench_ssh(directory: Path, runs: int) -> None:
    with sshd(directory / "sshd") as server:
        endpoint = SshEndpoint(server.host, server.port, server.user, server.key_file, None, None,
                               server.known_hosts, None, 10.0)
        connects = []
        for _ in range(max(5, runs // 5)):
            started = time.perf_counter()
            connect(endpoint).close()
            connects.append(time.perf_counter() - started)
        print(f"ssh connect + auth: {ms(connects)} ({len(connects)} connections)")
        client = connect(endpoint)
        try:
            commands, plain = [], []
            for _ in range(runs):  # interleaved, so that the machine's load falls on both alike
                commands.append(timed(lambda: run(client, "true", timeout=10)))
                plain.append(timed(lambda: _plain_exec(client, "true")))
            print(f"ssh run('true') on one connection: {ms(commands)} ({runs} commands); "
                  f"paramiko's exec_command alone: {ms(plain)}")
            big = timed(lambda: run(client, "head -c 4000000 /dev/zero", timeout=30, max_bytes=5 << 20))
            print(f"ssh run() reading 4 MB: {big * 1000:.0f} ms")
        finally:
            client.close()


def _plain_exec(client, command: str) -> None:
    channel = client.get_transport().open_session()
    channel.exec_command(command)
    channel.recv_exit_status()
    channel.close()


def bench_http(directory: Path, runs: int) -> None:
    pki = make_pki(directory / "pki")
    clock = Clock()
    ctx = Context(clock, RateLimits(clock), directory, None)  # type: ignore[arg-type]
    with http_peer(pki) as server:
        async def scenario() -> None:
            api = AsyncApi(server.url, ctx, ca_file=pki.ca)
            try:
                await api.get_json("/warm", api="bench")
                sequential, plain = [], []
                raw = httpx.AsyncClient(base_url=server.url, verify=ssl_context(pki.ca))
                await raw.get("/warm")
                for _ in range(runs):  # interleaved with plain httpx, the baseline
                    started = time.perf_counter()
                    await api.get_json("/x", api="bench")
                    sequential.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    (await raw.get("/x")).json()
                    plain.append(time.perf_counter() - started)
                await raw.aclose()
                print(f"AsyncApi.get_json sequential: {ms(sequential)} ({runs} requests); "
                      f"plain httpx.AsyncClient: {ms(plain)}")
                started = time.perf_counter()
                await asyncio.gather(*(api.get_json("/y", api="bench") for _ in range(runs)))
                print(f"AsyncApi.get_json {runs} at once: {(time.perf_counter() - started) * 1000:.0f} ms in all")
            finally:
                await api.aclose()

        asyncio.run(scenario())
        with SyncApi(server.url, ctx, ca_file=pki.ca) as api:
            api.get_json("/warm", api="bench")
            samples = [timed(lambda: api.get_json("/z", api="bench")) for _ in range(runs)]
        print(f"SyncApi.get_json sequential: {ms(samples)} ({runs} requests)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        bench_ssh(Path(directory), arguments.runs)
        bench_http(Path(directory), arguments.runs)


if __name__ == "__main__":
    main()

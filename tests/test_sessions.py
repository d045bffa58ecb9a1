"""Sessions kept open between polls, against real peers that drop them: a poll after the drop succeeds.

Every kind that keeps a session (NUT, SSH, vCenter, SNMP, HTTP pools) is polled twice
through the agent's own run path (`Job.run`), with the peer dropping the session in
between: upsd at its real 60 s idle limit, sshd restarted or closing unused connections,
vcsim restarted or ending the session, snmpsim restarted, an HTTP server closing idle
keep-alive connections. A device that is really down still fails, once, with its reason.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import httpx
import pytest

from agent.collector import Context
from agent.config import AgentConfig
from agent.jobs import target_jobs
from agent.model import Result
from agent.scheduler import Job, Runtime, Slots, pool_sizes
from checks.sources.veeam import VeeamLocation
from tests.fakes.meraki import make_org
from tests.fakes.veeam import VeeamFake
from tests.kinds.ssh.fixtures import ssh_target
from tests.lab.harness import wait_until
from tests.lab.nut import ON_MAINS, nut
from tests.lab.pki import make_pki
from tests.lab.snmpsim import snmpsim
from tests.lab.sshd import sshd
from tests.lab.vcsim import start_vcsim


def agent_job(target: dict, context: Context) -> Job:
    """The job the agent makes for this target mapping (validated, defaults applied)."""
    spec = target_jobs(AgentConfig.model_validate({"targets": [target]}))[0]
    return Job(spec, replace(context, kind=spec.kind, target=spec.name, interval=spec.interval,
                             timeout=spec.timeout))


class Polls:
    """One job polled as the agent polls it, in one event loop: `poll()` runs it once."""

    def __init__(self, target: dict, context: Context):
        self.job = agent_job(target, context)
        self.loop = asyncio.new_event_loop()
        self.runtime = self.loop.run_until_complete(self._runtime(context))

    @staticmethod
    async def _runtime(context: Context) -> Runtime:
        return Runtime(context.clock, Slots(pool_sizes(4)))

    def poll(self) -> Result:
        return self.loop.run_until_complete(self.job.run(self.runtime))

    def poll_after_restart(self, peer, *again_args, settled=lambda: True) -> Result:
        """A good poll, the peer killed and started again on its port (once `settled()` holds), a poll."""
        assert_up(self.poll())
        peer.kill()
        again = peer.start_again(*again_args)
        try:
            self.idle(settled, 10, "the client to see the connection closed")
            return self.poll()
        finally:
            again.stop()

    def idle(self, check, timeout: float, what: str) -> None:
        """Wait between polls with the event loop running, as the agent's does (it sees the peer close)."""
        async def waiting() -> None:
            await asyncio.to_thread(wait_until, check, timeout, what)

        self.loop.run_until_complete(waiting())

    def close(self) -> None:
        self.loop.run_until_complete(self.job.discard(self.runtime))
        self.loop.close()


@contextmanager
def polls(target: dict, context: Context) -> Iterator[Polls]:
    runner = Polls(target, context)
    try:
        yield runner
    finally:
        runner.close()


def assert_up(result: Result) -> None:
    assert result.ok, result.error
    assert result.samples


@pytest.fixture
def rack(tmp_path) -> Iterator:
    """A upsd of its own with one unit on mains (these tests kill and restart it)."""
    with nut(tmp_path / "nut", {"rack1": ON_MAINS}) as lab:
        yield lab


# -- NUT ------------------------------------------------------------------------------------------------------------

def test_nut_session_that_upsd_dropped_at_its_60s_idle_limit_is_reopened_within_the_poll(nut_lab, context):
    """upsd sheds a client silent for more than 60 s (server/upsd.c, hard-coded); the default
    interval is 60 s with jitter, so half the polls of a real agent meet a dropped session."""
    with polls(nut_lab.target("online"), context) as runner:
        assert_up(runner.poll())
        session = runner.job.instance.session
        runner.idle(lambda: session.closed_by_peer, 75, "upsd to drop the idle client")
        result = runner.poll()
    assert_up(result)
    assert runner.job.instance is None or runner.job.instance.session is not session


def test_nut_upsd_restarted_between_polls_costs_no_poll(rack, context):
    with polls(rack.target("rack1"), context) as runner:
        assert_up(runner.poll_after_restart(rack))


def test_nut_upsd_that_is_down_still_fails_once_with_its_reason(rack, context):
    with polls(rack.target("rack1"), context) as runner:
        assert_up(runner.poll())
        rack.kill()
        result = runner.poll()
    assert not result.ok
    assert "cannot connect (Connection refused" in result.error, result.error
    assert context.api.requests().get(("nut", "error"), 0) <= 1


def test_nut_retry_on_a_new_session_ends_at_the_job_s_timeout(rack, context):
    """upsd closed the session, and a new one is accepted and never answered: the retry runs
    inside the run's own timeout, so the poll fails at that timeout, not later."""
    with polls(rack.target("rack1", timeout="2s", nut_timeout="10s"), context) as runner:
        assert_up(runner.poll())
        rack.kill()
        silent = socket.create_server(("127.0.0.1", rack.port))  # accepts (the backlog), never answers
        try:
            result = runner.poll()
        finally:
            silent.close()
    assert not result.ok
    assert result.error == "timed out after 2s", result.error


# -- SSH ------------------------------------------------------------------------------------------------------------

def _transport_closed(runner: Polls) -> bool:
    transport = runner.job.instance.client.get_transport()
    return transport is None or not transport.is_active()


def test_ssh_sshd_restarted_between_polls_costs_no_poll(tmp_path, context):
    with sshd(tmp_path / "sshd") as server, polls(ssh_target(server, timeout="10s"), context) as runner:
        assert_up(runner.poll_after_restart(server, tmp_path / "sshd-again.log",
                                            settled=lambda: _transport_closed(runner)))


def test_ssh_connection_sshd_closed_as_unused_is_reopened_within_the_poll(tmp_path, context):
    """OpenSSH 9.2's UnusedConnectionTimeout closes a connection with no open channel: vigil's,
    between two polls."""
    with sshd(tmp_path / "sshd", options="UnusedConnectionTimeout 2s\n") as server, \
            polls(ssh_target(server, timeout="10s"), context) as runner:
        assert_up(runner.poll())
        runner.idle(lambda: _transport_closed(runner), 20, "sshd to close the unused connection")
        result = runner.poll()
    assert_up(result)


def test_ssh_sshd_that_is_down_still_fails_once_with_its_reason(tmp_path, context):
    with sshd(tmp_path / "sshd") as server, polls(ssh_target(server, timeout="10s"), context) as runner:
        assert_up(runner.poll())
        server.kill()
        runner.idle(lambda: _transport_closed(runner), 10, "the client to see the connection closed")
        result = runner.poll()
    assert not result.ok
    assert "connection refused; check the host and port, and that sshd runs" in result.error, result.error


# -- vCenter --------------------------------------------------------------------------------------------------------

def test_vcenter_restarted_between_polls_costs_no_poll(tmp_path, vcsim_env, context):
    with start_vcsim(tmp_path / "vcsim") as sim, polls(sim.target(timeout="20s"), context) as runner:
        assert_up(runner.poll_after_restart(sim))


def test_vcenter_session_ended_by_the_server_is_made_again_poll_after_poll(vcsim, context):
    """vCenter ends a session (its idle timeout, an administrator): the next call is refused
    (vcsim: ManagedObjectNotFound for the session's view; vCenter: NotAuthenticated). Three
    such ends in a row, each poll still good."""
    with polls(vcsim.target(timeout="20s"), context) as runner:
        admin = vcsim.connect()
        for _ in range(3):
            assert_up(runner.poll())
            ours = [session.key for session in admin.content.sessionManager.sessionList
                    if session.key != admin.content.sessionManager.currentSession.key]
            admin.content.sessionManager.TerminateSession(ours)
        assert_up(runner.poll())
        assert runner.job.instance.session.generation == 4  # logged in again after each end


def test_vcenter_that_is_down_still_fails_once_with_its_reason(tmp_path, vcsim_env, context):
    with start_vcsim(tmp_path / "vcsim") as sim, polls(sim.target(timeout="20s"), context) as runner:
        assert_up(runner.poll())
        sim.kill()
        result = runner.poll()
    assert not result.ok
    assert f"cannot reach vCenter 127.0.0.1:{sim.port}" in result.error, result.error


# -- SNMP -----------------------------------------------------------------------------------------------------------

@pytest.fixture
def snmp_peer(tmp_path) -> Iterator:
    """An snmpsim of its own (these tests kill and restart it)."""
    with snmpsim(tmp_path / "snmpsim") as lab:
        yield lab


@pytest.mark.parametrize("version", ["2c", "3"])
def test_snmp_agent_restarted_between_polls_costs_no_poll(snmp_peer, context, version):
    """For v3 the restarted agent's engine boots and time start again (and its engine ID is
    new when generated), which pysnmp's cached view of the agent must follow."""
    target = snmp_peer.v2c("ups", community="ups-mib") if version == "2c" else snmp_peer.v3("ups", "ups-mib")
    with polls({**target, "timeout": "10s"}, context) as runner:
        assert_up(runner.poll_after_restart(snmp_peer))


def test_snmp_v3_agent_that_is_down_still_fails_once_with_its_reason_within_the_timeout(snmp_peer, context):
    """Its first request is tried on a new session too; both fit in the job's timeout."""
    with polls({**snmp_peer.v3("ups", "ups-mib"), "timeout": "4s"}, context) as runner:
        assert_up(runner.poll())
        snmp_peer.kill()
        result = runner.poll()
    assert not result.ok
    assert "no SNMP answer within" in result.error, result.error
    assert context.api.requests()[("snmp", "timeout")] == 2  # the kept session's request and the new one's


# -- tokens that expire between polls --------------------------------------------------------------------------------

def test_graph_tokens_expired_early_poll_after_poll_each_earn_a_new_one(m365_target, graph_fake, context):
    """msal reuses a token until 5 minutes before its stated expiry; Graph may refuse it sooner
    (a revoked token, a tenant policy): three such refusals in a row, each poll still good."""
    with polls({**m365_target("secret"), "name": "m365"}, context) as runner:
        for _ in range(3):
            assert_up(runner.poll())
            graph_fake.expire_tokens()
        result = runner.poll()
    assert_up(result)
    assert not [signal for signal in result.signals if not signal.ok]
    assert graph_fake.token_requests == ["secret"] * 4
    assert context.api.requests()[("healthOverviews", "401")] == 3


def test_veeam_tokens_of_one_second_expire_between_polls_and_a_used_refresh_token_falls_back(tmp_path, context,
                                                                                               monkeypatch):
    """VBR's tokens live 15 minutes and each refresh token works once; here 1 s, on the real clock."""
    pki = make_pki(tmp_path / "pki")
    with VeeamFake(pki, token_lifetime=1.0) as fake:
        job = fake.add_job("Nightly")
        fake.add_session(job, "Success", time.time() - 7200, time.time() - 6000)
        monkeypatch.setenv("VIGIL_TEST_VEEAM_PASSWORD", fake.password)
        location = VeeamLocation(VeeamLocation.Config.model_validate({
            "kind": "veeam", "url": fake.url, "user": fake.user, "password": "${env:VIGIL_TEST_VEEAM_PASSWORD}",
            "job": "Nightly", "ca_file": str(pki.ca)}), context)
        polled = []
        for poll in range(4):
            if poll == 3:  # someone used the refresh token vigil holds (a replay, a copied state)
                used = httpx.post(f"{fake.url}/api/oauth2/token", verify=ssl.create_default_context(cafile=pki.ca),
                                  data={"grant_type": "refresh_token", "refresh_token": fake.issued[-1]},
                                  headers={"x-api-version": "1.1-rev0"})
                assert used.status_code == 200
            polled.append(len(location.backups()))
            time.sleep(1.2)  # past the token's lifetime
    assert polled == [1, 1, 1, 1]
    assert fake.token_requests == ["password", "refresh_token", "refresh_token", "refresh_token",
                                   "refresh_token", "password"]
    assert fake.errors == ["InvalidToken"]


# -- HTTP keep-alive ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["meraki", "m365"])
def test_http_keep_alive_connections_the_server_closed_while_idle_cost_no_poll(kind, request, context):
    """httpx's pool (Meraki, Graph) and msal's requests session (the token) reuse connections."""
    if kind == "meraki":
        fake = request.getfixturevalue("meraki_fakes")([make_org("549236", "Sessions", networks=1, devices=3)])
        target = request.getfixturevalue("meraki_target")(fake)
    else:
        fake, target = request.getfixturevalue("graph_fake"), request.getfixturevalue("m365_target")("secret")
    fake.close_idle_after(1)
    with polls({**target, "name": kind}, context) as runner:
        assert_up(runner.poll())
        assert fake.open_connections
        runner.idle(lambda: fake.open_connections == 0, 10, "the server to close the idle connections")
        if kind == "m365":
            fake.expire_tokens()  # the next poll asks the authority again, on msal's kept session
        result = runner.poll()
    assert_up(result)
    assert not [signal for signal in result.signals if not signal.ok]
    assert not [code for (_, code) in context.api.requests() if code in ("error", "timeout")]

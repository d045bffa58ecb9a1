"""The agent under load: concurrent scrapers, slowloris and idle connections, many mixed targets.

Every job is a real collection against the lab peers (tests/lab/mixed.py). Latencies and
memory are printed (run with -s) and recorded with fault_report, not asserted: the only
time bound is Prometheus' own default scrape timeout (10 s), which a good scrape must
beat while bad connections are held. bench/load.py and bench/soak.py run the long versions.
"""

from __future__ import annotations

import os

import pytest

from tests.lab.load import bad_clients, failed, good_scrapes, percentile, scrape_storm, soak, status, wait_for_cycle
from tests.lab.mixed import MixedLab, start_mixed_lab

SCRAPE_TIMEOUT = 10.0  # Prometheus' default scrape_timeout: a slower answer is a failed scrape
SOAK_MINUTES = float(os.environ.get("VIGIL_SOAK_MINUTES", "10"))


@pytest.fixture(scope="module")
def mixed_lab(tmp_path_factory, ssh_server, snmp_lab, nut_lab) -> MixedLab:
    """One lab for the module's agents: vcsim, the fakes and the repositories are started once."""
    with start_mixed_lab(tmp_path_factory.mktemp("mixed-lab"), ssh_server, snmp_lab, nut_lab) as lab:
        yield lab


@pytest.fixture
def mixed_agent(mixed_lab, write_config, start_agent, tmp_path):
    """Start the agent on `count` mixed jobs collecting every `interval` s."""

    def start(count: int, interval: float):
        config = mixed_lab.config(count, interval, "127.0.0.1:{port}", tmp_path / "state")
        return start_agent(write_config(config))

    return start


def test_50_scrapers_while_every_job_collects_each_second_get_only_whole_expositions(mixed_agent, fault_report):
    jobs = 20
    agent = mixed_agent(jobs, interval=1.0)
    wait_for_cycle(agent.url, jobs, timeout=60)
    before = {job["name"]: job["last_run"] for job in status(agent.url)["jobs"]}

    storm = scrape_storm(agent.url, jobs, clients=50, seconds=5)

    print(f"\n50 scrapers for 5 s, {jobs} jobs every 1 s: {storm.figures()}")
    assert storm.errors == [], storm.errors[:5]
    assert storm.latencies, "no scrape was answered"
    after = status(agent.url)["jobs"]
    assert sum(job["last_run"] != before[job["name"]] for job in after) >= jobs // 2, "collections stalled"
    fault_report(fault="50 concurrent scrapers for 5 s", expected="every scrape 200 and whole",
                 observed=f"{len(storm.latencies)} whole, 0 errors, p99 {percentile(storm.latencies, 0.99):.2f} s")


def test_200_slowloris_and_idle_connections_do_not_starve_a_good_scraper(mixed_agent, fault_report):
    jobs = 20
    agent = mixed_agent(jobs, interval=1.0)
    wait_for_cycle(agent.url, jobs, timeout=60)

    with bad_clients(agent.url, slowloris=100, idle=100) as held:
        good = good_scrapes(agent.url, jobs, seconds=5)

    print(f"\nwith 100 slowloris and 100 idle connections held: {good.figures()}; "
          f"the server ended {held.dropped} of them (opened again)")
    assert good.errors == [], good.errors[:5]
    assert good.latencies and max(good.latencies) < SCRAPE_TIMEOUT
    fault_report(fault="200 slowloris and idle connections held", expected="a good scrape answered in seconds",
                 observed=f"{len(good.latencies)} good scrapes, slowest {max(good.latencies):.2f} s")


def test_60_mixed_targets_are_all_collected_in_the_first_cycle(mixed_agent, fault_report):
    jobs = 60
    agent = mixed_agent(jobs, interval=60.0)

    cycle = wait_for_cycle(agent.url, jobs, timeout=120)

    print(f"\n{jobs} mixed jobs: first full cycle in {cycle.seconds:.1f} s", *cycle.by_kind(), sep="\n")
    assert failed(cycle.document) == []
    assert len(cycle.document["jobs"]) == jobs
    fault_report(fault="60 mixed targets, one cycle", expected="every job collected",
                 observed=f"all {jobs} ok, first cycle {cycle.seconds:.1f} s")


@pytest.mark.soak
def test_500_mixed_targets_complete_their_cycle_and_memory_stays_flat(mixed_agent, fault_report):
    jobs = 500
    agent = mixed_agent(jobs, interval=60.0)

    run = soak(agent.url, agent.peer.pid, jobs, SOAK_MINUTES * 60)

    print(f"\n{jobs} mixed jobs for {SOAK_MINUTES:g} min: {run.figures()}", *run.cycle.by_kind(), sep="\n")
    assert run.failed_first == [] and run.failed_last == []
    growth = run.rss[-1][1] - run.rss[0][1]
    assert growth < 0.1 * run.rss[0][1], f"RSS grew {growth:.1f} MiB after the first cycle"
    fault_report(fault=f"500 mixed targets, {SOAK_MINUTES:g} min soak", expected="every job collected, RSS flat",
                 observed=f"first cycle {run.cycle.seconds:.0f} s, RSS {run.rss[0][1]:.0f}->{run.rss[-1][1]:.0f} MiB")

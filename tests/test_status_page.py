"""The status page in a real browser: the summary, the verdicts, ages with exact times, a phone's width.

At a phone's width (390 px) and a desktop's (1280 px) no text may end past the window's right
edge, where a reader would have to scroll sideways to find it (the reason column did).

Screenshots are kept in .artifacts/ (desktop and phone) for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from tests.conftest import ROOT
from tests.lab.browser import chromium, offscreen
from tests.lab.harness import wait_until

CONFIG = """
listen: 127.0.0.1:{port}
state_dir: {state}
targets:
  - {name: monitor-01, kind: host}
  - {name: nas-01, kind: failing}
  - {name: srv-01, kind: slow}
backups:
  - name: erp-dumps
    schedule: "WINDOW"
    timezone: Europe/Brussels
    deadline: 4h
    primary: {kind: files, path: "DUMPS", pattern: "db-*.sql.gz"}
  - name: fileserver-nightly
    schedule: "0 1 * * *"
    timezone: UTC
    deadline: 4h
    primary: {kind: files, path: "MISSING", pattern: "*"}
"""


def test_the_status_page_as_a_browser_shows_it(tmp_path, start_agent, write_config):
    """fileserver-nightly's reason names a folder as long as a digest, without a break: the page still fits."""
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    dump = dumps / "db-1.sql.gz"
    dump.write_bytes(b"x")
    yesterday = time.time() - 20 * 3600
    os.utime(dump, (yesterday, yesterday))
    # the nightly window opened 10 minutes before that dump, whatever the time of day now
    opened = datetime.fromtimestamp(yesterday - 600, ZoneInfo("Europe/Brussels"))
    missing = tmp_path / ("gone-" + "0123456789abcdef" * 6)
    config = write_config(CONFIG.replace("DUMPS", str(dumps)).replace("MISSING", str(missing))
                          .replace("WINDOW", f"{opened.minute} {opened.hour} * * *"))
    agent = start_agent(config, test_kinds=True)
    wait_until(lambda: all(job["last_run"] for job in json.loads(agent.get("/status.json")[1])["jobs"]),
               20, "every job's first run")

    artifacts = ROOT / ".artifacts"
    artifacts.mkdir(exist_ok=True)
    page = chromium(agent.url + "/", tmp_path / "profile")
    summary = re.search(r"<p class=\"summary bad\" id=\"summary\">(.*?)</p>", page, re.S)
    assert summary, page[:2000]
    assert "1 of 3 targets down (nas-01)" in summary.group(1)
    assert "1 of 2 backups not ok (fileserver-nightly)" in summary.group(1)
    assert re.search(r"<span class=\"badge bad\">unreachable</span>", page)
    served = agent.get("/")[1].decode()
    for name, size in (("status-page.png", "1280,900"), ("status-page-phone.png", "390,844")):
        assert offscreen(served, tmp_path / "profile", size) == [], f"text a reader must scroll sideways to, {size}"
        chromium(agent.url + "/", tmp_path / "profile", screenshot=artifacts / name, size=size)
        assert (artifacts / name).stat().st_size > 10_000
    assert re.search(r"title=\"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CES?T\">20 h ago <small>\d{4}-\d\d-\d\d \d\d:\d\d "
                     r"CES?T</small></time>", page), "the newest dump's age, and its exact time in the job's own zone"
    assert "Connection refused" in page and "ConnectionRefusedError" not in page, "the reason in words, no class"
    assert ">updates</span>" in page
    assert "http-equiv=\"refresh\"" in page and "src=" not in page, "refreshes itself, loads nothing else"


"""`python -m tests.run_agent ARGS`: the real CLI, with the test-only kinds registered.

With VIGIL_TEST_WALL_STEP naming a file, the agent's wall clock is off by the seconds
written in it, so a test can step the wall clock (as `date -s` does) while the monotonic
clock runs on, without touching this machine's clock.
"""

import os
import sys
from pathlib import Path

from agent import registry
from agent.cli import main
from agent.clock import Clock
from tests.fake_collectors import KINDS

registry.COLLECTORS.update(KINDS)
if step_file := os.environ.get("VIGIL_TEST_WALL_STEP"):
    machine_time = Clock.time
    Clock.time = lambda self: machine_time(self) + float(Path(step_file).read_text() or 0)
sys.exit(main(sys.argv[1:]))

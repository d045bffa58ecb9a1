"""`python -m tests.run_agent ARGS`: the real CLI, with the test-only kinds registered."""

import sys

from agent import registry
from agent.cli import main
from tests.fake_collectors import KINDS

registry.COLLECTORS.update(KINDS)
sys.exit(main(sys.argv[1:]))

"""One package per family of kinds, each with config.py, metrics.py, collector.py and a README.md kind page
(agent.registry names the collector class of each kind; docs/contributing.md walks through one)."""

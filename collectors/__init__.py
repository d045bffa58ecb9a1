"""One module per source; each exposes one collector class (see agent.registry)."""

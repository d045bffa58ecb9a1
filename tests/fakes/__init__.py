"""Contract fakes of the APIs that have no runnable peer, in the shapes their specs document."""

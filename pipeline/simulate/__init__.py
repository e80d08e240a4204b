"""`outreach simulate`: the living loop, round after round on a synthetic world (docs/simulation.md)."""

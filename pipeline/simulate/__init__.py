"""``outreach simulate``: the living loop, round after round on a synthetic world.

See docs/simulation.md.
"""

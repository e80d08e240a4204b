"""Scoring a round: ranks and tiers per 읍면동, reasons with evidence, lists and the manifest."""

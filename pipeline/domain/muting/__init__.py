"""Muting: silences, inhibition and the muter that answers for both (see docs/architecture.md, Muting)."""

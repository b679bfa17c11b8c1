"""Checks for the exercises of notebook rnns (filled in with that notebook)."""

__all__: list[str] = []

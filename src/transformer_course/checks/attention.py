"""Checks for the exercises of notebook attention (filled in with that notebook)."""

__all__: list[str] = []

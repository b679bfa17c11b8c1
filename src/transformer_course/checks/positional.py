"""Checks for the exercises of notebook positional (filled in with that notebook)."""

__all__: list[str] = []

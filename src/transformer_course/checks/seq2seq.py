"""Checks for the exercises of notebook seq2seq (filled in with that notebook)."""

__all__: list[str] = []

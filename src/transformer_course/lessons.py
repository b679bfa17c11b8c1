"""The effects the notebooks teach, asserted with a margin and measured on several seeds.

Each notebook takes its seed from one line at its top::

    SEED = lessons.course_seed()   # 0 unless the environment sets COURSE_SEED

and derives every experiment's seed from it. Where a notebook asserts the effect it teaches,
it calls :func:`lesson` instead of a bare ``assert``::

    lessons.lesson("GRU recall at distance 20", acc, at_least=0.9)

which prints the value beside the spread that ``make seeds`` measured on seeds 0 to 4
(``bench/seeds.py`` writes it into ``seed_spreads.json`` here and into ``bench/seeds.md``) and
fails the cell when the value misses the margin. Under ``make seeds`` (the environment sets
``COURSE_LESSONS`` to a file) a lesson is recorded there instead and a miss does not stop the
notebook, so every lesson of a seed gets measured.
"""

from __future__ import annotations

import json
import math
import os
from functools import cache
from pathlib import Path

SEED_ENV = "COURSE_SEED"
RECORD_ENV = "COURSE_LESSONS"
SPREADS_ENV = "COURSE_SPREADS"
SPREADS = Path(__file__).with_name("seed_spreads.json")


def course_seed() -> int:
    """The seed of this run: the environment's ``COURSE_SEED`` (an int >= 0), else 0."""
    raw = os.environ.get(SEED_ENV, "").strip()
    if not raw:
        return 0
    try:
        seed = int(raw)
    except ValueError:
        raise ValueError(f"course_seed expects {SEED_ENV} to be an int >= 0, got {raw!r}") from None
    if not 0 <= seed < 2**31:
        raise ValueError(f"course_seed expects {SEED_ENV} to be an int in [0, 2**31), got {seed}")
    return seed


@cache
def measured_spreads() -> dict:
    """The committed table of ``make seeds``: lesson name -> its values on each seed."""
    path = Path(os.environ.get(SPREADS_ENV) or SPREADS)  # a pilot's table, when the environment names one
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def spread(name: str, fmt: str = ".3g") -> str:
    """How the lesson came out on the measured seeds, e.g. "seeds 0-4: 0.91 to 1.00"."""
    entry = measured_spreads().get("lessons", {}).get(name)
    if not entry or not entry.get("values"):
        return "not yet measured on several seeds (make seeds)"
    seeds, values = entry["seeds"], [v for v in entry["values"] if v is not None]
    label = f"seeds {seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else \
        "seeds " + ", ".join(map(str, seeds))
    return f"{label}: {format(min(values), fmt)} to {format(max(values), fmt)}"


def _bound(bound: float, fmt: str) -> str:
    """A margin in the value's own format (0.02 as "2.00%" beside percentages), unless that
    format would round it: then as it was written (``:g``)."""
    text = format(bound, fmt)
    try:
        shown = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        return f"{bound:g}"
    return text if math.isclose(shown, bound, rel_tol=1e-9, abs_tol=1e-12) else f"{bound:g}"


def lesson(name: str, value: float, *, at_least: float | None = None, at_most: float | None = None,
           fmt: str = ".3g") -> None:
    """Assert the effect a notebook teaches: ``value`` within ``[at_least, at_most]``.

    Prints the value, the margin and the spread across seeds; raises ``AssertionError`` with
    all three when the value misses the margin (unless ``make seeds`` is recording). Returns
    nothing, so that a cell ending in a lesson does not echo the bare value under its line.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"lesson expects a non-empty name, got {name!r}")
    if at_least is None and at_most is None:
        raise ValueError(f"lesson {name!r} expects a margin: at_least=, at_most= or both")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"lesson {name!r} expects a number, got {type(value).__name__} {value!r}") from None
    passed = not math.isnan(value) and (at_least is None or value >= at_least) and \
        (at_most is None or value <= at_most)
    bounds = " and ".join(s for s in (at_least is not None and f">= {_bound(at_least, fmt)}",
                                      at_most is not None and f"<= {_bound(at_most, fmt)}") if s)
    line = f"{name}: {format(value, fmt)} (the lesson asserts {bounds}; {spread(name, fmt)})"
    record = os.environ.get(RECORD_ENV)
    if record:
        with open(record, "a", encoding="utf-8") as f:
            f.write(json.dumps({"name": name, "value": value, "at_least": at_least,
                                "at_most": at_most, "passed": passed, "fmt": fmt}) + "\n")
    print(("lesson holds: " if passed else "LESSON MISSED: ") + line)
    if not passed and not record:
        raise AssertionError(f"the lesson {name!r} does not hold on this run: {line}")

"""lessons: the run's seed, asserted lessons, their spreads; and the committed table of seeds."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

from transformer_course import lessons

ROOT = Path(__file__).resolve().parents[1]


def _seeds_module():
    spec = importlib.util.spec_from_file_location("bench_seeds", ROOT / "bench" / "seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def no_table(monkeypatch, tmp_path):
    """No committed spreads and no recording: lessons behave as in a fresh checkout."""
    monkeypatch.setenv(lessons.SPREADS_ENV, str(tmp_path / "none.json"))
    monkeypatch.delenv(lessons.RECORD_ENV, raising=False)
    lessons.measured_spreads.cache_clear()
    yield tmp_path
    lessons.measured_spreads.cache_clear()


# --- the seed --------------------------------------------------------------------------------

def test_course_seed_defaults_to_0_and_reads_the_environment(monkeypatch):
    monkeypatch.delenv(lessons.SEED_ENV, raising=False)
    assert lessons.course_seed() == 0
    monkeypatch.setenv(lessons.SEED_ENV, " 3 ")
    assert lessons.course_seed() == 3


@pytest.mark.parametrize("raw, words", [("one", "int >= 0, got 'one'"), ("-1", "got -1"),
                                        ("1.5", "got '1.5'")])
def test_course_seed_rejects_what_is_not_a_seed(monkeypatch, raw, words):
    monkeypatch.setenv(lessons.SEED_ENV, raw)
    with pytest.raises(ValueError, match=re.escape(words)):
        lessons.course_seed()


# --- a lesson ----------------------------------------------------------------------------------

def test_a_lesson_that_holds_prints_value_margin_and_spread(no_table, capsys):
    assert lessons.lesson("gap", 0.42, at_least=0.3, fmt=".2f") is None  # a cell ending in it echoes nothing
    out = capsys.readouterr().out
    assert out.startswith("lesson holds: gap: 0.42 (the lesson asserts >= 0.30;")
    assert "not yet measured" in out


def test_a_margin_is_printed_in_the_value_s_format_unless_that_would_round_it(no_table, capsys):
    lessons.lesson("share", -0.004, at_most=0.02, fmt=".2%")
    assert "(the lesson asserts <= 2.00%;" in capsys.readouterr().out
    lessons.lesson("count", 3.0, at_least=0.5, fmt=".0f")  # "0" or "1" would misstate the margin
    assert "(the lesson asserts >= 0.5;" in capsys.readouterr().out


@pytest.mark.parametrize("value, bounds", [(0.2, {"at_least": 0.3}), (5.0, {"at_most": 1.0}),
                                           (0.5, {"at_least": 0.6, "at_most": 0.9}),
                                           (float("nan"), {"at_least": 0.0})])
def test_a_missed_lesson_fails_the_cell_and_says_what_was_asserted(no_table, value, bounds):
    with pytest.raises(AssertionError, match="does not hold on this run") as err:
        lessons.lesson("ratio", value, **bounds)
    assert ">=" in str(err.value) or "<=" in str(err.value)


def test_a_lesson_needs_a_margin_a_name_and_a_number(no_table):
    with pytest.raises(ValueError, match="expects a margin"):
        lessons.lesson("x", 1.0)
    with pytest.raises(TypeError, match="non-empty name"):
        lessons.lesson("", 1.0, at_least=0)
    with pytest.raises(TypeError, match="expects a number, got str"):
        lessons.lesson("x", "high", at_least=0)


def test_under_make_seeds_a_miss_is_recorded_not_raised(no_table, monkeypatch, capsys):
    record = no_table / "lessons.jsonl"
    monkeypatch.setenv(lessons.RECORD_ENV, str(record))
    lessons.lesson("holds", 1.0, at_least=0.5)
    lessons.lesson("misses", 0.1, at_least=0.5, fmt=".2f")
    rows = [json.loads(x) for x in record.read_text().splitlines()]
    assert [(r["name"], r["passed"], r["fmt"]) for r in rows] == [("holds", True, ".3g"),
                                                                  ("misses", False, ".2f")]
    assert "LESSON MISSED: misses: 0.10" in capsys.readouterr().out


def test_the_spread_comes_from_the_table(no_table, monkeypatch):
    table = no_table / "spreads.json"
    table.write_text(json.dumps({"lessons": {"gap": {"seeds": [0, 1, 2, 3, 4],
                                                     "values": [0.91, 1.0, 0.95, 0.93, 0.99]}}}))
    monkeypatch.setenv(lessons.SPREADS_ENV, str(table))
    lessons.measured_spreads.cache_clear()
    assert lessons.spread("gap", ".2f") == "seeds 0-4: 0.91 to 1.00"
    assert "not yet measured" in lessons.spread("other")


# --- the committed table of make seeds ---------------------------------------------------------

def _committed() -> dict:
    assert lessons.SPREADS.exists(), "no table of seeds: run `make seeds`"
    return json.loads(lessons.SPREADS.read_text(encoding="utf-8"))


def test_the_table_of_seeds_is_not_older_than_the_code_it_measured():
    seeds = _seeds_module()
    assert _committed()["hash"] == seeds.source_hash(), (
        "bench/seeds.md was measured on other code or notebooks than these: run `make seeds` "
        "(about 20 minutes) and commit bench/seeds.md and src/transformer_course/seed_spreads.json")


def test_every_lesson_held_on_every_seed_and_every_run_finished():
    table = _committed()
    assert table["seeds"] == [0, 1, 2, 3, 4]
    missed = {name: e["values"] for name, e in table["lessons"].items() if not all(e["passed"])}
    assert not missed, f"lessons that failed on some seed (values per seed): {missed}"
    errors = [r for r in table["runs"] if r["error"]]
    assert not errors, f"runs that failed outside a lesson: {errors}"


def _lesson_names(path: Path) -> list[str]:
    code = "\n".join(c.source for c in nbformat.read(path, 4).cells if c.cell_type == "code")
    return re.findall(r"lessons\.lesson\(\s*(?:f?)\"([^\"]+)\"", code)


def test_every_lesson_in_the_notebooks_was_measured_and_names_are_unique():
    seeds = _seeds_module()
    names = [n for p in seeds.lesson_notebooks() for n in _lesson_names(p)]
    assert names, "no notebook asserts a lesson"
    repeated = sorted({n for n in names if names.count(n) > 1})
    assert not repeated, f"lesson names repeat: {repeated}"
    measured = set(_committed()["lessons"])
    assert set(names) == measured, (f"not measured: {set(names) - measured}; "
                                    f"measured but gone: {measured - set(names)}")


# a seed written as a bare number (seed=1, set_seed(0)); seed=SEED + 1 is derived and fine
LITERAL_SEED = re.compile(r"(set_seed|manual_seed|generator)\(\d[\d_]*\s*[,)]|\bseed=\d[\d_]*\s*[,)]"
                          r"|seed=ipywidgets\.fixed\(\d")


def test_every_lecture_notebook_takes_its_seed_from_one_line():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = [c.source for c in nbformat.read(path, 4).cells if c.cell_type == "code"]
        assert "SEED = lessons.course_seed()" in cells[0], f"{path.name}: no SEED line in its first code cell"
        literal = [ln for src in cells for ln in src.splitlines() if LITERAL_SEED.search(ln)]
        assert not literal, f"{path.name}: a seed not derived from SEED: {literal}"

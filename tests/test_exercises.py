"""exercises/ is generated from solutions/, stays in sync, and runs untouched."""

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))
CHECK_CELL = re.compile(r"^checks\.check_\w+\(\w+\)\s*$")

spec = importlib.util.spec_from_file_location("make_exercises", ROOT / "tools" / "make_exercises.py")
make_exercises = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_exercises)


def test_there_is_an_exercise_for_every_solution_and_no_other():
    assert SOLUTIONS, "solutions/ holds no notebook"
    assert [p.name for p in SOLUTIONS] == [p.name for p in EXERCISES]


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_exercise_is_up_to_date_with_its_solution(solution):
    expected = make_exercises.render(make_exercises.build_exercise(nbformat.read(solution, 4)))
    actual = (ROOT / "exercises" / solution.name).read_text(encoding="utf-8")
    assert actual == expected, f"exercises/{solution.name} is out of date: run `make exercises`"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_solution_has_tasks_with_markers_and_checks(solution):
    cells = [c.source for c in nbformat.read(solution, 4).cells if c.cell_type == "code"]
    tasks = sum(s.count("### BEGIN SOLUTION") for s in cells)
    assert tasks >= 2, f"{solution.name} has {tasks} task(s); every exercise notebook needs at least 2"
    assert tasks == sum(s.count("### END SOLUTION") for s in cells)
    assert sum(bool(CHECK_CELL.match(s)) for s in cells) >= tasks


def test_generator_names_the_task_and_strips_answers_and_outputs():
    solution = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
        outputs=[nbformat.v4.new_output("stream", text="hi")], execution_count=3)])
    exercise = make_exercises.build_exercise(solution)
    source = exercise.cells[0].source
    assert "return 2 * x" not in source and "BEGIN SOLUTION" not in source
    assert 'raise NotImplementedError("double: write this part' in source
    assert exercise.cells[0].outputs == [] and exercise.cells[0].execution_count is None
    assert solution.cells[0].outputs, "the solution itself must not be modified"


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda p: p.name)
def test_untouched_exercise_runs_and_reports_every_task_not_done(exercise):
    nb = nbformat.read(exercise, 4)
    stored = [c for c in nb.cells if c.cell_type == "code" and c.get("outputs")]
    assert not stored, "exercises are committed without outputs"
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(exercise.parent)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert all(e.ename == "NotImplementedError" for e in errors), [f"{e.ename}: {e.evalue}" for e in errors]
    checks = [c for c in nb.cells if c.cell_type == "code" and CHECK_CELL.match(c.source)]
    assert checks, f"{exercise.name} has no check cell"
    for cell in checks:
        text = "".join(o.get("text", "") for o in cell.outputs)
        assert "not done yet" in text, f"check cell {cell.source!r} printed {text!r}, not 'not done yet'"

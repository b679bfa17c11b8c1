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
CHECK_CELL = re.compile(r"^checks\.check_\w+\(.*\)\s*(#.*)?$")

spec = importlib.util.spec_from_file_location("make_exercises", ROOT / "tools" / "make_exercises.py")
make_exercises = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_exercises)


def test_there_is_an_exercise_for_every_solution_and_no_other():
    assert SOLUTIONS, "solutions/ holds no notebook"
    assert [p.name for p in SOLUTIONS] == [p.name for p in EXERCISES]


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_exercise_is_up_to_date_with_its_solution(solution):
    stamped = make_exercises.stamp(nbformat.read(solution, 4))
    assert make_exercises.render(stamped) == solution.read_text(encoding="utf-8"), (
        f"solutions/{solution.name} lacks nbgrader's metadata: run `make exercises`")
    expected = make_exercises.render(make_exercises.build_exercise(stamped))
    actual = (ROOT / "exercises" / solution.name).read_text(encoding="utf-8")
    assert actual == expected, f"exercises/{solution.name} is out of date: run `make exercises`"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_every_answer_cell_is_followed_by_its_graded_check(solution):
    cells = [c for c in nbformat.read(solution, 4).cells if c.cell_type == "code"]
    for i, cell in enumerate(cells):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            after = cells[i + 1].metadata.get("nbgrader", {}) if i + 1 < len(cells) else {}
            assert after.get("grade") and after.get("locked") and after.get("points", 0) >= 1, (
                f"{solution.name}: the answer {meta['grade_id']} is not followed by a graded check cell")


def test_stamp_marks_answers_checks_points_and_instructions():
    v4 = nbformat.v4
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell("## Task 1"),
        v4.new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"),
        v4.new_code_cell("checks.check_double(double)  # 2 points"),
        v4.new_code_cell("try:\n    checks.check_double(lambda x: x)\n"
                         "except checks.CheckFailed as e:\n    print(e)"),
        v4.new_code_cell("import torch"),
        v4.new_code_cell("class Layer:\n    def forward(self, x):\n        ### BEGIN SOLUTION\n"
                         "        return x\n        ### END SOLUTION"),
    ])
    cells = make_exercises.stamp(nb).cells
    meta = [c.metadata.get("nbgrader") for c in cells]
    assert meta[0]["grade_id"] == "instructions-1" and meta[0]["locked"] and not meta[0]["grade"]
    assert meta[1]["grade_id"] == "answer-double" and meta[1]["solution"] and not meta[1]["locked"]
    assert meta[2] == {**meta[2], "grade_id": "check-double", "grade": True, "locked": True, "points": 2}
    assert meta[3] is None and meta[4] is None  # a demonstration and plain code: no grading
    assert meta[5]["grade_id"] == "answer-Layer-forward"  # a method is named with its class
    with pytest.raises(ValueError, match="must define a function"):
        top_level = v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")
        make_exercises.stamp(v4.new_notebook(cells=[top_level]))


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
    exercise = make_exercises.build_exercise(make_exercises.stamp(solution))
    source = exercise.cells[0].source
    assert "return 2 * x" not in source and "BEGIN SOLUTION" not in source
    assert 'raise NotImplementedError("double: write this part' in source
    assert exercise.cells[0].outputs == [] and exercise.cells[0].execution_count is None
    assert solution.cells[0].outputs, "the solution itself must not be modified"
    with pytest.raises(RuntimeError, match="non-solution cell"):  # metadata enforced, as nbgrader does
        make_exercises.build_exercise(solution)


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

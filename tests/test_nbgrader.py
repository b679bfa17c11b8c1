"""nbgrader's own cycle on the solution notebooks, unchanged: generate, submit, autograde, feedback.

An instructor hands solutions/ to nbgrader as they are. This test does exactly that in a
temporary course directory, with a student who got some tasks right, left one not done and
got others wrong, and reads the gradebook and the feedback nbgrader writes.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("nbgrader")
from nbgrader.api import Gradebook  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
ASSIGNMENT = "transformer"
STUDENT = "alice"
MIXED = "05_masks_and_multi_head"  # its tasks: the first right, the second not done, the rest wrong

WRONG_SOFTMAX = '''def softmax(x: torch.Tensor) -> torch.Tensor:
    e = x.exp()
    return e / e.sum(0, keepdim=True)  # the wrong axis
'''
DELIBERATE = 'raise ValueError("a deliberately wrong answer")'


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def answer_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")]


def grade_ids(nb: nbformat.NotebookNode) -> list[str]:
    return [c.metadata.nbgrader.grade_id for c in nb.cells
            if c.get("metadata", {}).get("nbgrader", {}).get("grade")]


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A course directory after generate_assignment, a submission, autograde and feedback."""
    root = tmp_path_factory.mktemp("course")
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.CourseDirectory.course_id = 'transformer-course'\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        "c.ExecutePreprocessor.timeout = 300\n", encoding="utf-8")
    source = root / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    for path in SOLUTIONS:
        shutil.copy(path, source / path.name)
    nbgrader(root, "generate_assignment", ASSIGNMENT, "--force")
    nbgrader(root, "db", "student", "add", STUDENT)

    submitted = root / "submitted" / STUDENT / ASSIGNMENT
    submitted.mkdir(parents=True)
    warmup = nbformat.read(root / "release" / ASSIGNMENT / "00_warmup.ipynb", 4)
    solution = nbformat.read(source / "00_warmup.ipynb", 4)
    answers, solved = answer_cells(warmup), answer_cells(solution)
    answers[0].source = WRONG_SOFTMAX
    answers[1].source = solved[1].source  # attention_weights: right
    nbformat.write(warmup, submitted / "00_warmup.ipynb")

    mixed = nbformat.read(root / "release" / ASSIGNMENT / f"{MIXED}.ipynb", 4)
    solved = answer_cells(nbformat.read(source / f"{MIXED}.ipynb", 4))
    answers = answer_cells(mixed)
    answers[0].source = solved[0].source  # right
    for cell, right in zip(answers[2:], solved[2:], strict=True):  # wrong: right code, then a mistake
        cell.source = right.source.replace("### BEGIN SOLUTION", f"{DELIBERATE}\n    ### BEGIN SOLUTION", 1)
    nbformat.write(mixed, submitted / f"{MIXED}.ipynb")

    nbgrader(root, "autograde", ASSIGNMENT, "--student", STUDENT)
    nbgrader(root, "generate_feedback", ASSIGNMENT, "--student", STUDENT)
    return root


def test_generate_assignment_releases_every_solution_without_answers(course):
    released = sorted((course / "release" / ASSIGNMENT).glob("*.ipynb"))
    assert [p.name for p in released] == [p.name for p in SOLUTIONS]
    for path in released:
        nb = nbformat.read(path, 4)
        text = "\n".join(c.source for c in nb.cells)
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, path.name
        assert len(answer_cells(nb)) >= 2 and len(grade_ids(nb)) >= 2, path.name
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
        for cell in nb.cells:  # nbgrader locks the checks and the instructions against edits
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade") or cell.cell_type == "markdown":
                assert meta.get("locked") and "checksum" in meta, (path.name, cell.source[:60])


def test_the_gradebook_holds_every_check_with_its_points(course):
    expected = sum(len(grade_ids(nbformat.read(p, 4))) for p in SOLUTIONS)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assignment = gb.find_assignment(ASSIGNMENT)
        assert sum(len(nb.grade_cells) for nb in assignment.notebooks) == expected
        assert all(cell.max_score >= 1 for nb in assignment.notebooks for cell in nb.grade_cells)


def _scores(course: Path, notebook: str) -> dict[str, tuple[float, float]]:
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        nb = gb.find_submission_notebook(notebook, ASSIGNMENT, STUDENT)
        return {g.name: (g.score, g.max_score) for g in nb.grades}


def test_autograde_gives_full_points_for_right_tasks_and_none_for_the_others(course):
    warmup = _scores(course, "00_warmup")
    assert warmup["check-softmax"][0] == 0
    assert warmup["check-attention_weights"][0] == warmup["check-attention_weights"][1] >= 1
    mixed = _scores(course, MIXED)
    ids = list(mixed)
    assert mixed[ids[0]][0] == mixed[ids[0]][1] >= 1, mixed  # right
    assert all(mixed[i][0] == 0 for i in ids[1:]), mixed  # not done, then wrong


def test_a_notebook_not_submitted_scores_zero(course):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        nb = gb.find_submission_notebook("01_rnns_and_fading_memory", ASSIGNMENT, STUDENT)
        assert nb.score == 0 and nb.max_score >= 2


def test_the_feedback_shows_each_check_s_message(course):
    feedback = course / "feedback" / STUDENT / ASSIGNMENT
    warmup = html.unescape((feedback / "00_warmup.html").read_text(encoding="utf-8"))
    assert "sum to 1 along axis 0 instead of axis 1" in warmup  # the wrong axis, named
    mixed = html.unescape((feedback / f"{MIXED}.html").read_text(encoding="utf-8"))
    assert "not done (the function still raises NotImplementedError)" in mixed
    assert "a deliberately wrong answer" in mixed

"""nbgrader's whole cycle in a real JupyterHub on localhost: classroom/ as an instructor uses it.

One hub (classroom/jupyterhub_config.py, tools/classroom.py starts it on free ports) with an
instructor and two students, then:

- the instructor puts two exercise notebooks in the course and, through the formgrader
  service's API (the buttons of its Manage Assignments page), generates and releases them;
- each student logs in through the hub's REST API, starts a server, and through the proxy
  uses nbgrader's assignment-list handlers (what JupyterLab's Assignments panel calls) to
  fetch, the Jupyter contents API to save answers, and the same handlers to submit. student1
  answers every task right; student2 makes typical mistakes and leaves a task not done;
- the instructor collects, autogrades, generates and releases feedback through the formgrader,
  and exports the grades with `nbgrader export` in the course directory, in the formgrader
  service's environment (as in its terminal: the formgrader has no export button);
- each student fetches the feedback through the Assignments handlers.

The tests assert the exact scores in the gradebook and in the export, and that the feedback
shows the checks' messages. Then, in headless Chromium, a student logs in and sees the
assignments in JupyterLab, and the instructor opens the formgrader and sees the submissions.
Screenshots go to bench/screenshots/ (CLASSROOM_SCREENSHOTS to change).
"""

from __future__ import annotations

import copy
import csv
import html
import importlib.util
import json
import math
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("classroom_tool", ROOT / "tools" / "classroom.py")
classroom = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = classroom
_spec.loader.exec_module(classroom)

_missing = classroom.missing()
if _missing and os.environ.get("CI"):  # CI installs both (make classroom-deps): never skip there
    raise RuntimeError(f"tests/classroom cannot run: {_missing}")
if _missing:
    pytest.skip(_missing, allow_module_level=True)

import torch  # noqa: E402
from nbgrader.api import Gradebook  # noqa: E402

from transformer_course import checks  # noqa: E402

COURSE = classroom.COURSE_ID
INSTRUCTOR, RIGHT, MIXED = "instructor", "student1", "student2"
# two exercise notebooks that run in seconds; each is an assignment of its own name
ASSIGNMENTS = ["00_warmup", "05_masks_and_multi_head"]
SOLUTION = {a: json.loads((ROOT / "solutions" / f"{a}.ipynb").read_text(encoding="utf-8"))
            for a in ASSIGNMENTS}
SCREENSHOTS = Path(os.environ.get("CLASSROOM_SCREENSHOTS", ROOT / "bench" / "screenshots"))

# student2's typical mistakes, each made in the solution's own code: (find, replace by)
MISTAKES = {
    ("00_warmup", "answer-softmax"): ("e.sum(dim=-1, keepdim=True)", "e.sum(dim=0, keepdim=True)"),
    ("05_masks_and_multi_head", "answer-causal_padding_mask"): (".tril(S - n_queries)", ".tril()"),
}
NOT_DONE = {("05_masks_and_multi_head", "answer-MultiHeadAttention-forward")}  # left as released
# The gradebook this must give, check by check (the points are the solution notebooks').
EXPECTED = {
    (RIGHT, "00_warmup"): {"check-softmax": 1, "check-attention_weights": 1},
    (RIGHT, "05_masks_and_multi_head"): {"check-masked_attention": 1, "check-causal_padding_mask": 1,
                                         "check-multi_head_attention": 2, "check-influence_matrix": 1},
    (MIXED, "00_warmup"): {"check-softmax": 0, "check-attention_weights": 1},
    (MIXED, "05_masks_and_multi_head"): {"check-masked_attention": 1, "check-causal_padding_mask": 0,
                                         "check-multi_head_attention": 0, "check-influence_matrix": 1},
}
MAX_SCORE = {"00_warmup": 2, "05_masks_and_multi_head": 5}
NAMES = {RIGHT: ("Ada", "Right"), MIXED: ("Bo", "Mixed")}


def _meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _answer_cells(nb: dict) -> dict[str, dict]:
    return {_meta(c)["grade_id"]: c for c in nb["cells"] if _meta(c).get("solution")}


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _solution_code(assignment: str, grade_id: str) -> str:
    """The solution's answer cell without nbgrader's markers, as a student would type it."""
    lines = _source(_answer_cells(SOLUTION[assignment])[grade_id]).splitlines()
    return "\n".join(line for line in lines if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))


def _mistake_code(assignment: str, grade_id: str) -> str:
    find, replace = MISTAKES[(assignment, grade_id)]
    code = _solution_code(assignment, grade_id)
    assert code.count(find) == 1, f"the solution of {grade_id} changed: update MISTAKES ({find!r})"
    return code.replace(find, replace)


def fill_in(released: dict, assignment: str, student: str) -> dict:
    """The released notebook with the student's answers in its answer cells."""
    nb = copy.deepcopy(released)
    for grade_id, cell in _answer_cells(nb).items():
        if student == MIXED and (assignment, grade_id) in NOT_DONE:
            continue
        if student == MIXED and (assignment, grade_id) in MISTAKES:
            cell["source"] = _mistake_code(assignment, grade_id)
        else:
            cell["source"] = _solution_code(assignment, grade_id)
    return nb


def expected_message(assignment: str, grade_id: str, check: str) -> str:
    """What the course's check says about a mistake, asked of the check itself."""
    namespace = {"torch": torch, "math": math, "nn": torch.nn}
    exec(_mistake_code(assignment, grade_id), namespace)
    answer = grade_id.removeprefix("answer-").split("-")[0]
    with pytest.raises(checks.CheckFailed) as failed:
        getattr(checks, check)(namespace[answer])
    return str(failed.value)


# ----------------------------------------------------------------------------- the hub and the cycle

@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = classroom.Hub.on_free_ports(tmp_path_factory.mktemp("classroom"), [RIGHT, MIXED])
    try:
        hub.started_in = hub.start()
        print(f"\nclassroom: hub and formgrader service up in {hub.started_in:.1f} s at {hub.url}")
        yield hub
    finally:
        killed = hub.stop()
        assert not hub.processes(), f"processes still running after the hub stopped: {hub.processes()}"
        if killed:  # the hub did not stop them itself: say so, with its log
            print(f"classroom: had to kill {killed}\n{hub.log_tail()}")


@pytest.fixture(scope="module")
def cycle(hub):
    """The whole cycle, once; what each step returned, for the tests below."""
    times, seen = {}, {}
    start = time.monotonic()
    instructor = hub.user(INSTRUCTOR)
    students = {name: hub.user(name) for name in (RIGHT, MIXED)}
    everyone = [instructor, *students.values()]

    # servers start in the background while the instructor sets the course up
    for user in everyone:
        user.request_server()
    for name, (first, last) in NAMES.items():  # the formgrader's Manage Students page
        instructor.service("PUT", f"formgrader/api/student/{name}", {"first_name": first, "last_name": last})
    for a in ASSIGNMENTS:
        instructor.make_folder(f"source/{a}", where="service")
        instructor.write_notebook(f"source/{a}/{a}.ipynb", SOLUTION[a], where="service")
        instructor.formgrader("assign", a)  # generate_assignment
        instructor.formgrader("release", a)  # release_assignment
    with ThreadPoolExecutor(len(everyone)) as pool:
        list(pool.map(lambda u: u.wait_server(), everyone))
    times["release and 3 servers"] = time.monotonic() - start
    seen["course list"] = instructor.server("GET", "formgraders")

    for name, student in students.items():
        seen[name, "released"] = student.assignments()
        for a in ASSIGNMENTS:
            student.assignment_action("fetch", a)
            released = student.read_notebook(f"{a}/{a}.ipynb")
            student.write_notebook(f"{a}/{a}.ipynb", fill_in(released, a, name))
            student.assignment_action("submit", a)
        seen[name, "submitted"] = student.assignments()

    for a in ASSIGNMENTS:
        instructor.formgrader("collect", a)
        for name in students:
            t = time.monotonic()
            instructor.formgrader("autograde", a, name)
            times[f"autograde {a} {name}"] = time.monotonic() - t
        instructor.formgrader("generate_feedback", a)
        instructor.formgrader("release_feedback", a)
    grades = hub.state / "grades.csv"
    hub.nbgrader("export", f"--to={grades}")
    seen["grades.csv"] = list(csv.DictReader(grades.open()))

    for name, student in students.items():
        for a in ASSIGNMENTS:
            student.assignment_action("fetch_feedback", a)
            stamps = student.list_folder(f"{a}/feedback")
            assert len(stamps) == 1, f"{name} {a}: one feedback folder expected, got {stamps}"
            seen[name, a, "feedback"] = student.read_text(f"{a}/feedback/{stamps[0]}/{a}.html")
    times["whole cycle"] = time.monotonic() - start
    print("classroom: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    return seen


def test_students_and_the_instructor_see_only_what_their_role_allows(hub, cycle):
    student = hub.user(RIGHT)
    with pytest.raises(classroom.HubError, match="403"):
        student.service("GET", "formgrader/api/status")  # the formgrader: instructors only
    with pytest.raises(classroom.HubError, match="403"):
        student._call("GET", f"/user/{MIXED}/api/contents")  # another student's files
    assert hub.user(INSTRUCTOR).service("GET", "formgrader/api/status") == {"status": True}


def test_the_instructor_s_course_list_finds_the_formgrader(hub, cycle):
    reply = cycle["course list"]  # what JupyterLab's Course List shows ("no courses available" if empty)
    assert reply["success"], reply
    assert [(c["course_id"], c["kind"]) for c in reply["value"]] == [(COURSE, "jupyterhub")], reply
    assert reply["value"][0]["url"].startswith(f"{hub.url}/services/{COURSE}/")


def test_each_student_saw_both_assignments_released_then_submitted(cycle):
    for name in (RIGHT, MIXED):
        released = {(a["course_id"], a["assignment_id"]) for a in cycle[name, "released"]
                    if a["status"] == "released"}
        assert released == {(COURSE, a) for a in ASSIGNMENTS}, cycle[name, "released"]
        submitted = {a["assignment_id"]: a for a in cycle[name, "submitted"] if a["status"] == "submitted"}
        assert sorted(submitted) == ASSIGNMENTS, cycle[name, "submitted"]
        assert all(len(a["submissions"]) == 1 for a in submitted.values()), submitted


def test_the_gradebook_holds_the_exact_scores(hub, cycle):
    with Gradebook(f"sqlite:///{hub.course_dir / 'gradebook.db'}", COURSE) as gb:
        assert {s.id: (s.first_name, s.last_name) for s in gb.students} == NAMES
        for (student, assignment), expected in EXPECTED.items():
            nb = gb.find_submission_notebook(assignment, assignment, student)
            scores = {g.name: g.score for g in nb.grades}
            assert scores == expected, (student, assignment, scores)
            assert nb.max_score == MAX_SCORE[assignment] == sum(g.max_score for g in nb.grades)


def test_the_exported_grades_match(cycle):
    rows = {(r["student_id"], r["assignment"]): r for r in cycle["grades.csv"]}
    assert sorted(rows) == sorted(EXPECTED), sorted(rows)
    for key, expected in EXPECTED.items():
        assert float(rows[key]["score"]) == sum(expected.values()), rows[key]
        assert float(rows[key]["max_score"]) == MAX_SCORE[key[1]], rows[key]


def graded_cells(page: str) -> dict[str, str]:
    """The text of each graded cell of a feedback page (nbgrader anchors each), outputs included."""
    parts = re.split(r'<a name="([^"]+)"></a>', page)
    return {grade_id: html.unescape(re.sub(r"<[^>]+>", "", rest.split('<div class="cell ')[0]))
            for grade_id, rest in zip(parts[1::2], parts[2::2], strict=True)}


def test_the_feedback_shows_the_checks_messages(cycle):
    softmax = expected_message("00_warmup", "answer-softmax", "check_softmax")
    assert "sum to 1 along axis 0 instead of axis 1" in softmax  # the wrong axis, named
    mask = expected_message("05_masks_and_multi_head", "answer-causal_padding_mask",
                            "check_causal_padding_mask")
    assert "ignores where the queries sit" in mask
    messages = {  # student2's failed checks: the check's own sentence under the cell
        "check-softmax": softmax,
        "check-causal_padding_mask": mask,
        "check-multi_head_attention": "multi_head_attention: not done (the function still raises "
                                      "NotImplementedError)",
    }
    for (student, assignment), expected in EXPECTED.items():
        page = cycle[student, assignment, "feedback"]
        total = sum(expected.values())
        score = f"Score: {total:.1f} / {MAX_SCORE[assignment]:.1f}"
        assert score in html.unescape(page), (student, assignment, score)
        cells = graded_cells(page)
        for check, score in expected.items():
            text = cells[check]
            if score:
                assert f"[x] {check.removeprefix('check-')}" in text and "CheckFailed" not in text, text
            else:
                assert f"CheckFailed: {messages[check]}" in text, (student, check, text[-1500:])


# ----------------------------------------------------------------------------- in the browser

def _log_in(browser, hub, name: str, password: str):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.click("#login_submit")
    return page


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    no_news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's news prompt
    if no_news.count():
        no_news.first.click()
        page.wait_for_timeout(1000)  # the prompt fades out
    page.screenshot(path=str(SCREENSHOTS / f"classroom_{name}.png"))


def test_a_student_sees_the_assignments_in_jupyterlab(hub, cycle, browser):
    page = _log_in(browser, hub, MIXED, hub.student_password)
    try:
        page.wait_for_url(f"**/user/{MIXED}/lab**")
        page.locator("#jp-main-dock-panel").wait_for()
        page.get_by_text("Nbgrader", exact=True).click()
        page.get_by_text("Assignment List", exact=True).click()
        panel = page.locator("#nbgrader-assignment-list")
        for a in ASSIGNMENTS:
            panel.get_by_text(a, exact=True).first.wait_for()
        time.sleep(1)  # the list renders its rows in steps
        _shot(page, "student_assignments")
        text = panel.inner_text()
        assert all(a in text for a in ASSIGNMENTS), text
        assert COURSE in text, text
        # a student's Nbgrader menu has no formgrader (the extension is off for students)
        page.get_by_text("Nbgrader", exact=True).click()
        menu = page.locator(".lm-Menu").last.inner_text()
        assert "Assignment List" in menu and "Formgrader" not in menu, menu
    finally:
        page.close()


def test_the_instructor_sees_the_submissions_in_the_formgrader(hub, cycle, browser):
    page = _log_in(browser, hub, INSTRUCTOR, hub.instructor_password)
    try:
        page.wait_for_url(f"**/user/{INSTRUCTOR}/lab**")
        # JupyterLab's Course List links to the formgrader service (not "no courses available")
        page.locator("#jp-main-dock-panel").wait_for()
        page.get_by_text("Nbgrader", exact=True).click()
        page.get_by_text("Course List", exact=True).click()
        page.locator("#nbgrader-course-list").get_by_text(COURSE).first.wait_for()
        _shot(page, "instructor_course_list")
        # the formgrader in a tab of its own (JupyterHub >= 4.1 blocks it inside JupyterLab's iframe)
        page.goto(f"{hub.url}/services/{COURSE}/formgrader/manage_submissions/05_masks_and_multi_head")
        table = page.locator("table")
        table.get_by_text(MIXED).first.wait_for()
        _shot(page, "formgrader_submissions")
        rows = {r.split("\t")[1]: r for r in table.locator("tbody tr").all_inner_texts()}
        assert sorted(rows) == [RIGHT, MIXED], rows
        assert "Right, Ada" in rows[RIGHT] and "5 / 5" in rows[RIGHT], rows
        assert "Mixed, Bo" in rows[MIXED] and "2 / 5" in rows[MIXED], rows
        page.goto(f"{hub.url}/services/{COURSE}/formgrader/manage_assignments")
        page.locator("table").get_by_text("05_masks_and_multi_head").first.wait_for()
        time.sleep(1)
        _shot(page, "formgrader_assignments")
        rows = page.locator("table").inner_text()
        assert all(a in rows for a in ASSIGNMENTS), rows
    finally:
        page.close()

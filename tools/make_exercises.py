"""Generate exercises/NN_topic.ipynb from solutions/NN_topic.ipynb (the single source).

First the solution notebook gets nbgrader's cell metadata, from the course's conventions:

- a code cell with ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` is an answer cell
  (``solution``), its grade_id ``answer-<function>``;
- a code cell whose line reads ``checks.check_<name>(...)`` is a graded check cell
  (``grade``, locked), ``check-<name>``, worth 1 point or the N of a ``# N points`` comment;
- a markdown cell is a locked instruction (``instructions-<k>``); other code cells carry none.

Then each solution region becomes ``raise NotImplementedError("<task>: ...")`` naming the
function it sits in, and every output is cleared. nbgrader's own preprocessors do this
with its metadata enforced, so ``nbgrader generate_assignment`` reads the same notebooks
unchanged (tests/test_nbgrader.py runs its whole cycle).

    python tools/make_exercises.py          # stamp solutions/, write exercises/
    python tools/make_exercises.py --check  # exit 1 if either is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
from nbgrader.preprocessors import ClearOutput, ClearSolutions

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = "@TASK@"
CHECK_LINE = re.compile(r"^checks\.(check_\w+)\(.*\)\s*(?:#\s*(\d+)\s+points?\s*)?$", re.M)
DEF_LINE = re.compile(r"^\s*def\s+(\w+)", re.M)
SCHEMA = 3
STUB = f'# YOUR CODE HERE\nraise NotImplementedError("{PLACEHOLDER}")'


def _name_tasks(source: str) -> str:
    """Replace each placeholder with the name of the function that encloses it."""
    lines = source.split("\n")
    current = "this task"
    for i, line in enumerate(lines):
        m = re.match(r"\s*def\s+(\w+)", line)
        if m:
            current = m.group(1)
        if PLACEHOLDER in line:
            lines[i] = line.replace(PLACEHOLDER, f"{current}: write this part, then run the check below")
    return "\n".join(lines)


def _nbgrader(grade_id: str, *, solution: bool = False, grade: bool = False, locked: bool = False,
              points: int | None = None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": SCHEMA,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return meta


def stamp(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The solution notebook with nbgrader's metadata on every answer, check and instruction cell."""
    nb = nbformat.from_dict(solution)  # a deep copy
    seen: set[str] = set()
    instructions = 0
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
        if cell.cell_type == "markdown":
            instructions += 1
            meta = _nbgrader(f"instructions-{instructions}", locked=True)
        elif cell.cell_type != "code":
            continue
        elif "### BEGIN SOLUTION" in cell.source:
            before = cell.source.split("### BEGIN SOLUTION")[0]
            names = DEF_LINE.findall(before)
            if not names:
                raise ValueError(f"an answer cell must define a function around its solution:\n{cell.source}")
            classes = re.findall(r"^class\s+(\w+)", before, re.M)  # a method: name its class too
            meta = _nbgrader("-".join(["answer", *classes[-1:], names[-1]]), solution=True)
        elif (match := CHECK_LINE.search(cell.source)) and not cell.source.lstrip().startswith("try"):
            meta = _nbgrader(f"check-{match.group(1).removeprefix('check_')}", grade=True, locked=True,
                             points=int(match.group(2) or 1))
        else:
            continue
        if meta["grade_id"] in seen:
            raise ValueError(f"two cells would have the nbgrader grade_id {meta['grade_id']!r}")
        seen.add(meta["grade_id"])
        cell.metadata["nbgrader"] = meta
    return nb


def build_exercise(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The exercise notebook made from one (stamped) solution notebook."""
    nb = nbformat.from_dict(solution)  # a deep copy
    resources: dict = {}
    clear = ClearSolutions(enforce_metadata=True, code_stub={"python": STUB})
    nb, resources = clear.preprocess(nb, resources)
    nb, resources = ClearOutput().preprocess(nb, resources)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = _name_tasks(cell.source)
            cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    """The notebook as the exact text written to disk."""
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-date exercises")
    args = parser.parse_args(argv)
    stale = []
    for src in sorted((ROOT / "solutions").glob("*.ipynb")):
        solution = stamp(nbformat.read(src, as_version=4))
        outputs = ((src, render(solution)), (ROOT / "exercises" / src.name, render(build_exercise(solution))))
        for dst, text in outputs:
            if dst.exists() and dst.read_text(encoding="utf-8") == text:
                continue
            stale.append(dst.relative_to(ROOT))
            if not args.check:
                dst.write_text(text, encoding="utf-8")
    extra = {p.name for p in (ROOT / "exercises").glob("*.ipynb")} - {
        p.name for p in (ROOT / "solutions").glob("*.ipynb")}
    if args.check and (stale or extra):
        for p in stale:
            print(f"out of date: {p} (run `make exercises`: it stamps solutions/ and writes exercises/)")
        for name in sorted(extra):
            print(f"exercises/{name} has no solutions/{name}")
        return 1
    for p in stale:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

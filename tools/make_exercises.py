"""Generate exercises/NN_topic.ipynb from solutions/NN_topic.ipynb (the single source).

Each region between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes
``raise NotImplementedError("<task>: ...")`` naming the function it sits in, and every
output is cleared. nbgrader's own preprocessors do the work, so an instructor's nbgrader
reads the same markers.

    python tools/make_exercises.py          # write exercises/
    python tools/make_exercises.py --check  # exit 1 if exercises/ is out of date
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


def build_exercise(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The exercise notebook made from one solution notebook."""
    nb = nbformat.from_dict(solution)  # a deep copy
    resources: dict = {}
    clear = ClearSolutions(enforce_metadata=False, code_stub={"python": STUB})
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
        text = render(build_exercise(nbformat.read(src, as_version=4)))
        dst = ROOT / "exercises" / src.name
        if dst.exists() and dst.read_text(encoding="utf-8") == text:
            continue
        stale.append(dst.relative_to(ROOT))
        if not args.check:
            dst.write_text(text, encoding="utf-8")
    extra = {p.name for p in (ROOT / "exercises").glob("*.ipynb")} - {
        p.name for p in (ROOT / "solutions").glob("*.ipynb")}
    if args.check and (stale or extra):
        for p in stale:
            print(f"out of date: {p} (run `make exercises`)")
        for name in sorted(extra):
            print(f"exercises/{name} has no solutions/{name}")
        return 1
    for p in stale:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

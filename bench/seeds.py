"""Run every notebook that asserts a lesson on seeds 0 to 4; write the table of its lessons.

    python bench/seeds.py                       # all of them (make seeds), about 20 minutes
    python bench/seeds.py --notebooks 01 08 --seeds 1 2 --out /tmp/pilot   # a pilot

Each run is a fresh kernel with ``COURSE_SEED`` set, so the notebook's one ``SEED`` line and
every seed derived from it change together. ``lessons.lesson`` records each lesson's value
instead of stopping at a miss, so every lesson of every seed is measured. The full run writes
``bench/seeds.md`` (for people) and ``src/transformer_course/seed_spreads.json`` (which the
notebooks read to print their spreads, and a test reads to check that every lesson held and
that the table is not older than the code: it stores a hash of what it measured).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from run_notebooks import machine, run  # noqa: E402

SEEDS = list(range(5))
PACKAGE = ROOT / "src" / "transformer_course"
SPREADS = PACKAGE / "seed_spreads.json"
TABLE = ROOT / "bench" / "seeds.md"
CELL_TIMEOUT = 300  # a hang fails in five minutes; the slowest cell takes about 30 s alone


def lesson_notebooks() -> list[Path]:
    """The lecture notebooks whose code asserts a lesson."""
    return [p for p in sorted((ROOT / "notebooks").glob("*.ipynb"))
            if "lessons.lesson(" in _code(p)]


def _code(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def source_hash(notebooks: list[Path] | None = None) -> str:
    """A hash of what the table measured: the notebooks' code (not their prose or outputs) and
    the package's code and data, except the exercise checks and the table itself."""
    h = hashlib.sha256()
    for p in sorted(notebooks if notebooks is not None else lesson_notebooks()):
        h.update(p.name.encode() + b"\0" + _code(p).encode() + b"\0")
    for p in sorted(PACKAGE.rglob("*")):
        rel = p.relative_to(PACKAGE)
        if p.is_dir() or p == SPREADS or rel.parts[0] in ("checks", "__pycache__") or p.suffix == ".pyc":
            continue
        h.update(str(rel).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _one(path: str, seed: int) -> dict:
    """Run one notebook on one seed in a fresh kernel; its lessons, time and peak memory."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        record = f.name
    os.environ.update(COURSE_SEED=str(seed), COURSE_LESSONS=record, TC_PROGRESS="0",
                      OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    error, seconds, peak = None, float("nan"), float("nan")
    start = time.perf_counter()
    try:
        seconds, peak = run(Path(path), save=False, timeout=CELL_TIMEOUT)
    except Exception as e:  # a cell that fails outside a lesson: report it, go on
        seconds = time.perf_counter() - start
        error = f"{type(e).__name__}: " + (str(e).strip().splitlines() or [""])[-1][:300]
    lines = Path(record).read_text(encoding="utf-8").splitlines()
    os.unlink(record)
    return {"notebook": Path(path).stem[:2], "seed": seed, "seconds": round(seconds, 1),
            "peak_mb": round(peak), "error": error, "lessons": [json.loads(x) for x in lines]}


def measure(notebooks: list[Path], seeds: list[int], workers: int) -> list[dict]:
    jobs = [(str(p), s) for s in seeds for p in notebooks]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_one, p, s) for p, s in jobs]
        runs = []
        for fut in futures:
            r = fut.result()
            missed = [x["name"] for x in r["lessons"] if not x["passed"]]
            note = (f", MISSED {missed}" if missed else "") + (f", ERROR {r['error']}" if r["error"] else "")
            print(f"{r['notebook']} seed {r['seed']}: {r['seconds']:6.1f} s, "
                  f"{len(r['lessons'])} lessons{note}", flush=True)
            runs.append(r)
    return runs


def summarise(runs: list[dict], seeds: list[int], digest: str) -> dict:
    lessons: dict[str, dict] = {}
    for r in runs:
        for x in r["lessons"]:
            e = lessons.setdefault(x["name"], {
                "notebook": r["notebook"], "at_least": x["at_least"], "at_most": x["at_most"],
                "fmt": x.get("fmt", ".3g"), "seeds": seeds,
                "values": [None] * len(seeds), "passed": [False] * len(seeds)})
            i = seeds.index(r["seed"])
            e["values"][i], e["passed"][i] = x["value"], x["passed"]
    return {"hash": digest, "seeds": seeds, "machine": machine(), "lessons": lessons,
            "runs": [{k: r[k] for k in ("notebook", "seed", "seconds", "peak_mb", "error")} for r in runs]}


def _fmt(v: float | None, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)


def table(summary: dict) -> str:
    seeds = summary["seeds"]
    head = "| lesson | margin | " + " | ".join(f"seed {s}" for s in seeds) + " | all seeds |"
    rule = "|---|---|" + "---:|" * len(seeds) + ":---:|"
    out = ["# Lessons on five seeds", "",
           f"Written by `make seeds` (bench/seeds.py) on: {summary['machine']}.",
           "Every notebook that asserts a lesson ran in a fresh kernel once per seed (`COURSE_SEED`), "
           "two at a time, one thread each. A value is marked ✗ where it misses the margin the "
           "notebook asserts.", "",
           f"Source hash (notebook code and package; a test compares it): `{summary['hash']}`", ""]
    for nb in sorted({r["notebook"] for r in summary["runs"]}):
        out += [f"## Notebook {nb}", "", head, rule]
        for name, e in summary["lessons"].items():
            if e["notebook"] != nb:
                continue
            margin = " and ".join(s for s in (e["at_least"] is not None and f">= {e['at_least']:g}",
                                              e["at_most"] is not None and f"<= {e['at_most']:g}") if s)
            cells = [_fmt(v, e["fmt"]) + ("" if ok else " ✗")
                     for v, ok in zip(e["values"], e["passed"], strict=True)]
            held = "yes" if all(e["passed"]) else "**no**"
            out.append(f"| {name} | {margin} | " + " | ".join(cells) + f" | {held} |")
        times = {r["seed"]: r for r in summary["runs"] if r["notebook"] == nb}
        out.append("| wall time (s) | | " + " | ".join(
            f"{times[s]['seconds']:.0f}" + (" (error)" if times[s]["error"] else "") if s in times else "-"
            for s in seeds) + " | |")
        errors = [f"- seed {s}: {times[s]['error']}" for s in seeds if s in times and times[s]["error"]]
        out += [""] + (["Errors outside a lesson:", *errors, ""] if errors else [])
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", nargs="*", help="two-digit numbers (default: all with lessons)")
    parser.add_argument("--seeds", nargs="*", type=int, default=SEEDS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the pilot's table and JSON here instead")
    args = parser.parse_args(argv)
    notebooks = lesson_notebooks()
    if args.notebooks:
        notebooks = [p for p in notebooks if p.name[:2] in args.notebooks]
    full = not args.notebooks and args.seeds == SEEDS and args.out is None
    if not full and args.out is None:
        raise SystemExit("a partial run needs --out: the committed table covers every notebook and seed")
    runs = measure(notebooks, args.seeds, args.workers)
    summary = summarise(runs, args.seeds, source_hash() if full else "pilot (not a full run)")
    spreads, md = (SPREADS, TABLE) if args.out is None else \
        (args.out / "seed_spreads.json", args.out / "seeds.md")
    md.parent.mkdir(parents=True, exist_ok=True)
    spreads.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    md.write_text(table(summary), encoding="utf-8")
    print(f"wrote {md} and {spreads}")
    missed = [n for n, e in summary["lessons"].items() if not all(e["passed"])]
    errors = [r for r in runs if r["error"]]
    print(f"{len(summary['lessons'])} lessons, missed on some seed: {missed or 'none'}; "
          f"runs with an error: {len(errors)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

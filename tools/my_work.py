"""Copy the exercises into my-work/, once, so that a learner's answers are never overwritten.

``exercises/`` belongs to the course: ``make exercises`` and ``make notebooks`` regenerate
it, ``make test`` compares it with ``solutions/``, and ``git pull`` updates it. Solve the
exercises in ``my-work/`` instead (git ignores it). This script copies every
``exercises/*.ipynb`` there that is not there yet, and never replaces a file that is.

    python tools/my_work.py              # copy the exercises missing from my-work/
    python tools/my_work.py --fresh 03   # a clean copy of exercise 03; yours is kept as a backup
    python tools/my_work.py --dest DIR   # another working folder (the tests use one)
    python tools/my_work.py --lang ko    # the Korean exercises (exercises/ko/) into my-work/ko/
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "exercises"
DEFAULT_DEST = ROOT / "my-work"
LANGUAGES = ("en", "ko")  # English: exercises/ -> my-work/; Korean: exercises/ko/ -> my-work/ko/


def shown(path: Path) -> str:
    """``path`` relative to the current folder when it lies under it."""
    path = path.resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def exercises(source: Path = EXERCISES) -> list[Path]:
    return sorted(source.glob("*.ipynb"))


def copy_missing(dest: Path, source: Path = EXERCISES) -> tuple[list[str], list[str]]:
    """Copy each exercise that ``dest`` lacks; return the names copied and the names kept."""
    dest.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    for src in exercises(source):
        target = dest / src.name
        if target.exists():
            kept.append(src.name)
        else:
            shutil.copyfile(src, target)
            copied.append(src.name)
    return copied, kept


def find_exercise(name: str, source: Path = EXERCISES) -> Path:
    """The exercise called ``name``: its file name, its stem, or its number ("03" or "3")."""
    if name.isdigit():
        name = name.zfill(2)
    found = [p for p in exercises(source) if name in (p.name, p.stem) or p.name.startswith(name + "_")]
    if len(found) != 1:
        available = ", ".join(p.name for p in exercises(source))
        problem = "no exercise" if not found else "more than one exercise"
        raise ValueError(f"{problem} matches {name!r}; the exercises are: {available}")
    return found[0]


def fresh(name: str, dest: Path, source: Path = EXERCISES) -> tuple[Path, Path | None]:
    """Copy one exercise again; the learner's file, if any, is renamed to a backup first.

    Returns the fresh copy and the backup (None when there was nothing to keep)."""
    src = find_exercise(name, source)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / src.name
    backup = None
    if target.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = dest / f"{src.stem}.backup-{stamp}.ipynb"
        n = 1
        while backup.exists():  # two fresh copies within one second
            n += 1
            backup = dest / f"{src.stem}.backup-{stamp}-{n}.ipynb"
        target.rename(backup)
    shutil.copyfile(src, target)
    return target, backup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", metavar="NAME",
                        help="copy this exercise again (e.g. 03), keeping yours as a backup")
    parser.add_argument("--dest", type=Path, default=None,
                        help="the working folder (default: my-work/, or my-work/ko/ with --lang ko)")
    parser.add_argument("--lang", choices=LANGUAGES, default="en",
                        help="which edition's exercises: en (exercises/) or ko (exercises/ko/)")
    args = parser.parse_args(argv)
    source = EXERCISES if args.lang == "en" else EXERCISES / args.lang
    if args.dest is None:
        args.dest = DEFAULT_DEST if args.lang == "en" else DEFAULT_DEST / args.lang
    if args.fresh:
        try:
            target, backup = fresh(args.fresh, args.dest, source)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if backup:
            print(f"your {target.name} is kept as {backup.name}")
        print(f"copied a fresh {target.name} into {shown(args.dest)}/")
        return 0
    copied, kept = copy_missing(args.dest, source)
    where = shown(args.dest)
    for name in copied:
        print(f"copied {name} into {where}/")
    for name in kept:
        print(f"kept   {where}/{name} (yours: never overwritten)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

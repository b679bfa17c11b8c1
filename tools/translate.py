"""Write the Korean edition from the English source and the translation files in i18n/ko/.

The English notebooks, exercises, solutions and README are the only source. Each translation
file holds the Korean text of one English file, one block per markdown cell (or README
section), in this form::

    <!-- cell 3ed6aed0 en:1f0c2a9b7d -->
    # 연습 02 · seq2seq의 병목
    ...

The marker names the English cell's id and the first ten hex digits of the SHA-1 of the
English text it translates. This script copies each English file and replaces every markdown
cell (every README section) by its Korean block. Code cells, their outputs and all metadata
are copied byte for byte, so the Korean notebooks run exactly like the English ones.

A block whose English changed after it was translated (the hash no longer matches), a block
still marked ``todo``, or a cell with no block at all is written in English under a visible
"번역 대기" marker, never as an outdated Korean sentence. ``--check`` lists every such cell and
exits 1 when any is waiting or a generated file is out of date; ``--stub`` adds a ``todo``
block (the English text, to translate in place) for every cell that has none.

    python tools/translate.py           # write notebooks/ko, exercises/ko, solutions/ko,
                                        # README.ko.md and bench/translation_ko.md
    python tools/translate.py --check   # list waiting cells; exit 1 if any, or if stale
    python tools/translate.py --stub    # add todo blocks for untranslated cells

To translate a waiting cell: edit its Korean, put the hash that ``--check`` prints in its
marker, delete ``todo``, and run ``make ko``. i18n/README.md has the conventions.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
LANG = "ko"
HASH_LEN = 10
MARKER = re.compile(rf"^<!-- (cell|section) (\S+) en:([0-9a-f]{{{HASH_LEN}}})( todo)? -->[ \t]*$", re.M)
CHANGED = "changed"  # the English text changed after the translation
MISSING = "missing"  # no block for this cell
TODO = "todo"  # a block still marked todo
WAITING_NOTE = {
    CHANGED: ("> **번역 대기:** 이 셀의 영어 원문이 번역된 뒤에 바뀌어, 번역을 고칠 때까지 영어 원문을 "
              "그대로 보여 드립니다. (The English text changed after this cell was translated.)"),
    MISSING: ("> **번역 대기:** 이 셀은 아직 번역되지 않아 영어 원문을 그대로 보여 드립니다. "
              "(This cell has no Korean translation yet.)"),
}
WAITING_NOTE[TODO] = WAITING_NOTE[MISSING]


def english_hash(text: str) -> str:
    """The first HASH_LEN hex digits of the SHA-1 of ``text`` (UTF-8)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:HASH_LEN]


@dataclass
class Block:
    kind: str  # "cell" or "section"
    key: str
    en_hash: str
    todo: bool
    text: str


@dataclass
class Translations:
    path: Path
    header: str
    blocks: dict[str, Block] = field(default_factory=dict)


def parse(path: Path) -> Translations:
    """Read a translation file; a missing file has no blocks. Duplicate keys are an error."""
    if not path.exists():
        return Translations(path, "")
    text = path.read_text(encoding="utf-8")
    marks = list(MARKER.finditer(text))
    out = Translations(path, text[: marks[0].start()] if marks else text)
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[m.end():end].strip("\n")
        kind, key, h, todo = m.group(1), m.group(2), m.group(3), bool(m.group(4))
        if key in out.blocks:
            line = text.count("\n", 0, m.start()) + 1
            raise ValueError(f"{rel(path)}:{line}: a second block for {kind} {key!r}; "
                             "each cell has exactly one block")
        out.blocks[key] = Block(kind, key, h, todo, body)
    stray = [ln for ln in text.splitlines() if ln.startswith("<!-- cell") or ln.startswith("<!-- section")]
    bad = [ln for ln in stray if not MARKER.match(ln)]
    if bad:
        raise ValueError(f"{rel(path)}: malformed marker {bad[0]!r}; expected "
                         f"'<!-- cell ID en:HASH -->' with a {HASH_LEN}-digit hex hash (optionally ' todo')")
    return out


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


@dataclass
class Waiting:
    source: str  # the English file
    key: str
    reason: str  # CHANGED, MISSING or TODO
    en_hash: str  # the hash of the current English text
    first_line: str


def localize(english: str, block: Block | None) -> tuple[str, str | None]:
    """The Korean text for one English cell, and why it waits (None when translated)."""
    h = english_hash(english)
    if block is None:
        reason = MISSING
    elif block.todo:
        reason = TODO
    elif block.en_hash != h:
        reason = CHANGED
    else:
        return block.text, None
    return f"{WAITING_NOTE[reason]}\n\n{english}", reason


# ----------------------------------------------------------------------------- notebooks


@dataclass
class Job:
    english: Path  # the source
    translations: Path  # i18n/ko/...
    output: Path  # the Korean file written

    @property
    def is_readme(self) -> bool:
        return self.english.suffix == ".md"


def jobs(root: Path = ROOT) -> list[Job]:
    """Every English file of the course with its translation file and its Korean output."""
    i18n = root / "i18n" / LANG
    out = []
    for p in sorted((root / "notebooks").glob("*.ipynb")):
        out.append(Job(p, i18n / "notebooks" / f"{p.stem}.md", root / "notebooks" / LANG / p.name))
    for folder in ("solutions", "exercises"):
        for p in sorted((root / folder).glob("*.ipynb")):
            out.append(Job(p, i18n / "exercises" / f"{p.stem}.md", root / folder / LANG / p.name))
    out.append(Job(root / "README.md", i18n / "README.md", root / f"README.{LANG}.md"))
    return out


def translate_notebook(job: Job, root: Path = ROOT) -> tuple[str, list[Waiting], list[str]]:
    """The Korean notebook's file text, its waiting cells, and the translation's orphan keys."""
    nb = nbformat.read(job.english, as_version=4)
    tr = parse(job.translations)
    ko = copy.deepcopy(nb)
    waiting = []
    used = set()
    for cell in ko.cells:
        if cell.cell_type != "markdown":
            continue
        block = tr.blocks.get(cell.id)
        used.add(cell.id)
        text, reason = localize(cell.source, block)
        cell.source = text
        if reason:
            english = nb_cell(nb, cell.id)
            waiting.append(Waiting(rel_to(job.english, root), cell.id, reason, english_hash(english),
                                   first_line(english)))
    ko.metadata["i18n"] = {
        "language": LANG,
        "english": rel_to(job.english, root),
        "translations": rel_to(job.translations, root),
        "generated_by": "tools/translate.py (make ko): edit the translations, not this file",
    }
    orphans = sorted(set(tr.blocks) - used)
    return nbformat.writes(ko) + "\n", waiting, orphans


def nb_cell(nb, cell_id: str) -> str:
    return next(c.source for c in nb.cells if c.id == cell_id)


def first_line(text: str) -> str:
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= 70 else line[:67] + "..."


def rel_to(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:  # a file outside the course (the tests use some)
        return str(path)


# ----------------------------------------------------------------------------- the README

HEADING = re.compile(r"^#{1,6} ")


def sections(markdown: str) -> list[tuple[str, str]]:
    """Split a README at its headings (outside code fences): (key, text) pairs, in order.

    The key is the heading's slug ("two-commands"); the text before the first heading is "top".
    """
    parts: list[list[str]] = [[]]
    fenced = False
    for line in markdown.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and HEADING.match(line) and any(ln.strip() for ln in parts[-1]):
            parts.append([])
        parts[-1].append(line)
    out, seen = [], {}
    for lines in parts:
        text = "\n".join(lines).strip("\n")
        head = lines[0] if HEADING.match(lines[0]) else ""
        slug = re.sub(r"[^a-z0-9]+", "-", head.lstrip("#").lower()).strip("-") or "top"
        if not out:
            slug = "top"
        seen[slug] = seen.get(slug, 0) + 1
        out.append((slug if seen[slug] == 1 else f"{slug}-{seen[slug]}", text))
    return out


def translate_readme(job: Job, root: Path = ROOT) -> tuple[str, list[Waiting], list[str]]:
    tr = parse(job.translations)
    english = job.english.read_text(encoding="utf-8")
    parts, waiting = [], []
    keys = []
    for key, text in sections(english):
        keys.append(key)
        ko, reason = localize(text, tr.blocks.get(key))
        parts.append(ko)
        if reason:
            waiting.append(Waiting(rel_to(job.english, root), key, reason, english_hash(text),
                                   first_line(text)))
    banner = (f"<!-- Generated by tools/translate.py (make ko) from README.md and "
              f"i18n/{LANG}/README.md: edit those, not this file. -->")
    orphans = sorted(set(tr.blocks) - set(keys))
    return banner + "\n\n" + "\n\n".join(parts) + "\n", waiting, orphans


def translate(job: Job, root: Path = ROOT) -> tuple[str, list[Waiting], list[str]]:
    return translate_readme(job, root) if job.is_readme else translate_notebook(job, root)


# ----------------------------------------------------------------------------- stubs and the table


def english_units(job: Job) -> list[tuple[str, str, str]]:
    """(kind, key, English text) for every translatable unit of ``job``'s English file."""
    if job.is_readme:
        return [("section", k, t) for k, t in sections(job.english.read_text(encoding="utf-8"))]
    nb = nbformat.read(job.english, as_version=4)
    return [("cell", c.id, c.source) for c in nb.cells if c.cell_type == "markdown"]


HEADER = """<!--
Korean translation of {english}: one block per {unit}, in the English order.
Each block starts with a marker: the English {unit}'s id and the hash of the English text it
translates. `make ko` writes the Korean edition from this file; `make ko-check` lists the cells
whose English changed. Conventions (register, terms, numbers, links): i18n/README.md.
-->
"""


def stub(job: Job) -> int:
    """Rewrite ``job``'s translation file in the English order, adding a todo block (the English
    text) for every unit without one. Existing blocks are kept as they are. Returns the number added."""
    tr = parse(job.translations)
    units = english_units(job)
    added = 0
    chunks = [tr.header.rstrip("\n") + "\n" if tr.header.strip() else HEADER.format(
        english=rel_to(job.english, ROOT), unit="section" if job.is_readme else "markdown cell")]
    for kind, key, text in units:
        block = tr.blocks.get(key)
        if block is None:
            added += 1
            block = Block(kind, key, english_hash(text), True, text)
        mark = f"<!-- {block.kind} {block.key} en:{block.en_hash}{' todo' if block.todo else ''} -->"
        chunks.append(f"{mark}\n{block.text}\n")
    keys = {k for _, k, _ in units}
    for key, block in tr.blocks.items():  # orphans go last, to be deleted by hand
        if key not in keys:
            todo = " todo" if block.todo else ""
            chunks.append(f"<!-- {block.kind} {block.key} en:{block.en_hash}{todo} -->\n{block.text}\n")
    job.translations.parent.mkdir(parents=True, exist_ok=True)
    job.translations.write_text("\n".join(chunks), encoding="utf-8")
    return added


def table(results: list[tuple[Job, int, list[Waiting]]], root: Path = ROOT) -> str:
    """bench/translation_ko.md: translated and waiting cells per English file."""
    lines = ["# Korean edition: translated and waiting cells",
             "",
             "Written by `make ko` (tools/translate.py); a test fails when it is out of date.",
             "A waiting cell is shown in English under a 번역 대기 marker; `make ko-check` lists them.",
             "",
             "| English file | Korean file | cells | translated | waiting |",
             "|---|---|---:|---:|---:|"]
    total = [0, 0, 0]
    for job, n, waiting in results:
        done = n - len(waiting)
        total = [total[0] + n, total[1] + done, total[2] + len(waiting)]
        lines.append(f"| {rel_to(job.english, root)} | {rel_to(job.output, root)} "
                     f"| {n} | {done} | {len(waiting)} |")
    lines.append(f"| **all** | | {total[0]} | {total[1]} | {total[2]} |")
    return "\n".join(lines) + "\n"


def build(root: Path = ROOT) -> tuple[dict[Path, str], list[Waiting], list[str]]:
    """Every generated file's text, every waiting cell, and a problem line per orphan block."""
    files, waiting, problems, rows = {}, [], [], []
    for job in jobs(root):
        text, w, orphans = translate(job, root)
        files[job.output] = text
        waiting += w
        rows.append((job, len(english_units(job)), w))
        problems += [f"{rel_to(job.translations, root)}: block {k!r} matches no cell of "
                     f"{rel_to(job.english, root)} (delete it)" for k in orphans]
    files[root / "bench" / f"translation_{LANG}.md"] = table(rows, root)
    return files, waiting, problems


def stale(files: dict[Path, str]) -> list[Path]:
    return [p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="list waiting cells and out-of-date files; exit 1 if there are any")
    parser.add_argument("--stub", action="store_true", help="add todo blocks for untranslated cells")
    args = parser.parse_args(argv)
    if args.stub:
        for job in jobs():
            n = stub(job)
            if n:
                print(f"{rel(job.translations)}: {n} todo block(s) added")
        return 0
    files, waiting, problems = build()
    for w in waiting:
        print(f"{w.source} {w.key}: {w.reason} (en:{w.en_hash}) {w.first_line}")
    for p in problems:
        print(p)
    if args.check:
        old = stale(files)
        for p in old:
            print(f"{rel(p)} is out of date: run `make ko`")
        print(f"{len(waiting)} cell(s) waiting for translation, {len(old)} file(s) out of date")
        return 1 if waiting or old or problems else 0
    for p, text in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            p.write_text(text, encoding="utf-8")
    print(f"wrote the Korean edition: {len(files) - 1} files, {len(waiting)} cell(s) waiting for translation")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""The Korean edition (tools/translate.py, i18n/): generated from the English source, never stale,
and true to it: the same code and outputs, every number, code span, formula and link kept,
the glossary's terms, one register.

Each check collects every problem of one file into one message naming the cell and the fix.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


tr = _load(ROOT / "tools" / "translate.py", "translate_tool")
JOBS = tr.jobs()
FILES, WAITING, PROBLEMS = tr.build()
WAITING_KEYS = {(w.source, w.key) for w in WAITING}
NB_JOBS = [j for j in JOBS if not j.is_readme]


def _id(job) -> str:
    return tr.rel_to(job.output, ROOT)


# ----------------------------------------------------------------------------- generated, complete


@pytest.mark.parametrize("path", sorted(FILES), ids=lambda p: tr.rel_to(p, ROOT))
def test_the_generated_file_is_what_make_ko_writes(path):
    assert path.exists(), f"{tr.rel_to(path, ROOT)} is missing: run `make ko`"
    assert path.read_text(encoding="utf-8") == FILES[path], (
        f"{tr.rel_to(path, ROOT)} is not what `make ko` writes from the English files and i18n/ko/: "
        "run `make ko` (never edit the Korean edition by hand)")


def test_every_translation_block_belongs_to_a_cell():
    assert not PROBLEMS, "\n".join(PROBLEMS)


def test_every_english_file_has_a_korean_one_and_no_other():
    for folder in ("notebooks", "solutions", "exercises"):
        english = {p.name for p in (ROOT / folder).glob("*.ipynb")}
        korean = {p.name for p in (ROOT / folder / tr.LANG).glob("*.ipynb")}
        assert korean == english, f"{folder}/{tr.LANG}/ differs from {folder}/: run `make ko`"


@pytest.mark.parametrize("job", NB_JOBS, ids=_id)
def test_code_cells_outputs_and_metadata_are_the_english_bytes(job):
    """Read straight from the committed files, without the tool: the Korean notebook runs and
    prints exactly what the English one does."""
    en = json.loads(job.english.read_text(encoding="utf-8"))
    ko = json.loads(job.output.read_text(encoding="utf-8"))
    assert [(c["cell_type"], c.get("id")) for c in ko["cells"]] == [
        (c["cell_type"], c.get("id")) for c in en["cells"]], "cells added, dropped or reordered"
    for a, b in zip(en["cells"], ko["cells"], strict=True):
        if a["cell_type"] == "markdown":
            assert {k: v for k, v in a.items() if k != "source"} == {
                k: v for k, v in b.items() if k != "source"}, f"cell {a['id']}: metadata differs"
        else:
            assert a == b, f"cell {a['id']}: the code cell differs from {tr.rel_to(job.english, ROOT)}"
    meta = dict(ko["metadata"])
    assert meta.pop("i18n")["english"] == tr.rel_to(job.english, ROOT)
    assert meta == en["metadata"], "notebook metadata (kernel, widget state) differs"


# ----------------------------------------------------------------------------- never silently stale


def _mini_course(tmp_path: Path, english_text: str, block: str | None) -> Path:
    """A course of one notebook (one markdown cell, one code cell) and its translation file."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(english_text, id="intro"),
                nbformat.v4.new_code_cell("print(1)", id="code")]
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nb, tmp_path / "notebooks" / "00_x.ipynb")
    readme = "# Title\n\nText."
    (tmp_path / "README.md").write_text(readme + "\n", encoding="utf-8")
    (tmp_path / "i18n" / "ko" / "notebooks").mkdir(parents=True)
    (tmp_path / "i18n" / "ko" / "README.md").write_text(
        f"<!-- section top en:{tr.english_hash(readme)} -->\n# 제목\n\n본문입니다.\n", encoding="utf-8")
    if block is not None:
        path = tmp_path / "i18n" / "ko" / "notebooks" / "00_x.md"
        path.write_text(block, encoding="utf-8")
    return tmp_path


def _korean_cell(files: dict[Path, str], root: Path) -> str:
    nb = nbformat.reads(files[root / "notebooks" / "ko" / "00_x.ipynb"], as_version=4)
    return nb.cells[0].source


def test_a_translated_cell_is_korean_and_a_changed_one_waits_in_english(tmp_path):
    english = "The encoder reads the source."
    block = f"<!-- cell intro en:{tr.english_hash(english)} -->\n인코더가 원문을 읽습니다.\n"
    root = _mini_course(tmp_path, english, block)
    files, waiting, problems = tr.build(root)
    assert _korean_cell(files, root) == "인코더가 원문을 읽습니다." and not waiting and not problems

    changed = "The encoder reads the whole source."  # the English moves on
    nb = nbformat.read(root / "notebooks" / "00_x.ipynb", 4)
    nb.cells[0].source = changed
    nbformat.write(nb, root / "notebooks" / "00_x.ipynb")
    files, waiting, _ = tr.build(root)
    cell = _korean_cell(files, root)
    assert "번역 대기" in cell and changed in cell and "인코더가" not in cell, cell
    assert [(w.key, w.reason, w.en_hash) for w in waiting] == [
        ("intro", tr.CHANGED, tr.english_hash(changed))]
    row = "| notebooks/00_x.ipynb | notebooks/ko/00_x.ipynb | 1 | 0 | 1 |"
    assert row in files[root / "bench" / "translation_ko.md"]


@pytest.mark.parametrize("block, reason", [
    (None, "missing"),
    ("<!-- cell intro en:{h} todo -->\nThe encoder reads the source.\n", "todo"),
], ids=["no block", "todo"])
def test_an_untranslated_cell_waits_in_english(tmp_path, block, reason):
    english = "The encoder reads the source."
    root = _mini_course(tmp_path, english, block and block.format(h=tr.english_hash(english)))
    files, waiting, _ = tr.build(root)
    cell = _korean_cell(files, root)
    assert cell.startswith("> **번역 대기:**") and cell.endswith(english)
    assert [w.reason for w in waiting] == [reason]


def test_a_real_notebook_shows_the_marker_when_its_english_changes(tmp_path):
    """The issue's "try it": change one English sentence of notebook 02, and only that cell waits."""
    job = next(j for j in NB_JOBS
               if j.english.name.startswith("02_") and j.english.parent.name == "notebooks")
    nb = nbformat.read(job.english, 4)
    cell = next(c for c in nb.cells if c.cell_type == "markdown" and " reads " in c.source)
    cell.source = cell.source.replace(" reads ", " reads carefully ", 1)
    english = tmp_path / job.english.name
    nbformat.write(nb, english)
    text, waiting, _ = tr.translate_notebook(tr.Job(english, job.translations, job.output), tmp_path)
    ko = nbformat.reads(text, 4)
    marked = [c.id for c in ko.cells if c.cell_type == "markdown" and "번역 대기" in c.source]
    before = {w.key for w in WAITING if w.source == tr.rel_to(job.english, ROOT)}
    assert set(marked) == before | {cell.id} and {w.key for w in waiting} == before | {cell.id}
    assert "reads carefully" in next(c.source for c in ko.cells if c.id == cell.id)


@pytest.mark.parametrize("text, message", [
    ("<!-- cell a en:0123456789 -->\nA\n<!-- cell a en:0123456789 -->\nB\n", "a second block"),
    ("<!-- cell a en:0123 -->\nA\n", "malformed marker"),
])
def test_a_broken_translation_file_is_reported_with_its_line(tmp_path, text, message):
    path = tmp_path / "x.md"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        tr.parse(path)


def test_check_mode_lists_waiting_cells_and_fails(tmp_path, monkeypatch, capsys):
    root = _mini_course(tmp_path, "The encoder reads the source.", None)
    build = tr.build
    monkeypatch.setattr(tr, "build", lambda: build(root))
    assert tr.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "notebooks/00_x.ipynb intro: missing" in out and "1 cell(s) waiting" in out


# ----------------------------------------------------------------------------- true to the English

CODE = re.compile(r"`[^`\n]+`")
MATH = re.compile(r"\$\$.*?\$\$|\$[^$]+\$", re.S)  # an inline formula may wrap onto the next line
LINK = re.compile(r"\]\(([^)\s]+)\)")
HTML = re.compile(r"<[^>\n]+>")
DIGITS = re.compile(r"\d+(?:[.,]\d+)*")


WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
WORDS.update({w: 10 * (i + 3)
              for i, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split())})
SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6}
# fractions in words: "a quarter" may be 4분의 1, "two thirds" 3분의 2
WORDS.update({"half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4, "fifth": 5,
              "fifths": 5, "tenth": 10, "tenths": 10})
MONTHS = {m: i + 1 for i, m in enumerate(
    "january february march april may june july august september october november december".split())}


def english_numbers(text: str) -> set[str]:
    """The numbers an English text states, in digits or in words ("five hundred" -> 5, 100, 500),
    so that the Korean may write in digits what the English writes in words."""
    found = {d.replace(",", "") for d in DIGITS.findall(text)}
    value = None
    for word in re.findall(r"[a-z]+", text.lower()) + [""]:
        if word in MONTHS:  # "August 2025" is 2025년 8월
            found.add(str(MONTHS[word]))
        if word in WORDS:
            found.add(str(WORDS[word]))
            value = (value or 0) + WORDS[word]
        elif word in SCALES:
            found.add(str(SCALES[word]))
            value = (value or 1) * SCALES[word]
        else:
            if value is not None:
                found.add(str(value))
            value = None
    return found


def pairs(job) -> list[tuple[str, str, str]]:
    """(key, English, Korean) for every translated cell of ``job``."""
    t = tr.parse(job.translations)
    out = []
    for _kind, key, english in tr.english_units(job):
        block = t.blocks.get(key)
        if block and not block.todo and block.en_hash == tr.english_hash(english):
            out.append((key, english, block.text))
    return out


def prose(text: str) -> str:
    """Markdown without code spans, fenced code, formulas, link targets and HTML tags."""
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = CODE.sub(" ", text)
    text = MATH.sub(" ", text)
    text = LINK.sub("] ", text)
    return HTML.sub(" ", text)


def in_korean_edition(span: str) -> list[str]:
    """The forms an English code span or path may take in the Korean edition."""
    forms = [span]
    for folder in ("notebooks", "exercises", "solutions", "my-work"):
        forms.append(re.sub(rf"\b{folder}/(?=\d\d_)", f"{folder}/{tr.LANG}/", span))
    forms.append(span.replace("make lab", "make lab-ko").replace("make fresh", "make fresh-ko"))
    return forms


def _report(job, problems: list[str], what: str) -> None:
    assert not problems, (f"{tr.rel_to(job.translations, ROOT)}: {what}\n  " + "\n  ".join(problems[:25])
                          + (f"\n  ... and {len(problems) - 25} more" if len(problems) > 25 else ""))


@pytest.mark.parametrize("job", JOBS, ids=_id)
def test_numbers_code_spans_and_formulas_are_kept(job):
    problems = []
    for key, en, ko in pairs(job):
        en_digits = english_numbers(prose(en))
        extra = sorted({d for d in DIGITS.findall(prose(ko)) if d.replace(",", "") not in en_digits})
        if extra:
            problems.append(f"{key}: numbers the English cell does not have: {', '.join(extra)}")
        for span in set(CODE.findall(re.sub(r"```.*?```", " ", en, flags=re.S))):
            if not any(form in ko for form in in_korean_edition(span)):
                problems.append(f"{key}: code span {span} is missing (keep code spans exactly)")
        for formula in set(MATH.findall(CODE.sub(" ", en))):
            if formula not in ko:
                problems.append(f"{key}: formula {formula[:60]} is missing (keep formulas exactly)")
        if en.count("<details>") != ko.count("<details>") or en.count("<summary>") != ko.count("<summary>"):
            problems.append(f"{key}: <details>/<summary> blocks differ from the English")
    _report(job, problems, "the translation drops or invents something")


@pytest.mark.parametrize("job", JOBS, ids=_id)
def test_links_are_kept_and_resolve_in_the_korean_edition(job):
    problems = []
    for key, en, ko in pairs(job):
        ko_links = LINK.findall(ko)
        if len(ko_links) < len(LINK.findall(en)):
            problems.append(f"{key}: {len(LINK.findall(en))} links in English, {len(ko_links)} in Korean")
        for target in ko_links:
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (job.output.parent / target.split("#")[0]).resolve()
            if not path.exists():
                where = tr.rel_to(job.output.parent, ROOT)
                problems.append(f"{key}: link {target} does not resolve from {where}/")
    _report(job, problems, "broken links")


@pytest.mark.parametrize("job", JOBS, ids=_id)
def test_every_translated_cell_is_korean_with_the_english_structure(job):
    problems = []
    for key, en, ko in pairs(job):
        if re.search(r"[A-Za-z]{3}", prose(en)) and not re.search(r"[가-힣]", ko):
            problems.append(f"{key}: no Hangul (an untranslated block with its `todo` deleted?)")
        heads = [len(m) for m in re.findall(r"^(#+) ", re.sub(r"```.*?```", "", en, flags=re.S), re.M)]
        ko_heads = [len(m) for m in re.findall(r"^(#+) ", re.sub(r"```.*?```", "", ko, flags=re.S), re.M)]
        if heads != ko_heads:
            problems.append(f"{key}: heading levels {heads} in English, {ko_heads} in Korean")
    _report(job, problems, "untranslated or restructured cells")


def rendered_text(markdown: str) -> str:
    """The text a reader sees: the cell rendered as CommonMark (as JupyterLab renders it), without
    code and formulas. Emphasis that does not render leaves its asterisks in the text."""
    mistune = pytest.importorskip("mistune")
    html = mistune.create_markdown()(MATH.sub("@@0@@", markdown))  # JupyterLab's placeholder for math
    html = re.sub(r"<code>.*?</code>|<pre>.*?</pre>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


@pytest.mark.parametrize("job", JOBS, ids=_id)
def test_emphasis_renders_and_no_tilde_strikes_through(job):
    """**용어(term)**는 does not render in CommonMark (a closing ** after a bracket needs a space or
    punctuation after it): write **용어**(term)는. And two "~" on a line strike it through in
    JupyterLab, so a range is written 5-8 or 5에서 8, not 5~8."""
    problems = []
    for key, en, ko in pairs(job):
        stars_en, stars_ko = rendered_text(en).count("*"), rendered_text(ko).count("*")
        if stars_ko > stars_en:
            text = rendered_text(ko)
            i = text.find("*")
            near = text[max(0, i - 30):i + 30].strip()
            problems.append(f"{key}: emphasis that does not render: ...{near}...")
        if prose(ko).count("~") > prose(en).count("~"):
            problems.append(f"{key}: '~' (JupyterLab strikes text through between two of them)")
    _report(job, problems, "markdown that renders wrong")


# Sentence endings outside the one register (합니다체, with -세요 for instructions to the reader).
HAEYO = re.compile(r"(?<!세)(요|죠)[.?!](?=\s|$|\*|\))")
HANDA = re.compile(r"[가-힣](?<!니)(다|자)[.!](?=\s|$|\*|\))")
QUOTED = re.compile(r"\"[^\"\n]*\"|“[^”\n]*”|'[^'\n]*'|‘[^’\n]*’")


@pytest.mark.parametrize("job", JOBS, ids=_id)
def test_one_register_throughout(job):
    problems = []
    for key, _, ko in pairs(job):
        text = QUOTED.sub(" ", prose(ko))
        for m in list(HAEYO.finditer(text)) + list(HANDA.finditer(text)):
            problems.append(f"{key}: ...{text[max(0, m.start() - 25):m.end()].strip()} "
                            "(write 합니다체: -ㅂ니다/-습니다, or -세요 for an instruction)")
    _report(job, problems, "sentences outside 합니다체")


# ----------------------------------------------------------------------------- terms from the glossary


def glossary() -> list[tuple[list[str], str, list[str]]]:
    """(English forms, the course's Korean term, other Korean names) for each row of the first
    table of docs/glossary.md; "Post-LN / Pre-LN" rows give one entry per side."""
    text = (ROOT / "docs" / "glossary.md").read_text(encoding="utf-8")
    table = text.split("| English | 한국어 | where | in one line |")[1].split("\n\n")[0]
    out = []
    for line in table.strip().splitlines()[1:]:
        english, korean = [c.strip() for c in line.strip("|").split("|")[:2]]
        for en, ko in zip(english.split(" / "), re.sub(r"\s*\(.*\)$", "", korean).split(" / "), strict=True):
            m = re.fullmatch(r"(.*?)\s*\((.*)\)\s*(.*)", en)
            if m and m.group(3):  # "additive (Bahdanau) attention": two English forms
                forms = [f"{m.group(1)} {m.group(3)}", f"{m.group(2)} {m.group(3)}"]
            elif m:  # "recurrent neural network (RNN)": the phrase (the acronym is not a term to translate)
                forms = [m.group(1)]
            else:
                forms = [en]
            out.append((forms, ko.strip(), []))
        others = re.search(r"\((.*)\)$", korean)
        if others:
            names = [n.strip() for part in others.group(1).split(" / ") for n in part.split(",")]
            for entry in out[-len(english.split(" / ")):]:
                entry[2].extend(names)
    return out


TERMS = glossary()
# English words also used in their everyday sense ("a value of 0.5", "the key point"): the check
# that the Korean uses the term whenever the English does skips them; the other checks do not.
# "The seed post" is the post the course grew from, not a random seed.
EVERYDAY = {"value", "key", "seed"}
# Idioms that contain a term's word without the term ("falls in step with it": in proportion).
IDIOMS = re.compile(r"\bin step with\b|\bstep by step\b|\bof course\b", re.I)


def english_pattern(form: str) -> re.Pattern:
    stem = re.escape(form)
    if form.endswith("y") and not form.endswith("ey"):
        stem = re.escape(form[:-1]) + "(?:y|ies)"
    return re.compile(rf"(?<![A-Za-z]){stem}(?:s|es)?(?![A-Za-z])", re.I)


def korean_pattern(term: str) -> re.Pattern:
    """The term where a word starts (키 in 키를, not in 일으키는)."""
    return re.compile(rf"(?<![가-힣]){re.escape(term)}", re.I)  # Pre-LN or pre-LN, KV 캐시 or kv 캐시


def flat(text: str) -> str:
    """Line breaks and runs of spaces as one space: a term may wrap (문맥⏎벡터)."""
    return re.sub(r"\s+", " ", text)


def english_terms(en_prose: str, ko_prose: str) -> list[tuple[str, str]]:
    """(English form, Korean term) for each glossary term the English uses and the Korean must
    translate. Longer terms first, their words taken out ("gradient descent" is not also
    "gradient"); a form the Korean keeps in English as often as the English has it (a paper's
    title) is not one to translate; words of everyday English (``EVERYDAY``) are skipped."""
    out = []
    en_prose = IDIOMS.sub(" ", en_prose)
    for form, term in sorted(((f, t) for forms, t, _ in TERMS for f in forms), key=lambda x: -len(x[0])):
        pattern = english_pattern(form)
        n_en, n_ko = len(pattern.findall(en_prose)), len(pattern.findall(ko_prose))
        en_prose, ko_prose = pattern.sub(" ", en_prose), pattern.sub(" ", ko_prose)
        if n_en > n_ko and form not in EVERYDAY:
            out.append((form, term))
    return out


def test_english_terms_take_the_longest_match_and_skip_kept_titles():
    assert english_terms("gradient descent and a vanishing gradient", "") == [
        ("vanishing gradient", "기울기 소실"), ("gradient descent", "경사 하강법")]
    assert english_terms("the gradient", "") == [("gradient", "기울기")]
    assert english_terms("*Neural Machine Translation* with an encoder", "*Neural Machine Translation*") == [
        ("encoder", "인코더")]
    assert english_terms("RNN Encoder-Decoder (a title)", "RNN Encoder-Decoder (제목)") == []
    assert english_terms("a value and a key", "") == []


def test_the_glossary_parses_into_terms():
    by_english = {f: (ko, alt) for forms, ko, alt in TERMS for f in forms}
    assert by_english["context vector"] == ("문맥 벡터", ["컨텍스트 벡터"])
    assert by_english["Bahdanau attention"][0] == by_english["additive attention"][0] == "바다나우 어텐션"
    assert by_english["recurrent neural network"] == ("순환 신경망", [])
    assert by_english["Pre-LN"] == ("Pre-LN", ["사후 층 정규화", "사전 층 정규화"])
    assert len(TERMS) > 80


@pytest.mark.parametrize("job", JOBS, ids=_id)
def test_the_glossary_term_is_used_wherever_the_english_uses_the_term(job):
    problems = []
    for key, en, ko in pairs(job):
        en_prose, ko_prose = flat(prose(en)), flat(prose(ko))
        for form, term in english_terms(en_prose, ko_prose):
            if not korean_pattern(term).search(ko_prose):
                problems.append(f"{key}: the English says {form!r}; write the glossary's {term!r}")
    _report(job, problems, "terms not taken from docs/glossary.md")


@pytest.mark.parametrize("job", JOBS, ids=_id)
def test_no_file_uses_another_name_for_a_glossary_term(job):
    problems = []
    for key, _, ko in pairs(job):
        for forms, term, others in TERMS:
            for other in others:
                if re.search(r"[가-힣]", other) and korean_pattern(other).search(prose(ko)):
                    problems.append(f"{key}: {other!r} is another book's name for {forms[0]!r}; "
                                    f"write {term!r}")
    _report(job, problems, "two Korean terms for one concept")


def _covered(text: str) -> list[tuple[int, int, str]]:
    """Each glossary term found in ``text``, longest first, none inside a longer one."""
    spans: list[tuple[int, int, str]] = []
    for term in sorted({t for _, t, _ in TERMS if re.search(r"[가-힣]", t)}, key=len, reverse=True):
        for m in korean_pattern(term).finditer(text):
            if not any(s <= m.start() < e for s, e, _ in spans):
                spans.append((m.start(), m.end(), term))
    return sorted(spans)


@pytest.mark.parametrize("job", JOBS, ids=_id)
def test_each_term_comes_with_its_english_on_first_use(job):
    """On its first use in a file, outside headings, a term is followed by its English in
    parentheses: 문맥 벡터(context vector), 셀프 어텐션(self-attention)."""
    english_of = {}
    for forms, term, _ in TERMS:
        english_of.setdefault(term, []).extend(forms)
    seen, problems = set(), []
    for key, _, ko in pairs(job):
        body = flat("\n".join(ln for ln in prose(ko).splitlines() if not ln.lstrip().startswith("#")))
        for _start, end, term in _covered(body):
            if term in seen:
                continue
            seen.add(term)
            after = body[end:end + 160]
            m = re.match(r"[*_]*\s?\(([^)]*)\)", after)
            if not m or not any(english_pattern(f).search(m.group(1)) for f in english_of[term]):
                problems.append(f"{key}: first use of {term!r} without its English: "
                                f"write {term}({english_of[term][0]})")
    _report(job, problems, "terms introduced without their English")


# ----------------------------------------------------------------------------- the two READMEs and Binder


def test_each_readme_links_the_other_edition_and_binder_opens_either_notebook_00():
    english = (ROOT / "README.md").read_text(encoding="utf-8")
    korean = (ROOT / "README.ko.md").read_text(encoding="utf-8")
    assert "](README.ko.md)" in english, "README.md must link the Korean edition (README.ko.md)"
    assert "](README.md)" in korean, "README.ko.md must link the English README"
    binder = re.compile(r"mybinder\.org/v2/gh/[^)]*urlpath=lab/tree/([^)\s]+)")
    assert "notebooks/00_start_here.ipynb" in binder.findall(english)
    assert "notebooks/ko/00_start_here.ipynb" in binder.findall(korean) + binder.findall(english)
    for target in set(binder.findall(english) + binder.findall(korean)):
        assert (ROOT / target).exists(), f"Binder opens {target}, which does not exist"


def test_the_korean_exercises_are_what_make_exercises_makes_of_the_korean_solutions():
    """exercises/ko/ is to solutions/ko/ what exercises/ is to solutions/ (nbgrader's stubs, no
    outputs), so a Korean class can hand solutions/ko/ to nbgrader as its source."""
    pytest.importorskip("nbgrader")
    make = _load(ROOT / "tools" / "make_exercises.py", "make_exercises_i18n")
    for path in sorted((ROOT / "solutions" / tr.LANG).glob("*.ipynb")):
        solution = nbformat.read(path, as_version=4)
        expected = make.build_exercise(make.stamp(solution))
        exercise = nbformat.read(ROOT / "exercises" / tr.LANG / path.name, as_version=4)
        for nb in (expected, exercise):
            nb.metadata.pop("i18n")
        assert make.render(exercise) == make.render(expected), f"exercises/ko/{path.name}"
        assert make.render(make.stamp(solution)) == path.read_text(encoding="utf-8"), (
            f"solutions/ko/{path.name} lacks nbgrader's metadata")


def test_a_korean_class_gets_the_korean_solutions_as_nbgrader_source(tmp_path):
    """`make classroom CLASSROOM_ARGS="--lang ko"` puts solutions/ko/ in the course's source/."""
    classroom = _load(ROOT / "tools" / "classroom.py", "classroom_i18n")
    added = classroom.add_course_notebooks(tmp_path, "ko")
    korean = sorted((ROOT / "solutions" / tr.LANG).glob("*.ipynb"))
    assert added == [p.stem for p in korean]
    for path in korean:
        assert (tmp_path / "source" / path.stem / path.name).read_bytes() == path.read_bytes()
    with pytest.raises(ValueError, match="expects lang 'en' or 'ko', got 'fr'"):
        classroom.add_course_notebooks(tmp_path, "fr")

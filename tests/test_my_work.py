"""tools/my_work.py: the learner's copies in my-work/ are made once and never overwritten,
not by the script itself, `git pull`, `make exercises` nor `make test`'s exercise check."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = sorted(p.name for p in (ROOT / "exercises").glob("*.ipynb"))
ATTENTION = "03_attention_for_seq2seq.ipynb"
WARMUP = "00_warmup.ipynb"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


my_work = _load(ROOT / "tools" / "my_work.py", "my_work")


def _solve(path: Path) -> bytes:
    """Stand in for a learner's work: the notebook with its answers (the solution) and a note."""
    solution = (ROOT / "solutions" / path.name).read_bytes()
    solved = solution.replace(b'"source": [', b'"source": [\n    "# mine\\n",', 1)
    path.write_bytes(solved)
    return solved


def test_the_copy_happens_once_and_never_overwrites_a_solved_notebook(tmp_path, capsys):
    dest = tmp_path / "my-work"
    assert my_work.main(["--dest", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == EXERCISES
    assert all((dest / n).read_bytes() == (ROOT / "exercises" / n).read_bytes() for n in EXERCISES)
    assert capsys.readouterr().out.count("copied ") == len(EXERCISES)

    solved = _solve(dest / WARMUP)
    (dest / ATTENTION).unlink()  # a file the learner deleted is copied again, and only that one
    assert my_work.main(["--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    assert (dest / WARMUP).read_bytes() == solved
    assert f"copied {ATTENTION}" in out and out.count("copied ") == 1
    assert f"{WARMUP} (yours: never overwritten)" in out and out.count("kept ") == len(EXERCISES) - 1


def test_fresh_restores_one_exercise_and_keeps_the_learners_as_a_backup(tmp_path, capsys):
    dest = tmp_path / "my-work"
    my_work.copy_missing(dest)
    solved, warmup = _solve(dest / ATTENTION), _solve(dest / WARMUP)
    assert my_work.main(["--dest", str(dest), "--fresh", "03"]) == 0
    assert (dest / ATTENTION).read_bytes() == (ROOT / "exercises" / ATTENTION).read_bytes()
    backups = sorted(dest.glob("03_attention_for_seq2seq.backup-*.ipynb"))
    assert len(backups) == 1 and re.fullmatch(r"03_attention_for_seq2seq\.backup-\d{8}-\d{6}\.ipynb",
                                              backups[0].name)
    assert backups[0].read_bytes() == solved and backups[0].name in capsys.readouterr().out
    assert (dest / WARMUP).read_bytes() == warmup  # the other exercises are not touched

    # By file name or number, twice within one second: each earlier version is its own backup.
    for name in (ATTENTION, "3"):
        (dest / ATTENTION).write_text("second try")
        my_work.fresh(name, dest)
    assert len(list(dest.glob("03_*.backup-*.ipynb"))) == 3
    assert my_work.main(["--dest", str(dest)]) == 0  # backups are not exercises: nothing copied
    assert "copied" not in capsys.readouterr().out


def test_the_korean_exercises_go_to_their_own_folder(tmp_path, capsys):
    """`make lab-ko`: exercises/ko/ into my-work/ko/, beside (never over) the English copies."""
    korean = sorted(p.name for p in (ROOT / "exercises" / "ko").glob("*.ipynb"))
    assert korean == EXERCISES
    dest = tmp_path / "my-work" / "ko"
    assert my_work.main(["--lang", "ko", "--dest", str(dest)]) == 0
    assert all((dest / n).read_bytes() == (ROOT / "exercises" / "ko" / n).read_bytes() for n in korean)
    solved = _solve(dest / WARMUP)
    assert my_work.main(["--lang", "ko", "--dest", str(dest), "--fresh", "0"]) == 0
    assert (dest / WARMUP).read_bytes() == (ROOT / "exercises" / "ko" / WARMUP).read_bytes()
    assert [p.read_bytes() for p in dest.glob("00_warmup.backup-*.ipynb")] == [solved]
    title = json.loads((dest / WARMUP).read_text(encoding="utf-8"))["cells"][0]["source"][0]
    assert re.search("[가-힣]", title), title  # the Korean instructions, not the English


def test_an_unknown_name_is_an_error_that_lists_the_exercises(tmp_path, capsys):
    dest = tmp_path / "my-work"
    assert my_work.main(["--dest", str(dest), "--fresh", "99"]) == 2
    err = capsys.readouterr().err
    assert "no exercise matches '99'" in err and all(n in err for n in EXERCISES)
    with pytest.raises(ValueError, match="the exercises are: 00_warmup.ipynb"):
        my_work.find_exercise("attention")
    assert not dest.exists()


def _git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, env=env,
                          check=True, capture_output=True, text=True).stdout


def _python(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="needs git and the course as a git repository")
def test_a_course_update_pulled_and_regenerated_leaves_the_learners_work_alone(tmp_path):
    # The course upstream: the committed course, with this working tree's my_work.py and .gitignore.
    upstream, maintainer, learner = tmp_path / "course.git", tmp_path / "maintainer", tmp_path / "learner"
    _git(tmp_path, "clone", "--quiet", "--bare", str(ROOT), str(upstream))
    _git(tmp_path, "clone", "--quiet", str(upstream), str(maintainer))
    for rel in ("tools/my_work.py", ".gitignore"):
        shutil.copyfile(ROOT / rel, maintainer / rel)
    _git(maintainer, "add", "tools/my_work.py", ".gitignore")
    if _git(maintainer, "status", "--porcelain"):
        _git(maintainer, "commit", "--quiet", "-m", "my-work")
        _git(maintainer, "push", "--quiet")

    # The learner clones the course, gets my-work/ and solves the warm-up there.
    _git(tmp_path, "clone", "--quiet", str(upstream), str(learner))
    assert _python(learner, "tools/my_work.py").returncode == 0
    solved = _solve(learner / "my-work" / WARMUP)

    # The maintainers change the warm-up's solution and regenerate exercises/ (make exercises).
    source = maintainer / "solutions" / WARMUP
    source.write_text(source.read_text(encoding="utf-8").replace(
        '"source": [\n', '"source": [\n    "A course update.\\n",\n', 1), encoding="utf-8")
    assert _load(maintainer / "tools" / "make_exercises.py", "make_exercises_maintainer").main([]) == 0
    _git(maintainer, "commit", "--quiet", "-am", "a course update")
    _git(maintainer, "push", "--quiet")

    # The learner pulls it, regenerates exercises/ (`make exercises`, run in this process: nbgrader
    # is slow to import) and runs `make test`'s check of exercises/ against solutions/.
    _git(learner, "pull", "--quiet", "--ff-only")
    assert "A course update." in (learner / "exercises" / WARMUP).read_text(encoding="utf-8")
    assert _load(learner / "tools" / "make_exercises.py", "make_exercises_learner").main([]) == 0
    check = _python(learner, "tools/make_exercises.py", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert _python(learner, "tools/my_work.py").returncode == 0  # `make lab` again

    assert (learner / "my-work" / WARMUP).read_bytes() == solved
    assert _git(learner, "status", "--porcelain") == ""
    assert "!! my-work/" in _git(learner, "status", "--porcelain", "--ignored").splitlines()

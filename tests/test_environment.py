"""environment.yml (conda, Binder) names the same packages as pyproject.toml, with the same bounds."""

import re

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
REQ = re.compile(r"^([A-Za-z0-9_.-]+)\s*(.*)$")


def _parse(spec: str) -> tuple[str, str]:
    name, bound = REQ.match(spec.strip()).groups()
    return name.lower().replace("_", "-"), bound.replace(" ", "")


def project_requirements() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return dict(_parse(s) for s in meta["dependencies"])


def environment() -> tuple[dict[str, str], dict[str, str], list[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip, pip_options = {}, {}, []
    for item in env["dependencies"]:
        if isinstance(item, dict):
            for line in item["pip"]:
                (pip_options.append(line) if line.startswith("-") else pip.update([_parse(line)]))
        else:
            name, bound = _parse(item.replace("=", "==", 1) if re.match(r"^\w+=\d", item) else item)
            conda[name] = bound
    return conda, pip, pip_options


def test_environment_names_every_dependency_with_the_same_lower_bound():
    conda, pip, _ = environment()
    env = {**conda, **pip}
    for name, bound in project_requirements().items():
        assert name in env, f"{name} is in pyproject.toml but not in environment.yml"
        assert env[name] == bound, f"{name}: pyproject says {bound!r}, environment.yml {env[name]!r}"


def test_environment_has_nothing_the_project_does_not_declare():
    conda, pip, _ = environment()
    extra = (set(conda) | set(pip)) - set(project_requirements()) - {"python", "pip"}
    assert not extra, f"environment.yml has packages pyproject.toml does not declare: {sorted(extra)}"


def test_python_is_pinned_and_within_the_supported_range():
    conda, _, _ = environment()
    assert conda["python"] in ("==3.11", "==3.12"), conda["python"]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.10"


def test_torch_comes_from_the_cpu_index_and_dev_tools_stay_out():
    conda, pip, options = environment()
    assert "torch" in pip and "torch" not in conda
    assert any(o.startswith("--extra-index-url") and o.rstrip("/").endswith("/whl/cpu") for o in options)
    assert "nbgrader" not in conda and "nbgrader" not in pip


def test_postbuild_installs_the_package_without_dependencies():
    text = (ROOT / "postBuild").read_text()
    assert "pip install --no-deps -e ." in text


def test_readme_shows_the_benchmark_table_that_make_bench_wrote():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    results = (ROOT / "bench" / "results.md").read_text(encoding="utf-8").splitlines()
    block = readme.split("<!-- bench:start (written by make bench) -->")[1].split("<!-- bench:end -->")[0]
    rows = [r for r in results if r.startswith("| ")]
    assert rows, "bench/results.md has no table: run `make bench`"
    for row in rows:
        assert row in block, f"README.md's benchmark table is out of date (missing {row!r}): run `make bench`"
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    for name in notebooks:
        assert f"| notebooks/{name} |" in block, f"{name} is not in the benchmark table: run `make bench`"

"""Binder's environment, rebuilt: environment.yml's packages in a fresh venv import everything
the notebooks import, with a CPU-only PyTorch.

Binder (repo2docker) builds environment.yml with conda, then runs postBuild. Conda cannot
run here, so this test installs the same packages with pip into a new virtual environment,
runs postBuild's command, and imports every module any notebook imports. It needs the
package index, so `make test-binder` runs it outside the offline namespace.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# The PyTorch CPU wheel index that environment.yml names is not reachable from every
# machine; the version the course is tested with is a CPU build on PyPI's mirror here.
TORCH_HERE = "torch==2.13.0"


def binder_requirements() -> list[str]:
    """environment.yml's packages as pip requirements (conda names equal pip names here)."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    reqs = []
    for item in env["dependencies"]:
        if isinstance(item, dict):
            reqs += [r for r in item["pip"] if not r.startswith("-")]
        elif not item.startswith(("python", "pip")):
            reqs.append(item)
    return [TORCH_HERE if r.startswith("torch") else r for r in reqs]


def notebook_imports() -> set[str]:
    """Top-level modules imported by any code cell of notebooks/, solutions/, exercises/."""
    modules = set()
    for folder in ("notebooks", "solutions", "exercises"):
        for path in (ROOT / folder).glob("*.ipynb"):
            for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
                if cell["cell_type"] != "code":
                    continue
                source = "\n".join(line for line in "".join(cell["source"]).splitlines()
                                   if not line.lstrip().startswith(("%", "!")))
                for node in ast.walk(ast.parse(source)):
                    if isinstance(node, ast.Import):
                        modules |= {a.name.split(".")[0] for a in node.names}
                    elif isinstance(node, ast.ImportFrom) and node.level == 0:
                        modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names}


def test_notebooks_import_only_what_binder_installs():
    allowed = {re.split(r"[<>=]", r)[0].replace("-", "_") for r in binder_requirements()}
    allowed |= {"transformer_course", "IPython"}  # the course itself; IPython comes with ipykernel
    extra = notebook_imports() - allowed
    assert not extra, f"notebooks import modules environment.yml does not provide: {sorted(extra)}"


@pytest.fixture(scope="module")
def binder_venv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("binder") / "venv"
    venv.create(path, with_pip=True)
    python = path / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--quiet", *binder_requirements()], check=True)
    # postBuild's command: the package alone, the environment already holds its dependencies
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(ROOT)], check=True)
    return python


def test_fresh_binder_environment_imports_everything_the_notebooks_import(binder_venv):
    modules = sorted(notebook_imports() | {"transformer_course", "jupyterlab", "nbval"})
    code = f"import importlib\nfor m in {modules!r}:\n    importlib.import_module(m)"
    result = subprocess.run([binder_venv, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_fresh_binder_environment_has_a_cpu_only_pytorch(binder_venv):
    code = "import torch; print(torch.__version__, torch.version.cuda)"
    out = subprocess.run([binder_venv, "-c", code], capture_output=True, text=True, check=True).stdout
    version, cuda = out.split()
    assert cuda == "None", f"the Binder environment has a CUDA build of torch ({version}, CUDA {cuda})"


def test_fresh_binder_environment_has_no_nbgrader(binder_venv):
    result = subprocess.run([binder_venv, "-c", "import nbgrader"], capture_output=True)
    assert result.returncode != 0, "nbgrader is a development tool; it must stay out of Binder's image"

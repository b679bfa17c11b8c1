"""The package's layout rule, read from the source with ``ast``: components apart from experiments.

- components import only components;
- ``reference``, ``widgets`` and ``diagrams`` import only components;
- nothing outside ``experiments/`` and ``checks/`` imports ``experiments/``;
- no import cycle among the package's modules, counting imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "transformer_course"
NAME = "transformer_course"
COMPONENTS = {"rnn", "seq2seq", "attention", "positional", "transformer", "gpt", "efficient",
              "decoding", "data", "korean", "train", "utils", "_validate", "measure"}
ONLY_COMPONENTS = COMPONENTS | {"reference", "widgets", "diagrams", "__init__"}  # may import components only


def module_name(path: Path, root: Path) -> str:
    """'attention', 'experiments.positions', 'checks._core', 'experiments' (for __init__.py)."""
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def package_imports(path: Path, root: Path) -> set[str]:
    """The package's modules that ``path`` imports, at any depth of the file (functions too)."""
    here = module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(NAME + "."):
                    found.add(alias.name[len(NAME) + 1:])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.startswith(NAME + "."):
                target = node.module[len(NAME) + 1:]
            elif node.module == NAME:
                target = ""
            else:
                continue
            for alias in node.names:  # `from . import attention` names a module, not a function
                candidate = f"{target}.{alias.name}" if target else alias.name
                found.add(candidate if _exists(root, candidate) else target)
    return {m for m in found if m and m != "__init__"}


def _exists(root: Path, module: str) -> bool:
    path = root.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph(root: Path) -> dict[str, set[str]]:
    return {module_name(p, root): package_imports(p, root) for p in sorted(root.rglob("*.py"))}


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Each broken rule, in words that name the two modules."""
    found = []
    for module, imports in sorted(graph.items()):
        top = module.split(".")[0]
        for target in sorted(imports):
            target_top = target.split(".")[0]
            if module in ONLY_COMPONENTS and target_top not in COMPONENTS:
                kind = "a component" if module in COMPONENTS else f"'{module}'"
                found.append(f"{module} imports {target}: {kind} may import only components "
                             f"({', '.join(sorted(COMPONENTS))})")
            elif target_top == "experiments" and top not in ("experiments", "checks"):
                found.append(f"{module} imports {target}: only experiments/ and checks/ may "
                             "import experiments/")
    return found + [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each module that lies on one (depth-first search)."""
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, path + [node])
        done.add(node)

    for start in sorted(graph):
        visit(start, [])
    return found


def test_the_package_keeps_the_layout_rule():
    graph = import_graph(PACKAGE)
    assert {"attention", "experiments", "checks", "reference", "measure", "_validate"} <= set(graph)
    problems = violations(graph)
    assert not problems, "the layout rule is broken:\n" + "\n".join(problems)


def test_experiments_are_used_only_by_experiments_and_checks():
    graph = import_graph(PACKAGE)
    assert any(m.startswith("experiments.") for m in graph), "experiments/ has no modules"
    for module, imports in graph.items():
        if module.split(".")[0] not in ("experiments", "checks"):
            assert not any(t.split(".")[0] == "experiments" for t in imports), module


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / NAME
    for rel, text in {"__init__.py": "", "experiments/__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize("files, expected", [
    ({"attention.py": "from .experiments.positions import Tagger\n",
      "experiments/positions.py": "from ..attention import x\n"},
     "attention imports experiments.positions: a component may import only components"),
    ({"attention.py": "def f():\n    from transformer_course.experiments import positions\n",
      "experiments/positions.py": ""},
     "attention imports experiments.positions"),
    ({"widgets.py": "from .experiments import softmax\n", "experiments/softmax.py": ""},
     "widgets imports experiments.softmax: 'widgets' may import only components"),
    ({"attention.py": "from .checks import x\n", "checks/__init__.py": ""},
     "attention imports checks: a component may import only components"),
    ({"positional.py": "def f():\n    from .transformer import EncoderLayer\n",
      "transformer.py": "from .positional import P\n"},
     "import cycle: positional -> transformer -> positional"),
])
def test_the_rule_names_each_kind_of_violation(tmp_path, files, expected):
    problems = violations(import_graph(_fake_package(tmp_path, files)))
    assert any(expected in p for p in problems), problems


def test_a_clean_fake_package_passes(tmp_path):
    root = _fake_package(tmp_path, {
        "attention.py": "from . import _validate\nfrom .utils import x\n", "_validate.py": "",
        "utils.py": "", "experiments/positions.py": "from ..attention import f\nfrom . import other\n",
        "experiments/other.py": "", "checks/__init__.py": "from ..experiments import positions\n"})
    assert violations(import_graph(root)) == []

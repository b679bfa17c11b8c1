"""Execute notebooks in fresh kernels; record wall time and the kernel's peak memory.

    python bench/run_notebooks.py                      # every notebook, write bench/results.md
    python bench/run_notebooks.py --save notebooks/03_*.ipynb   # also store the outputs

``--save`` writes the executed notebook back (outputs scrubbed of memory addresses and
absolute paths), which is how notebooks/ and solutions/ are committed. This is a
benchmark, not a test: it reports numbers, it does not judge them.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.md"
BUDGET_S, BUDGET_MB = 90, 1536

PEAK_PROBE = """
import resource, sys
try:
    _kb = int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])
except OSError:
    _kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == 'darwin' else 1)
print(_kb)
"""

_NOISE = [
    (re.compile(r" at 0x[0-9a-fA-F]+"), " at 0x..."),
    (re.compile(re.escape(str(ROOT))), "<repo>"),
]


def scrub(nb: nbformat.NotebookNode) -> None:
    """Remove machine-specific noise (memory addresses, absolute paths) from outputs."""
    nb.metadata.pop("jupytext", None)  # left by authoring tools
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for key in ("text",):
                if key in out:
                    out[key] = _clean(out[key])
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, str):
                    out["data"][mime] = _clean(value)


def _clean(text: str) -> str:
    for pattern, repl in _NOISE:
        text = pattern.sub(repl, text)
    return text


def run(path: Path, save: bool, timeout: int = 300) -> tuple[float, float]:
    """Execute one notebook in a fresh kernel; return (seconds, peak MB of the kernel)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        start = time.perf_counter()
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        seconds = time.perf_counter() - start
        probe = nbformat.v4.new_code_cell(PEAK_PROBE)
        nb.cells.append(probe)
        client.execute_cell(probe, len(nb.cells) - 1)
        nb.cells.pop()
        peak_mb = int(probe.outputs[0]["text"].strip()) / 1024
        client.set_widgets_metadata()
    if save:
        scrub(nb)
        nbformat.write(nb, path)
    return seconds, peak_mb


def machine() -> str:
    """One line about the machine the numbers come from."""
    import torch

    cpu = platform.processor() or platform.machine()
    return (f"{platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} CPU cores, "
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}")


def write_results(rows: list[tuple[str, float, float]], path: Path = RESULTS) -> None:
    """The table of times and peak memories, with the machine it was measured on."""
    total = sum(s for _, s, _ in rows)
    lines = ["# Measured notebook runtimes", "",
             f"Measured by `make bench` ({Path(__file__).name}) on: {machine()}.",
             f"Each notebook ran in a fresh kernel; budgets: {BUDGET_S} s and {BUDGET_MB} MB each.", "",
             "| notebook | wall time (s) | kernel peak memory (MB) | within budget |",
             "|---|---:|---:|:---:|"]
    for name, seconds, mb in rows:
        ok = "yes" if seconds <= BUDGET_S and mb <= BUDGET_MB else "**no**"
        lines.append(f"| {name} | {seconds:.1f} | {mb:.0f} | {ok} |")
    lines.append(f"| **total** | **{total:.1f}** | | {'yes' if total <= 900 else '**no**'} (15 min) |")
    lines += ["", "## Other measurements", ""] + other_measurements()
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    update_readme(lines[2:])


README = ROOT / "README.md"
START, END = "<!-- bench:start (written by make bench) -->", "<!-- bench:end -->"


def update_readme(body: list[str], readme: Path = README) -> None:
    """Copy the measured table into the README between its bench markers."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block to update")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    block = "\n".join(re.sub(r"\]\((\w+\.md)\)", r"](bench/\1)", line) for line in body)
    readme.write_text(f"{head}{START}\n{block}\n{END}{tail}", encoding="utf-8")


def other_measurements() -> list[str]:
    """The MultiHeadAttention ratio and the KV-cache speed-up, from their own benchmarks."""
    out = []
    mha = ROOT / "bench" / "mha.md"
    ratio = re.search(r"\*\*([\d.]+)\*\*", mha.read_text()) if mha.exists() else None
    out.append(f"- `MultiHeadAttention` forward + backward against `nn.MultiheadAttention` "
               f"(B=32, T=128, D=256, H=8, CPU): **{ratio.group(1)}x** the time ([mha.md](mha.md))"
               if ratio else "- MultiHeadAttention ratio: not measured (run `make bench`)")
    kv = ROOT / "bench" / "kv_cache.md"
    rows = [r for r in kv.read_text().splitlines() if r.startswith("| 1 |") or r.startswith("| 8 |")] \
        if kv.exists() else []
    if rows:
        longest = {r.split("|")[1].strip(): r.split("|")[-2].strip() for r in rows}
        out.append(f"- KV cache, greedy generation of {rows[-1].split('|')[2].strip()} characters: "
                   f"**{longest['1']}** faster for one prompt, **{longest['8']}** for 8 prompts "
                   "([kv_cache.md](kv_cache.md))")
    else:
        out.append("- KV-cache speed-up: not measured (run `make bench`)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: all)")
    parser.add_argument("--save", action="store_true", help="write the executed notebooks back")
    parser.add_argument("--no-results", action="store_true", help="do not write bench/results.md")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted(
        (ROOT / "solutions").glob("*.ipynb"))
    os.environ["PYTHONHASHSEED"] = "0"
    rows = []
    for path in paths:
        path = path.resolve()
        seconds, mb = run(path, save=args.save)
        name = str(path.relative_to(ROOT))
        print(f"{name:55s} {seconds:6.1f} s {mb:7.0f} MB", flush=True)
        rows.append((name, seconds, mb))
    if not args.no_results and not args.paths:
        write_results(rows)
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

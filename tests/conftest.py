"""Shared test settings, and the headless Chromium of the browser and classroom tests."""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Debian's Chromium: no test tool may download a browser of its own.
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(autouse=True)
def one_thread():
    """The course's tensors are tiny: one thread is faster than two when other programs share
    the cores (two threads were 10-100x slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _load_script(relative: str):
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    """Import a script of the repository by its path: ``load_script("bench/race.py")``."""
    return _load_script


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Playwright; skips when either is missing."""
    playwright = pytest.importorskip("playwright.sync_api",
                                     reason="Playwright's Python package is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (install Debian's chromium package)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            yield b
        finally:
            b.close()

"""The course as a learner meets it: a real JupyterLab in a real (headless) Chromium.

For each notebook below: open it in JupyterLab, run all cells, save, and assert that no cell
failed, that the widgets rendered (sliders in the page), that moving a slider one step changes
the figure, and that every progress bar finished. Screenshots go to bench/screenshots/ for a
person to look at; the one after the slider move waits until the kernel is idle and the figures
have stopped changing, so that it shows the figure of the slider's value.

Run with `make test-browser` (also part of `make test`). It needs Debian's chromium at
/usr/bin/chromium (no test tool may download a browser of its own) and Playwright's Python
package; without them the tests are skipped with a message saying so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from transformer_course.diagrams import OPENING

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "bench" / "screenshots"
TOKEN = "course-browser-test"
# notebook 00 and a widget notebook from each part that exists so far, and the Korean edition's 00
NOTEBOOKS = ["00_start_here.ipynb", "01_rnns_and_fading_memory.ipynb", "05_masks_and_multi_head.ipynb",
             "07_transformer_block.ipynb", "10_decoder_only_gpt.ipynb", "ko/00_start_here.ipynb"]
NOTEBOOKS = [n for n in NOTEBOOKS if (ROOT / "notebooks" / n).exists()]
RUN_TIMEOUT_S = 240

playwright = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (install Debian's chromium package)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server over a temporary copy of notebooks/ (it writes back into what it opens)."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    port = _free_port()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={root}", "--allow-root",
           "--LabApp.expose_app_in_browser=True", "--ServerApp.disable_check_xsrf=True",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    # render every cell (no windowing), so that widgets and figures are all in the page
    settings = root / ".lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    news = root / ".lab-settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    env = {**os.environ, "TC_PROGRESS": "1", "JUPYTER_CONFIG_DIR": str(root / ".jupyter"),
           "JUPYTERLAB_SETTINGS_DIR": str(root / ".lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(root / ".lab-workspaces")}
    log = open(root / "server.log", "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    tail = (root / "server.log").read_text()[-2000:]
                    raise RuntimeError(f"JupyterLab exited: {tail}") from None
                time.sleep(0.5)
        else:
            raise RuntimeError("JupyterLab did not answer within 60 s")
        yield url, root
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _shot(name: str) -> str:
    """A screenshot's name for a notebook: ko/00_start_here.ipynb -> ko_00_start_here."""
    return name.removesuffix(".ipynb").replace("/", "_")


def _images(page) -> list[str]:
    return page.eval_on_selector_all(".jp-OutputArea-output img", "els => els.map(e => e.src)")


# Read the notebook's state from JupyterLab's own model, not from the DOM (which may not
# hold every cell): how many code cells, how many have run, any error output, kernel status.
NOTEBOOK_STATE = """() => {
    const w = window.jupyterapp.shell.currentWidget;
    const cells = w.content.model.cells;
    let code = 0, ran = 0, errors = [];
    for (let i = 0; i < cells.length; i++) {
        const c = cells.get(i);
        if (c.type !== 'code') continue;
        code++;
        if (c.executionCount !== null) ran++;
        for (let j = 0; j < c.outputs.length; j++) {
            const o = c.outputs.get(j);
            if (o.type === 'error') errors.push(o.toJSON().ename + ': ' + o.toJSON().evalue);
        }
    }
    const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
    return {code, ran, errors, status: kernel ? kernel.status : 'none'};
}"""


def _run_all(page, timeout_s: float) -> dict:
    """Clear every output, run all cells, and wait until each code cell has run."""
    page.evaluate("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    state = page.evaluate(NOTEBOOK_STATE)
    assert state["ran"] == 0, f"clearing the outputs left {state['ran']} execution counts"
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        time.sleep(1.0)
        state = page.evaluate(NOTEBOOK_STATE)
        if state["errors"]:
            raise AssertionError(f"a cell failed in JupyterLab: {state['errors']}")
        if state["ran"] == state["code"] and state["status"] == "idle":
            return state
    raise AssertionError(f"the notebook did not finish within {timeout_s} s: {state}")


def _wait_until_drawn(page, before: list[str], deadline: float) -> None:
    """Wait until a figure differs from ``before``, then until the kernel is idle and the figures
    have stayed the same for two polls: the last redraw is in the page, not an earlier one."""
    while time.time() < deadline and _images(page) == before:
        time.sleep(0.5)
    seen, calm = _images(page), 0
    while time.time() < deadline and calm < 2:
        time.sleep(1.0)
        now = _images(page)
        idle = page.evaluate(NOTEBOOK_STATE)["status"] == "idle"
        calm = calm + 1 if idle and now == seen else 0
        seen = now


# The notebook's opening diagram (a code cell that calls ``diagrams.``), as the page shows it.
DIAGRAM_STATE = """() => {
    const w = window.jupyterapp.shell.currentWidget;
    const cells = w.content.model.cells;
    for (let i = 0; i < cells.length; i++) {
        const c = cells.get(i);
        if (c.type === 'code' && c.sharedModel.getSource().includes('diagrams.')) {
            const img = w.content.widgets[i].node.querySelector('.jp-OutputArea-output img');
            return {index: i, width: img ? img.naturalWidth : 0, height: img ? img.naturalHeight : 0};
        }
    }
    return null;
}"""


def _move_a_slider_changes_a_figure(page, name: str) -> None:
    sliders = page.locator(".jp-OutputArea .widget-slider .noUi-handle, "
                           ".jp-OutputArea .widget-hslider .noUi-handle").filter(visible=True)
    assert sliders.count() > 0, f"{name}: no visible slider rendered"
    before = _images(page)
    handle = sliders.first
    handle.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / f"{_shot(name)}_before.png"))
    value, top = (float(handle.get_attribute(a)) for a in ("aria-valuenow", "aria-valuemax"))
    handle.focus()
    # as few steps as move it (back, from the top of the range); a key press can be lost while the
    # page settles, so press again until the value changes, at most five times. Every step is a
    # redraw in the kernel: the wait below lets all of them finish before the screenshot.
    for _ in range(5):
        page.keyboard.press("ArrowLeft" if value >= top else "ArrowRight")
        time.sleep(0.5)
        if float(handle.get_attribute("aria-valuenow")) != value:
            break
    _wait_until_drawn(page, before, time.time() + 60)
    moved = handle.get_attribute("aria-valuenow")
    print(f"{name}: first slider moved from {value:g} to {float(moved):g}")
    page.screenshot(path=str(SCREENSHOTS / f"{_shot(name)}_after.png"))
    assert float(moved) != value, f"{name}: the first slider did not move"
    assert _images(page) != before, f"{name}: moving the first slider did not change any figure"


def _explorer_image(box) -> str:
    return box.locator(".jp-OutputArea-output img, .widget-output img").first.get_attribute("src") or ""


def _explorer_redraws(page, name: str) -> None:
    """Pick a head, then another sentence, in the attention explorer: each redraws its picture."""
    box = page.locator(".attention-explorer").first
    box.scroll_into_view_if_needed()
    for what, choose in (("head 1", lambda: box.locator("select").last.select_option(label="1")),
                         ("the second sentence", lambda: box.locator("select").first.select_option(index=1))):
        before = _explorer_image(box)
        choose()
        deadline = time.time() + 60
        while time.time() < deadline and _explorer_image(box) == before:
            time.sleep(0.5)
        page.screenshot(path=str(SCREENSHOTS / f"{_shot(name)}_explorer.png"))
        assert _explorer_image(box) != before, f"{name}: choosing {what} in the explorer changed nothing"
        print(f"{name}: the explorer redrew for {what}")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_its_widgets_work_in_jupyterlab(lab, browser, name):
    url, root = lab
    shot = _shot(name)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    try:
        # ?reset: a fresh workspace, so the notebooks of earlier tests are not reopened in tabs
        page.goto(f"{url}/lab/tree/notebooks/{name}?reset&token={TOKEN}")
        page.locator(".jp-Notebook .jp-CodeCell").filter(visible=True).first.wait_for()
        page.wait_for_function("() => window.jupyterapp !== undefined")
        page.wait_for_function(f"() => ({NOTEBOOK_STATE})().status === 'idle'", timeout=120_000)
        start = time.time()
        state = _run_all(page, RUN_TIMEOUT_S)
        print(f"{name}: {state['code']} code cells ran in JupyterLab in {time.time() - start:.1f} s")
        page.screenshot(path=str(SCREENSHOTS / f"{shot}_run.png"), full_page=False)
        if name.startswith("ko/"):  # the Korean edition renders its Korean markdown
            heading = page.locator(".jp-MarkdownCell h1").first.inner_text()
            assert re.search("[가-힣]", heading), f"{name}: the first heading is not Korean: {heading!r}"
            print(f"{name}: Korean heading rendered: {heading}")

        if Path(name).name[:2] in OPENING:  # the diagram before the formulas is drawn in the page
            drawn = page.evaluate(DIAGRAM_STATE)
            assert drawn is not None, f"{name}: no cell draws the notebook's diagram"
            assert drawn["width"] > 300 and drawn["height"] > 100, f"{name}: diagram not drawn: {drawn}"
            print(f"{name}: diagram in cell {drawn['index']}, {drawn['width']} x {drawn['height']} px")

        sliders = page.locator(".jp-OutputArea .widget-slider, .jp-OutputArea .widget-hslider").count()
        assert sliders > 0, f"{name}: no slider widget rendered"
        bars = page.eval_on_selector_all(".jp-OutputArea .widget-hprogress",
                                         "els => els.map(e => e.closest('.widget-hbox').textContent)")
        assert all("100%" in b for b in bars), f"{name}: progress bars not finished: {bars}"
        _move_a_slider_changes_a_figure(page, name)
        if page.locator(".attention-explorer").count():
            _explorer_redraws(page, name)

        page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
        time.sleep(2)
        saved = json.loads((root / "notebooks" / name).read_text(encoding="utf-8"))
        errors = [o for c in saved["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
        assert not errors, f"{name}: error outputs: {[(e['ename'], e['evalue']) for e in errors]}"
        runs = [c.get("execution_count") for c in saved["cells"] if c["cell_type"] == "code"]
        assert all(isinstance(n, int) for n in runs), f"{name}: some cells did not run: {runs}"
    finally:
        page.evaluate("window.jupyterapp && window.jupyterapp.commands.execute('kernelmenu:shutdown')")
        page.close()

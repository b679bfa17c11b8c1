"""Seeds, devices and progress bars: the small things every notebook needs."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np
import torch

from . import _validate

T = TypeVar("T")

# Set TC_PROGRESS=0 to switch every progress bar of the course off (the tests do).
_PROGRESS_ENV = "TC_PROGRESS"


def set_seed(seed: int) -> None:
    """Seed Python's, numpy's and torch's random number generators with one integer."""
    seed = _validate.seed(seed, "set_seed")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device(prefer: str | None = None) -> torch.device:
    """The course's device: CUDA when present, else the CPU; ``prefer`` forces one."""
    if prefer is not None:
        if prefer not in ("cpu", "cuda"):
            raise ValueError(f"get_device expects prefer='cpu', 'cuda' or None, got {prefer!r}")
        if prefer == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("get_device(prefer='cuda') was asked for, but no CUDA device is present")
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded ``torch.Generator`` for data loaders and checks (leaves the global RNG alone)."""
    g = torch.Generator(device=device)
    g.manual_seed(_validate.seed(seed, "generator"))
    return g


def progress_enabled() -> bool:
    """Whether progress bars are shown (the environment variable TC_PROGRESS=0 hides them)."""
    return os.environ.get(_PROGRESS_ENV, "1") not in ("0", "false", "False", "no")


def progress(
    iterable: Iterable[T], total: int | None = None, desc: str = "", enable: bool | None = None
) -> Iterator[T]:
    """Iterate with a ``tqdm.auto`` bar and print a one-line summary when done.

    A notebook saved after a run keeps the widget's first frame (0%) in its text fallback,
    so the summary line is what a reader of the saved notebook sees: how many steps, how
    long. ``enable=False`` (or TC_PROGRESS=0) shows only that summary.
    """
    show = progress_enabled() if enable is None else enable
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    start = time.perf_counter()
    count = 0
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(iterable, total=total, desc=desc, leave=True)
        try:
            for item in bar:
                count += 1
                yield item
        finally:
            bar.close()
    else:
        for item in iterable:
            count += 1
            yield item
    elapsed = time.perf_counter() - start
    of = f"/{total}" if total is not None else ""
    print(f"{desc or 'done'}: {count}{of} steps in {elapsed:.1f} s")


def environment_report(matmul_size: int = 512, repeats: int = 5) -> dict[str, str]:
    """Versions, device and threads, and the speed of one timed matrix product."""
    import platform
    import sys

    _validate.positive_int(matmul_size, "matmul_size", "environment_report")
    device = get_device()
    a = torch.randn(matmul_size, matmul_size, device=device)
    a @ a  # warm-up: the first call pays for allocation
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ a
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeats
    return {
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(device) + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""),
        "torch threads": str(torch.get_num_threads()),
        f"matmul {matmul_size}x{matmul_size}": f"{seconds * 1e3:.2f} ms, "
                                               f"{2 * matmul_size**3 / seconds / 1e9:.1f} GFLOP/s",
    }


# The Hangul font of the course's figures: NanumGothic (SIL Open Font License), which the
# koreanize-matplotlib package ships. Nothing is downloaded at run time, so it works offline.
HANGUL_FONT = "NanumGothic"


def use_hangul_font() -> list[str]:
    """Let matplotlib draw Hangul; returns the font families that text should use.

    Registers the NanumGothic font of the koreanize-matplotlib package (without importing the
    package, which would restyle every figure) and appends it to ``font.family``: matplotlib
    draws each character with the first family that has it, so Latin text keeps the default
    font and Hangul falls back to NanumGothic. Figures made afterwards draw Hangul; set the
    returned families on text made before (``text.set_fontfamily(families)``).
    """
    import importlib.util
    from pathlib import Path

    import matplotlib
    from matplotlib import font_manager

    if HANGUL_FONT not in {f.name for f in font_manager.fontManager.ttflist}:
        spec = importlib.util.find_spec("koreanize_matplotlib")
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError("use_hangul_font expects the koreanize-matplotlib package (it ships "
                                      "the NanumGothic font), got none: pip install koreanize-matplotlib")
        path = Path(spec.submodule_search_locations[0]) / "fonts" / f"{HANGUL_FONT}.ttf"
        font_manager.fontManager.addfont(str(path))
    families = list(matplotlib.rcParams["font.family"])
    if HANGUL_FONT not in families:
        families.append(HANGUL_FONT)
        matplotlib.rcParams["font.family"] = families
    return families


def two_level_colorbar(image, ax, labels: tuple[str, str] = ("blocked", "allowed")):
    """A colour bar for a map of 0s and 1s (a mask): two ticks, named by ``labels``.

    ``image`` is what ``ax.imshow`` returned; returns the colour bar.
    """
    if len(labels) != 2:
        raise ValueError(f"two_level_colorbar expects two labels (for 0 and 1), got {len(labels)}")
    bar = ax.figure.colorbar(image, ax=ax, ticks=[0, 1], fraction=0.046, pad=0.04)
    bar.ax.set_yticklabels(list(labels))
    return bar

"""A real browser for the pages people look at: headless Chromium (Debian's `chromium`).

`open_page` loads a page (a file, or a URL served by a test), optionally with no
network at all (a network namespace of its own), and returns the DOM after its
script ran, what its console said, and a screenshot. `tables` reads the numbers
tables back (each cell's `data-value`) per section, to compare with the store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = ("chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000")


@dataclass
class Page:
    dom: str
    console: list[str]
    screenshot: np.ndarray  # BGR

    @property
    def errors(self) -> list[str]:
        return [line for line in self.console if "Uncaught" in line or ":ERROR:CONSOLE" in line]


def need_chromium() -> None:
    if shutil.which("chromium") is None:
        pytest.fail("the chromium browser is missing: `make test` installs it (Debian: chromium)")


def open_page(address: str, shot: Path, *, offline: bool = False, height: int = 2400) -> Page:
    import cv2

    need_chromium()
    prefix = ["unshare", "--net"] if offline else []
    dumped = subprocess.run([*prefix, *CHROMIUM, "--dump-dom", address], capture_output=True, text=True, timeout=120)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    taken = subprocess.run([*prefix, *CHROMIUM, f"--screenshot={shot}", f"--window-size=1200,{height}", address],
                           capture_output=True, text=True, timeout=120)
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    console = [line for line in (dumped.stderr + taken.stderr).splitlines() if "CONSOLE" in line]
    keep = os.environ.get("SCREENSHOTS_DIR")  # the README's pictures are these, kept: SCREENSHOTS_DIR=docs
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(keep) / shot.name)
    image = cv2.imread(str(shot))
    assert image is not None, f"{shot}: not an image"
    return Page(dumped.stdout, console, image)


def chart_pixels(image: np.ndarray) -> int:
    """Pixels in the charts' bar colour (#2f6fa0): none unless the page's script drew its charts."""
    bar = np.array([0xA0, 0x6F, 0x2F])  # BGR
    return int(np.count_nonzero(np.all(np.abs(image.astype(int) - bar) <= 6, axis=2)))


class _Tables(HTMLParser):
    """Per `<section data-camera data-region>` (or "" outside one), per table class: rows of cells, each its
    `data-value`, or its text when it has none."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[tuple[str, str, str], list[list[str]]] = {}
        self._section = ("", "")
        self._table = ""
        self._row: list[str] | None = None
        self._value: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and "data-camera" in a:
            self._section = (a.get("data-camera") or "", a.get("data-region") or "")
        elif tag == "table":
            self._table = " ".join(c for c in (a.get("class") or "").split() if c != "numbers")
        elif tag == "tr":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._value = a.get("data-value")
            self._row.append(self._value or "")

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._value is None and self._row and self.lasttag == "td":
            self._row[-1] += data.strip()  # a cell without a figure: its text (a camera, a region, an hour)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            if self._row:
                self.found.setdefault((*self._section, self._table), []).append(self._row)
            self._row = None
        elif tag == "section":
            self._section = ("", "")


def tables(dom: str) -> dict[tuple[str, str, str], list[list[str]]]:
    parser = _Tables()
    parser.feed(dom)
    return parser.found

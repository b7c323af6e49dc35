"""The wheel a host installs, built in the test from this checkout, and a virtual environment with it.

The wheel is built from a copy of the tracked files (the checkout stays as it is) exactly as `make
wheel` builds it. The environment gets the wheel alone; its dependencies come from the test's own
environment through a .pth file, since tests download nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.fakes import REPO


def build_wheel(work: Path) -> Path:
    source = work / "source"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(work / "dist"), str(source)], check=True, timeout=300)
    (wheel,) = (work / "dist").glob("video_supervisor-*.whl")
    return wheel


def dependencies_pth() -> str:
    """A .pth line that puts the test environment's packages behind the new environment's own."""
    return sysconfig.get_paths()["purelib"] + "\n"


def make_venv(where: Path, wheel: Path) -> Path:
    """A new virtual environment at `where` with the wheel installed; its bin/ folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "zz_test_dependencies.pth").write_text(dependencies_pth())
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--disable-pip-version-check", str(wheel)], check=True, timeout=300)
    return where / "bin"

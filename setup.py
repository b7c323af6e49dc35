"""Puts the host's files (`systemd/`, `etc/`) into the wheel as package data, at `supervisor/host/`.

Everything else is in pyproject.toml. The files stay where operators look for them in the
repository; a wheel, which has no repository beside it, carries a copy.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HOST_FOLDERS = ("systemd", "etc")


class BuildWithHostFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads them from the checkout
        for folder in HOST_FOLDERS:
            shutil.copytree(folder, Path(self.build_lib, "supervisor", "host", folder), dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithHostFiles})

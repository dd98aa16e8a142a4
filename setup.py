"""Build hook: the wheel carries BPF objects compiled at build time, never on the target host.

``build_py`` runs ``make build`` (the same rules developers use) before package data is
collected, so a wheel built from a clean clone or from the sdist contains the ``*.bpf.o``
objects and ``tna_abi.h``; the docs and systemd units go to ``share/``.  Metadata lives in
``pyproject.toml``.  clang is needed here only.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithBpf(build_py):
    def run(self) -> None:
        if not getattr(self, "editable_mode", False):  # editable: `make build` in the tree
            self._compile_bpf()
        super().run()

    def _compile_bpf(self) -> None:
        make = shutil.which("make")
        if make is None:
            raise SystemExit("tna build: 'make' is required to compile the BPF objects")
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([make, "-s", "-C", here, "build"], check=True)
        # package data may have been listed before the objects existed: list it again
        self.__dict__.pop("data_files", None)


# Installed next to the script (<prefix> is /usr/local for the system Python, the venv's
# directory otherwise): the units refer to the docs with Documentation=file:...
DATA_FILES = [("share/doc/tna", ["README.md", "docs/deployment.md", "docs/sync.md"]),
              ("share/tna/systemd", ["contrib/tna.service", "contrib/tna@.service"])]

setup(cmdclass={"build_py": BuildWithBpf}, data_files=DATA_FILES)

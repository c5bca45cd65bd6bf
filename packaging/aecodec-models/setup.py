"""Build hook of ``aecodec-models``: its version is aecodec's, and its package data are the files of
``weights/`` that ``codec/weights/shipping.py`` assigns to it (one copy of them in the repository)."""

import json
import re
import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

REPO = Path(__file__).resolve().parents[2]
SHIPPING = runpy.run_path(str(REPO / "codec" / "weights" / "shipping.py"))
VERSION = re.search(r'^__version__ = "([^"]+)"', (REPO / "codec" / "__init__.py").read_text(), re.M)[1]


class CompanionWeights(build_py):
    def run(self):
        super().run()
        weights = REPO / "weights"
        manifest = json.loads((weights / "manifest.json").read_text())
        target = Path(self.build_lib) / SHIPPING["COMPANION_MODULE"]
        for name in SHIPPING["files_of"](manifest, SHIPPING["COMPANION"]):
            shutil.copyfile(weights / name, target / name)


setup(version=VERSION, cmdclass={"build_py": CompanionWeights})

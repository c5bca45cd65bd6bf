"""Build hook for the ``aecodec`` wheel (the metadata is in pyproject.toml): of the weights in ``weights/`` it
packs the manifest and the default model's file only; the earlier models' files go to the companion
distribution built from ``packaging/aecodec-models/`` (``codec/weights/shipping.py`` says which file goes where).
An editable install (``pip install -e .``) reads ``weights/`` itself and keeps every model."""

import json
import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPING = runpy.run_path(str(HERE / "codec" / "weights" / "shipping.py"))


class LeanWeights(build_py):
    def find_data_files(self, package, src_dir):
        found = super().find_data_files(package, src_dir)
        if package != "codec.weights.shipped":
            return found
        manifest = json.loads((Path(src_dir) / "manifest.json").read_text())
        keep = {"manifest.json", *SHIPPING["files_of"](manifest, SHIPPING["MAIN"])}
        return [f for f in found if Path(f).name in keep]


setup(cmdclass={"build_py": LeanWeights})

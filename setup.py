"""Build hook for the ``aecodec`` wheel (the metadata is in pyproject.toml): of the weights in ``weights/`` it
packs the manifest and the default model's file only; the earlier models' files go to the companion
distribution built from ``packaging/aecodec-models/`` (``codec/weights/shipping.py`` says which file goes where).
An editable install (``pip install -e .``) reads ``weights/`` itself and keeps every model.

It also compiles the fitted kind's decoder (``codec/models/overfit/_wavefront.c``, plain C against Python's
headers, no other dependency). The extension is optional: where no compiler is found the install still
succeeds and that kind decodes with its torch reference (``codec.models.overfit.fast.available``)."""

import json
import runpy
import sys
from pathlib import Path

from setuptools import Extension, setup
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


#: gcc/clang flags: no contraction into fused multiply-adds, so the float64 steps of the table rule are the
#: IEEE operations the torch reference makes (the ARM's own products are exact integers either way).
C_FLAGS = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off"]

setup(
    cmdclass={"build_py": LeanWeights},
    ext_modules=[
        Extension(
            "codec.models.overfit._wavefront",
            ["codec/models/overfit/_wavefront.c"],
            extra_compile_args=C_FLAGS,
            optional=True,
        )
    ],
)

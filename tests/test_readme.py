"""Every ``sh`` and ``python`` block of the README runs as written, in order, in one folder holding
``photo.png`` (the bundled sample), with the shipped weights. ``text`` blocks (synopses, setup scripts,
which the packaging test and CI cover) are not run."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in BLOCK.findall((REPO / "README.md").read_text()) if lang in ("sh", "python")]


def test_readme_has_runnable_examples():
    langs = [lang for lang, _ in readme_blocks()]
    assert langs.count("sh") >= 2 and "python" in langs


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.delenv("AECODEC_WEIGHTS")  # the shipped weights, as a reader has them
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "aecodec"  # the installed command, pointing at this checkout
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m codec.cli "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "scripts" / "sample.png", work / "photo.png")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    for i, (lang, body) in enumerate(readme_blocks()):
        cmd = ["bash", "-euo", "pipefail", "-c", body] if lang == "sh" else [sys.executable, "-c", body]
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode:
            pytest.fail(f"README block {i} ({lang}) exited {proc.returncode}:\n{body}\n{proc.stderr}")
        assert "Traceback" not in proc.stderr, proc.stderr
    assert {"photo.aec", "decoded.png", "small.aec", "half.aec", "small.jpg", "piped.ppm", "plugin.png"} <= {
        p.name for p in work.iterdir()
    }
    assert sorted(p.name for p in (work / "out").iterdir()) == ["photo.aec", "small.aec"]
    assert (work / "page.html").stat().st_size > 0 and "data:image/png;base64," in (work / "page.html").read_text()
    assert {"rd.json", "rd.png", "bdrate.md"} <= {p.name for p in (work / "bench").iterdir()}
    assert (work / "small.aec").stat().st_size <= 6000
    assert (work / "half.aec").stat().st_size * 8 / (384 * 256) <= 0.5

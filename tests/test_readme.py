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

from codec.core.quality import DEFAULT_QUALITY, Q_MIN
from codec.format import bitstream as bs
from codec.plugin import pillow_quality
from codec.weights.manifest import installed_levels, read_manifest

REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in BLOCK.findall((REPO / "README.md").read_text()) if lang in ("sh", "python")]


def _found(pattern: str) -> re.Match:
    match = re.search(pattern, " ".join((REPO / "README.md").read_text().split()))  # across line breaks
    assert match, f"README no longer says {pattern!r}"
    return match


def test_readme_figures_come_from_the_code(monkeypatch):
    """The quality range, the default and the Pillow mapping the README states are the shipped model's."""
    monkeypatch.delenv("AECODEC_WEIGHTS")
    model_id, levels = installed_levels()
    low, top = _found(r"`-q (\d+)` \(fewest bits\) to `-q (\d+)` \(the default model's top level").groups()
    assert (float(low), int(top)) == (Q_MIN, levels)
    assert float(_found(r"fractions included; the default is (\d+(?:\.\d+)?)")[1]) == DEFAULT_QUALITY
    assert float(_found(r"quality=80\) # Pillow plugin: .* 80 → our (\d+(?:\.\d+)?)")[1]) == pillow_quality(80, levels)
    assert int(_found(r"\(1-(\d+) with the default weights\)")[1]) == levels
    stated, q75 = _found(r"with the default's (\d+) levels JPEG's usual 75 → (\d+(?:\.\d+)?)").groups()
    assert (int(stated), float(q75)) == (levels, pillow_quality(75, levels))
    older, q75 = _found(r"with a (\d+)-level model \(the first ones\) 75 → (\d+(?:\.\d+)?)").groups()
    assert float(q75) == pillow_quality(75, int(older))
    earlier = {m["arch"].get("levels") for k, m in read_manifest()["models"].items() if k != model_id}
    assert int(older) in earlier
    assert int(_found(r"\(`aecodec models`\): the default has (\d+)")[1]) == levels


def test_readme_has_runnable_examples():
    langs = [lang for lang, _ in readme_blocks()]
    assert langs.count("sh") >= 2 and "python" in langs


@pytest.mark.slow
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
    stated = _found(r"quality=80\) # Pillow plugin: .* 80 → our (\d+(?:\.\d+)?)")[1]
    assert bs.unpack((work / "plugin.aec").read_bytes()).quality == pytest.approx(float(stated))
    assert (work / "half.aec").stat().st_size * 8 / (384 * 256) <= 0.5

"""The ``aecodec compare`` page: one static HTML file, every picture inside it as a PNG data: URI.

No network, no server: it opens from disk. A before/after slider between any two variants (two
selects), zoom to pixels (nearest-neighbour, ``image-rendering: pixelated``) and the table of bytes,
bpp, PSNR and MS-SSIM. The state (the two variants, view, zoom, split) lives in the URL's ``#``, so a
view can be linked: ``page.html#a=aecodec&b=jpeg&zoom=4&split=30``.

Views: an image up to ``WHOLE_SIDE`` px on each side is embedded whole, at full resolution. A larger
one is embedded as an overview downscaled to ``OVERVIEW_SIDE`` px on its long side plus full-resolution
``CROP_SIDE`` px crops: the centre and the most detailed crop (largest gradient energy on a grid).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .compare import Variant
from .report import finite_or_none

WHOLE_SIDE = 2048
OVERVIEW_SIDE = 1024
CROP_SIDE = 512


@dataclass(frozen=True)
class View:
    """A region of the image (x, y, width, height) shown at ``scale`` (< 1 for the overview)."""

    label: str
    x: int
    y: int
    width: int
    height: int
    scale: float = 1.0

    def pixels(self, rgb: np.ndarray) -> Image.Image:
        crop = Image.fromarray(rgb[self.y : self.y + self.height, self.x : self.x + self.width])
        if self.scale == 1.0:
            return crop
        size = (max(1, round(self.width * self.scale)), max(1, round(self.height * self.scale)))
        return crop.resize(size, Image.Resampling.LANCZOS)


def most_detailed(rgb: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left corner of the ``side`` px grid cell with the largest gradient energy (luma)."""
    luma = rgb.astype(np.int16).sum(axis=2)
    energy = np.zeros(luma.shape, np.int64)
    energy[:, 1:] += np.abs(np.diff(luma, axis=1))
    energy[1:, :] += np.abs(np.diff(luma, axis=0))
    h, w = luma.shape
    corners = [(x, y) for y in range(0, h - side + 1, side) for x in range(0, w - side + 1, side)]
    return max(corners, key=lambda c: energy[c[1] : c[1] + side, c[0] : c[0] + side].sum())


def views(rgb: np.ndarray) -> list[View]:
    """The views the page embeds for an image of these pixels (rule in the module docstring)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= WHOLE_SIDE:
        return [View("whole image", 0, 0, w, h)]
    side = min(CROP_SIDE, h, w)
    centre = ((w - side) // 2, (h - side) // 2)
    detail = most_detailed(rgb, side)
    out = [View(f"overview (1:{max(h, w) / OVERVIEW_SIDE:.1f})", 0, 0, w, h, OVERVIEW_SIDE / max(h, w))]
    out.append(View(f"centre crop at {centre[0]},{centre[1]} (1:1)", *centre, side, side))
    if detail != centre:
        out.append(View(f"most detailed crop at {detail[0]},{detail[1]} (1:1)", *detail, side, side))
    return out


def png_data_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def build(title: str, variants: list[Variant], width: int, height: int) -> str:
    """The page's HTML for ``variants`` (measured by ``compare.compare``) of a ``width`` x ``height`` image."""
    vs = views(variants[0].shown)
    sources = "\n".join(
        f'<img data-view="{i}" data-variant="{html.escape(v.name)}" alt="" src="{png_data_uri(view.pixels(v.shown))}">'
        for i, view in enumerate(vs)
        for v in variants
    )
    data = {
        "title": title,
        "width": width,
        "height": height,
        "views": [view.__dict__ for view in vs],
        "rows": [v.row(width, height) for v in variants],
    }
    payload = json.dumps(finite_or_none(data)).replace("</", "<\\/")
    return (
        TEMPLATE.replace("{{TITLE}}", html.escape(title)).replace("{{DATA}}", payload).replace("{{SOURCES}}", sources)
    )


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>aecodec compare: {{TITLE}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #1e1e1e; color: #ddd; }
header { padding: 8px 12px; display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; }
header h1 { font-size: 16px; margin: 0 8px 0 0; }
select, input { font: inherit; }
#stage { overflow: auto; max-height: 78vh; background: #111; }
#frame { position: relative; margin: 0 auto; user-select: none; cursor: ew-resize; }
#frame img { display: block; width: 100%; height: auto; }
#frame img.zoomed { image-rendering: pixelated; }
#left { position: absolute; top: 0; left: 0; }
#bar { position: absolute; top: 0; bottom: 0; width: 2px; margin-left: -1px; background: #fff;
       box-shadow: 0 0 3px #000; pointer-events: none; }
.tag { position: absolute; top: 6px; padding: 1px 6px; background: rgba(0,0,0,.6); color: #fff;
       border-radius: 3px; pointer-events: none; }
#tagA { left: 6px; } #tagB { right: 6px; }
#split { display: block; max-width: 100%; margin: 6px auto; }
table { border-collapse: collapse; margin: 8px 12px 16px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #444; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.over td { color: #f99; }
#sources { display: none; }
p.note { margin: 0 12px 12px; color: #aaa; max-width: 70em; }
</style></head>
<body>
<header>
  <h1>{{TITLE}}</h1>
  <label>left <select id="a"></select></label>
  <label>right <select id="b"></select></label>
  <label>view <select id="view"></select></label>
  <label>zoom <select id="zoom">
    <option value="0">fit</option><option value="1">1&times;</option><option value="2">2&times;</option>
    <option value="4">4&times;</option><option value="8">8&times;</option></select></label>
</header>
<div id="stage"><div id="frame">
  <img id="right" alt="right"><img id="left" alt="left"><div id="bar"></div>
  <span class="tag" id="tagA"></span><span class="tag" id="tagB"></span>
</div></div>
<input id="split" type="range" min="0" max="100" step="0.1" value="50" aria-label="split">
<table id="table"><thead><tr><th>codec</th><th>quality</th><th>bytes</th><th>bpp</th><th>PSNR dB</th>
<th>MS-SSIM</th><th>alpha</th></tr></thead><tbody></tbody></table>
<p class="note">Each classical codec is coded at the Pillow quality whose file is the largest at or under
aecodec's bytes (red: even its lowest quality is larger). PSNR and MS-SSIM are measured on the pixels shown
(alpha over the checkerboard). Drag on the picture or the slider to move the split; the URL keeps the view.</p>
<script type="application/json" id="results">{{DATA}}</script>
<div id="sources">
{{SOURCES}}
</div>
<script>
"use strict";
const R = JSON.parse(document.getElementById("results").textContent);
const $ = (id) => document.getElementById(id);
const names = R.rows.map((r) => r.codec);
const state = { a: names[1], b: names.length > 2 ? names[2] : names[0], view: 0, zoom: 0, split: 50 };

function readHash() {
  for (const [k, v] of new URLSearchParams(location.hash.slice(1))) {
    if ((k === "a" || k === "b") && names.includes(v)) state[k] = v;
    if (k === "view" && R.views[+v]) state.view = +v;
    if (k === "zoom" && [0, 1, 2, 4, 8].includes(+v)) state.zoom = +v;
    if (k === "split" && isFinite(+v)) state.split = Math.min(100, Math.max(0, +v));
  }
}

function source(view, name) {
  return document.querySelector(`#sources img[data-view="${view}"][data-variant="${name}"]`).src;
}

function fmt(v, digits) { return v === null || v === undefined ? "n/a" : v.toFixed(digits); }

function render() {
  const view = R.views[state.view];
  const w = Math.round(view.width * view.scale);
  $("left").src = source(state.view, state.a);
  $("right").src = source(state.view, state.b);
  const frame = $("frame");
  frame.style.width = state.zoom ? w * state.zoom + "px" : "100%";
  frame.style.maxWidth = state.zoom ? "none" : w + "px";
  for (const img of [$("left"), $("right")]) img.classList.toggle("zoomed", state.zoom > 1);
  $("left").style.clipPath = `inset(0 ${100 - state.split}% 0 0)`;
  $("bar").style.left = state.split + "%";
  $("split").value = state.split;
  $("split").style.width = frame.getBoundingClientRect().width + "px";
  $("tagA").textContent = state.a;
  $("tagB").textContent = state.b;
  for (const k of ["a", "b", "view", "zoom"]) $(k).value = state[k];
  try {
    history.replaceState(null, "", "#" + new URLSearchParams(state).toString());
  } catch (e) { /* a browser that refuses it on file: URLs keeps the page working */ }
}

function fillSelects() {
  for (const k of ["a", "b"]) $(k).innerHTML = names.map((n) => `<option>${n}</option>`).join("");
  $("view").innerHTML = R.views.map((v, i) => `<option value="${i}">${v.label}</option>`).join("");
  const body = document.querySelector("#table tbody");
  body.innerHTML = R.rows.map((r) => `<tr class="${r.fits ? "" : "over"}"><td>${r.codec}</td>` +
    `<td>${r.quality === null ? "input" : r.quality}</td><td>${r.bytes}</td><td>${fmt(r.bpp, 4)}</td>` +
    `<td>${fmt(r.psnr, 2)}</td><td>${fmt(r.ms_ssim, 4)}</td><td>${r.alpha || ""}</td></tr>`).join("");
}

function dragTo(event) {
  const box = $("frame").getBoundingClientRect();
  state.split = Math.min(100, Math.max(0, (100 * (event.clientX - box.left)) / box.width));
  render();
}

readHash();
fillSelects();
render();
$("split").addEventListener("input", () => { state.split = +$("split").value; render(); });
for (const k of ["a", "b"]) $(k).addEventListener("change", () => { state[k] = $(k).value; render(); });
for (const k of ["view", "zoom"]) $(k).addEventListener("change", () => { state[k] = +$(k).value; render(); });
$("frame").addEventListener("pointerdown", (e) => { $("frame").setPointerCapture(e.pointerId); dragTo(e); });
$("frame").addEventListener("pointermove", (e) => { if (e.buttons) dragTo(e); });
window.addEventListener("hashchange", () => { readHash(); render(); });
</script>
</body></html>
"""

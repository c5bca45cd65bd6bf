"""Turn per-image measurements into the RD report: means per setting, JSON, CSV, plot, BD-rate table.

Each file's content is built as text or bytes here; the callers write it (atomically, ``codec.format.files``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable

import numpy as np

from .bdrate import bd_rate
from .metrics import ms_ssim_db

#: Per-point fields averaged over images, and their names in CompressAI's results format.
FIELDS = {
    "bpp": "bpp",
    "psnr": "psnr-rgb",
    "ms_ssim": "ms-ssim-rgb",
    "enc_s": "encoding_time",
    "dec_s": "decoding_time",
}


def aggregate(records: Iterable[dict]) -> dict[str, dict]:
    """Mean over images per (codec, quality), in CompressAI's results layout, settings in run order.

    PSNR is averaged per image (not computed from the mean MSE), as CompressAI does; MS-SSIM in dB
    is taken from the mean MS-SSIM, the same conversion the published curves get.
    """
    groups: dict[str, dict[float, list[dict]]] = {}
    for r in records:
        groups.setdefault(r["codec"], {}).setdefault(r["quality"], []).append(r)
    out = {}
    for codec, by_q in groups.items():
        res: dict[str, list] = {"quality": list(by_q)}
        for key, name in FIELDS.items():
            res[name] = [float(np.mean([r[key] for r in rs])) for rs in by_q.values()]
        res["ms-ssim-db"] = [ms_ssim_db(v) for v in res["ms-ssim-rgb"]]
        res["images"] = [len(rs) for rs in by_q.values()]
        out[codec] = res
    return out


def with_db(results: dict) -> dict:
    """A published curve with ``ms-ssim-db`` added when it has MS-SSIM."""
    res = dict(results)
    if "ms-ssim-rgb" in res and "ms-ssim-db" not in res:
        res["ms-ssim-db"] = [ms_ssim_db(float(v)) for v in res["ms-ssim-rgb"]]
    return res


# -- files ------------------------------------------------------------------------------------
def finite_or_none(value):
    """JSON has no NaN/inf: write them as null (recursively through lists and dicts)."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(data: dict) -> str:
    return json.dumps(finite_or_none(data), indent=2) + "\n"


def curves_csv(curves: dict[str, dict]) -> str:
    """One row per (codec, setting): the means of ``aggregate``."""
    cols = ["quality", "bpp", "psnr-rgb", "ms-ssim-rgb", "ms-ssim-db", "encoding_time", "decoding_time", "images"]
    rows = [
        [codec, *(_fmt_csv(res[c][i]) for c in cols)] for codec, res in curves.items() for i in range(len(res["bpp"]))
    ]
    return _csv([["codec", *(c.replace("-", "_") for c in cols)], *rows])


def per_image_csv(records: list[dict]) -> str:
    """One row per (image, codec, setting), as measured."""
    cols = ["image", "codec", "quality", "bytes", "bpp", "psnr", "ms_ssim", "enc_s", "dec_s"]
    return _csv([cols, *([_fmt_csv(r[c]) for c in cols] for r in records)])


def _csv(rows: Iterable[list]) -> str:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def _fmt_csv(v):
    return f"{v:.6g}" if isinstance(v, float) else v


def plot_png(curves: dict[str, dict], anchors: dict[str, dict], title: str) -> bytes:
    """Two panels, PSNR–bpp and MS-SSIM(dB)–bpp, as PNG bytes: measured curves solid, published ones dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5))
    colors = {n: "black" if n == "aecodec" else plt.cm.tab10(i % 10) for i, n in enumerate(curves)}
    measured_max = max((max(r["bpp"]) for r in curves.values() if r["bpp"]), default=2.0)
    panels = (("psnr-rgb", "PSNR (RGB) [dB]"), ("ms-ssim-db", "MS-SSIM (RGB) [dB]"))
    for ax, (key, label) in zip(axes, panels, strict=True):
        drawn = 0
        for name, res in curves.items():
            bold = name == "aecodec"
            drawn += _line(ax, res, key, name, colors[name], "-", "o" if bold else ".", 2.2 if bold else 1.3, 3)
        for i, (name, res) in enumerate(anchors.items()):
            color = colors.get(name, plt.cm.turbo(0.05 + 0.9 * i / max(len(anchors) - 1, 1)))
            drawn += _line(ax, res, key, f"{name} (published)", color, "--", None, 1.0, 2)
        if not drawn:
            ax.text(
                0.5,
                0.5,
                "no finite values\n(MS-SSIM needs images ≥ 161 px)",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
        ax.set_xlim(0, min(measured_max * 1.05, 3.0))
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _line(ax, res: dict, key: str, label: str, color, style: str, marker, width: float, z: int) -> int:
    if key not in res:
        return 0
    pts = sorted((b, v) for b, v in zip(res["bpp"], res[key], strict=True) if v is not None and math.isfinite(v))
    if not pts:
        return 0
    xs, ys = zip(*pts, strict=True)
    ax.plot(xs, ys, linestyle=style, marker=marker, color=color, label=label, linewidth=width, markersize=4, zorder=z)
    return 1


# -- BD-rate table -------------------------------------------------------------------------
def _bd(anchor: dict, test: dict, key: str) -> float:
    if key not in anchor or key not in test:
        return math.nan
    return bd_rate(anchor["bpp"], anchor[key], test["bpp"], test[key])


def bd_pair(anchor: dict, test: dict) -> tuple[float, float]:
    """BD-rate of ``test`` against ``anchor`` in percent: (PSNR, MS-SSIM dB)."""
    return _bd(anchor, test, "psnr-rgb"), _bd(with_db(anchor), with_db(test), "ms-ssim-db")


def _cell(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:+.1f} %"


def _table(rows: list[tuple[str, dict, dict]], first: str) -> list[str]:
    lines = [f"| {first} | BD-rate (PSNR) | BD-rate (MS-SSIM dB) |", "|---|---:|---:|"]
    for label, anchor, test in rows:
        lines.append(f"| {label} | {_cell(_bd(anchor, test, 'psnr-rgb'))} | {_cell(_bd(anchor, test, 'ms-ssim-db'))} |")
    return lines


def bdrate_markdown(curves: dict[str, dict], anchors: dict[str, dict], title: str, notes: list[str]) -> str:
    """BD-rate tables: every codec vs Pillow JPEG, aecodec vs every other codec, aecodec vs published curves."""
    out = [
        f"# BD-rate: {title}",
        "",
        "Average bit-rate difference at equal quality over the overlapping quality range (Bjøntegaard, VCEG-M33:",
        "cubic fit of log-rate against PSNR or MS-SSIM in dB; `bjontegaard` package). Negative: fewer bits than",
        "the anchor. n/a: no overlap or no finite values (MS-SSIM needs images of at least 161 px).",
        "",
    ]
    if "jpeg" in curves:
        out += ["## Against JPEG (Pillow, default settings)", ""]
        out += _table([(n, curves["jpeg"], c) for n, c in curves.items() if n != "jpeg"], "codec")
        out.append("")
    efforts = [n for n in curves if n.startswith("aecodec-effort")]
    if "aecodec" in curves and efforts:
        out += [
            "## aecodec encoder effort against effort 0",
            "",
            "Encode time: mean seconds per image of the whole `api.encode` call, over all qualities.",
            "",
            "| effort | BD-rate (PSNR) | BD-rate (MS-SSIM dB) | encode s/image |",
            "|---|---:|---:|---:|",
        ]
        for n in ["aecodec", *efforts]:
            c = curves[n]
            bd = ["0 (anchor)"] * 2 if n == "aecodec" else [_cell(v) for v in bd_pair(curves["aecodec"], c)]
            out.append(f"| {n} | {bd[0]} | {bd[1]} | {np.mean(c['encoding_time']):.1f} |")
        out.append("")
    if "aecodec" in curves:
        others = [n for n in curves if n != "aecodec" and n not in efforts]
        if others:
            out += ["## aecodec against each measured codec", ""]
            out += _table([(n, curves[n], curves["aecodec"]) for n in others], "anchor")
            out.append("")
        if anchors:
            out += ["## aecodec against published curves", ""]
            out += _table([(f"{n} (published)", a, curves["aecodec"]) for n, a in anchors.items()], "anchor")
            out.append("")
    if "jpeg" in curves and "jpeg" in anchors:
        out += [
            "## Check: measured against published",
            "",
            "Near 0 % when this machine's Pillow JPEG matches the one the published curve was made with.",
            "",
        ]
        out += _table([("jpeg vs jpeg (published)", anchors["jpeg"], curves["jpeg"])], "pair")
        out.append("")
    if notes:
        out += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(out)

"""Overlay histograms of reference vs candidate with the residual per bin, as base64 PNG (Agg)."""
from __future__ import annotations

import base64
import io

import numpy as np


def overlay_png(ref: np.ndarray, cand: np.ndarray, title: str, bins: int = 50) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, c = ref[np.isfinite(ref)], cand[np.isfinite(cand)]
    both = np.concatenate([r, c]) if r.size + c.size else np.zeros(1)
    lo, hi = float(both.min()), float(both.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    logx = lo > 0 and hi / lo > 100          # power laws (energies): log bins, log axis
    edges = np.geomspace(lo, hi, bins + 1) if logx else np.linspace(lo, hi, bins + 1)
    hr, _ = np.histogram(r, edges)
    hc, _ = np.histogram(c, edges)
    scale = hc.sum() / hr.sum() if hr.sum() else 1.0
    expect = hr * scale
    err = np.sqrt(hc + scale * scale * hr)
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = np.where(err > 0, (hc - expect) / err, 0.0)
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(5.2, 3.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.stairs(expect, edges, label=f"reference (n={r.size}, scaled)", color="#1f77b4", linewidth=1.4)
    ax.stairs(hc, edges, label=f"candidate (n={c.size})", color="#d62728", linewidth=1.0, linestyle="--")
    ax.set_title(title, fontsize=8)
    if logx:
        ax.set_xscale("log")
    if hc.max(initial=0) > 50 * max(1, np.median(hc[hc > 0]) if (hc > 0).any() else 1):
        ax.set_yscale("log")
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=6)
    centres = 0.5 * (edges[1:] + edges[:-1])
    axr.axhline(0, color="grey", linewidth=0.6)
    axr.plot(centres, resid, ".", color="black", markersize=3)
    axr.set_ylabel("pull", fontsize=6)
    axr.tick_params(labelsize=6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()

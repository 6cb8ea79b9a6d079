"""Plots of offline results, written as PNG files for the docs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI (set before pyplot loads)
import matplotlib.pyplot as plt

from services.ranker.offline.metrics import DEFAULT_KS


def recall_at_k_png(summary: Mapping[str, Any], path: Path, title: str) -> Path:
    """Draws Recall@K against K for the main model and every baseline of a ``summarize`` document
    (``benchmarks/results/youshu.json``), with the seeds' standard deviation as error bars where
    there are several seeds, and writes it to ``path``."""
    models: dict[str, Mapping[str, Any]] = {f"{summary['model']} (main)": summary, **summary.get("baselines", {})}
    figure, axes = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for name, figures in models.items():
        ks = [k for k in DEFAULT_KS if f"recall@{k}" in figures]
        means = [figures[f"recall@{k}"] for k in ks]
        spreads = [figures.get(f"recall@{k}_std") or 0.0 for k in ks]
        main = name.endswith("(main)")
        width, layer = (2.4, 3) if main else (1.2, 2)
        axes.errorbar(ks, means, yerr=spreads, marker="o", capsize=3, linewidth=width, label=name, zorder=layer)
    axes.set_xscale("log", base=2)
    axes.set_xticks(list(DEFAULT_KS), [str(k) for k in DEFAULT_KS])
    axes.set_xlabel("K (bundles recommended)")
    axes.set_ylabel("Recall@K on test")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path

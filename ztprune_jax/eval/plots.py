"""Matplotlib figures of the harness: accuracy vs GFLOPs, and the patches each method keeps."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_accuracy_vs_gflops", "plot_kept_patches"]


def plot_accuracy_vs_gflops(
  rows: Sequence[Mapping[str, Any]],
  path: str,
  *,
  metric: str = "top1",
  title: str = "",
  interval_key: str | None = None,
) -> None:
  """One line per method of ``metric`` (%) against blocks-only GFLOPs (Zero-TPrune Fig. 7).

  Args:
    rows: records with ``method``, ``gflops`` and ``metric``; method ``"none"`` (unpruned)
      is drawn as a star.
    path: the PNG to write.
    metric: ``"top1"`` or ``"top5"``.
    title: figure title.
    interval_key: a record field holding ``(low, high)`` of ``metric`` (fractions), drawn
      as error bars; None draws none.
  """
  fig, ax = plt.subplots(figsize=(6, 4.5))
  methods = list(dict.fromkeys(r["method"] for r in rows))
  for method in methods:
    pts = sorted(
      (r["gflops"], 100 * r[metric], *(100 * v for v in (r[interval_key] if interval_key else ())))
      for r in rows
      if r["method"] == method
    )
    x, y = [p[0] for p in pts], [p[1] for p in pts]
    yerr = None
    if interval_key:
      yerr = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
    if method == "none":
      ax.errorbar(x, y, yerr=yerr, fmt="k*", markersize=12, capsize=3, label="unpruned")
    else:
      ax.errorbar(x, y, yerr=yerr, fmt="o-", capsize=3, label=method)
  ax.set_xlabel("GFLOPs (blocks-only MACs / 1e9)")
  ax.set_ylabel(f"{metric} accuracy (%)")
  ax.grid(alpha=0.3)
  ax.legend()
  ax.set_title(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_kept_patches(
  images: np.ndarray,
  panels: Mapping[str, Any],
  path: str,
  *,
  patch_size: int,
  mean: Sequence[float],
  std: Sequence[float],
) -> None:
  """A grid: one row per (image, method), one column per pruning/merging layer.

  Args:
    images: ``[B, H, W, C]`` normalised images.
    panels: method -> ``(kind, maps, titles)``: ``kind`` ``"kept"`` with bool maps
      ``[B, L, g, g]`` (pruned patches washed blue) or ``"groups"`` with int maps
      ``[B, L, g, g]`` (patches merged into one token share a colour); or method ->
      a string note (the method exposes neither; shown as text).
    path: the PNG to write.
    patch_size: pixels per patch side.
    mean, std: the normalisation to undo for display.
  """
  b = images.shape[0]
  pix = np.clip(images * np.asarray(std) + np.asarray(mean), 0.0, 1.0)  # [B, H, W, C]
  if pix.shape[-1] == 1:
    pix = np.repeat(pix, 3, axis=-1)
  cols = 1 + max([p[1].shape[1] for p in panels.values() if not isinstance(p, str)] or [0])
  rows = b * len(panels)
  fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 1.8 * rows), squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  cmap = plt.get_cmap("tab20")
  up = np.ones((patch_size, patch_size, 1))
  for m, (method, panel) in enumerate(panels.items()):
    for i in range(b):
      row = m * b + i
      axes[row, 0].imshow(pix[i])
      axes[row, 0].set_title(f"{method}" if i == 0 else "", fontsize=8)
      if isinstance(panel, str):
        axes[row, 1].text(0, 0.5, panel, fontsize=7, wrap=True)
        continue
      kind, maps, titles = panel
      for layer in range(maps.shape[1]):
        grid = maps[i, layer]  # [g, g]
        if kind == "kept":
          keep = np.kron(grid[..., None].astype(float), up)  # [H, W, 1]
          dropped = 0.3 * pix[i] + 0.7 * np.asarray([0.25, 0.35, 0.7])  # blue wash
          shown = keep * pix[i] + (1.0 - keep) * dropped
        else:
          colours = cmap(grid % 20)[..., :3]  # [g, g, 3]
          shown = 0.5 * pix[i] + 0.5 * np.kron(colours, up)
        axes[row, layer + 1].imshow(shown)
        if i == 0:
          axes[row, layer + 1].set_title(titles[layer], fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)

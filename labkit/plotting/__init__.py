"""Figures for the book. Every function returns a ``matplotlib.figure.Figure``.

Figures are built with the object-oriented API (``Figure``, not ``pyplot``):
nothing opens a window, nothing is shown twice in a notebook (the cell's
returned figure is what Jupyter displays), and figures are garbage-collected.

One module per part of the book (``common``: what every lab uses; ``defences``: Labs 03-07; ``attention``: Lab 08;
``proofs``: Lab 12); this package exports every figure, so a lab calls ``plotting.<figure>``.
"""

from labkit.plotting.attention import (attention_attack, attention_overlay, attention_panel, class_attention_grid,
                                      class_grid_summary)
from labkit.plotting.common import (COLUMN_IN, COLUMN_PX, MIN_CELL_IN, MIN_DISPLAY_PT, PNG_DPI, LabFigure, attack_panel,
                                    budget_curves, de_generations, declutter, display_scale, displayed_pt, heatmap,
                                    histograms, image_grid, legible, quality_curves, texts, training_curves)
from labkit.plotting.defences import (attention_maps, budget_gaps, grouped_bars, paper_comparison, time_split,
                                      tradeoff)
from labkit.plotting.proofs import bound_widths, brackets, position_maps, proof_tradeoff

__all__ = ["COLUMN_IN", "COLUMN_PX", "LabFigure", "MIN_CELL_IN", "MIN_DISPLAY_PT", "PNG_DPI", "attack_panel",
           "attention_attack", "attention_maps", "attention_overlay", "attention_panel", "bound_widths", "brackets",
           "budget_gaps",
           "budget_curves", "class_attention_grid", "class_grid_summary", "de_generations", "declutter", "display_scale",
           "displayed_pt", "grouped_bars", "heatmap", "histograms", "image_grid", "legible", "paper_comparison",
           "position_maps", "proof_tradeoff", "quality_curves", "texts", "time_split", "tradeoff", "training_curves"]

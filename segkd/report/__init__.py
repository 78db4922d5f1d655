"""The demo report: one table, figures (curves, confusion matrix, FPS-vs-mIoU, overlay grid), HTML and Markdown.

- `table` (rows from the demo's step results) ; `figures` (PNG bytes, matplotlib Agg) ; `overlays` (the grid)
  -> `document` (report.html with every image embedded as a data URI, report.md beside its PNGs).
"""

from segkd.lazy import submodules_on_demand

__getattr__ = submodules_on_demand(__name__)

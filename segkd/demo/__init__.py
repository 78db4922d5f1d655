"""`segkd demo`: the whole segkd story on the built-in synthetic oranges, resumable, ending in a report.

- `plan` (what runs: sizes, epochs, the demo's presets, the command line of each step)
- `state` (finished steps in OUT/demo-state.json) -> `steps` (each step calls the function its command runs)
  -> `runner` (order, resume, progress; `side_by_side` runs the teacher and the student alone at once);
  the report itself is `segkd.report`.
Submodules load on first use (`segkd.lazy`), after the command's options are valid.
"""

from segkd.lazy import submodules_on_demand

__getattr__ = submodules_on_demand(__name__)

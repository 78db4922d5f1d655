"""Deployment: ONNX export and verification, inference backends, benchmarking, visualisation.

- `loading` (the PyTorch model + `meta.DeployMeta`) -> `export` (ONNX, onnxsim, `graph_passes`, metadata)
  -> `verify` (ONNX Runtime vs PyTorch) ; `fp16`, `quantize` (int8 QDQ) ; `artifacts` (the `segkd export` job).
- `onnx_model` (an ORT session that reads its metadata) and `predictor` (images -> label maps, PyTorch or ONNX)
  -> `predict` (sources, outputs, videos) with `sources` and `visualize`.
- `timing` (the protocol) -> `backends` (eager / compile / ORT runners) -> `bench` (rows) -> `bench_report`.
Submodules load on first use (`segkd.lazy`), after a command's options are valid.
"""

from segkd.lazy import submodules_on_demand

__getattr__ = submodules_on_demand(__name__)

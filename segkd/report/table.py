"""The demo's one table: per model params, GFLOPs, test mIoU / mPA / mPrecision, CPU latency and FPS by backend.

Rows come from the demo's step results (`eval` metrics, `bench` rows); the distilled student's gain is its test
mIoU minus the student's alone, in points.
"""

from __future__ import annotations

import math

#: the demo's run names -> what the table calls them
LABELS = {"teacher": "teacher · SegFormer-B1", "student": "student · FastSegFormer-P",
          "student-kd": "distilled · FastSegFormer-P + KD"}
#: (key, header, format) of each column; latencies in ms per image (batch 1), FPS images/s
COLUMNS = [
    ("model", "model", "{}"), ("input", "input", "{}"), ("params_m", "params (M)", "{:.2f}"),
    ("gflops", "GFLOPs", "{:.2f}"), ("miou", "test mIoU %", "{:.2f}"), ("mpa", "mPA %", "{:.2f}"),
    ("mprecision", "mPrecision %", "{:.2f}"),
    ("eager_ms", "eager ms", "{:.1f}"), ("eager_fps", "eager FPS", "{:.1f}"),
    ("onnx_ms", "ONNX fp32 ms", "{:.1f}"), ("onnx_fps", "ONNX fp32 FPS", "{:.1f}"),
    ("int8_ms", "ONNX int8 ms", "{:.1f}"), ("int8_fps", "ONNX int8 FPS", "{:.1f}"),
]
#: bench row (backend, dtype) -> the table's column prefix
BACKENDS = {("torch", "fp32"): "eager", ("onnxruntime", "fp32"): "onnx", ("onnxruntime", "int8"): "int8"}


def table_rows(results: dict[str, dict]) -> list[dict]:
    """One dict per model (teacher, student, distilled), the keys of COLUMNS; None where not measured."""
    rows = []
    for name, label in LABELS.items():
        metrics = results["eval"][name]
        row = {"name": name, "model": label, "input": None, "params_m": None, "gflops": None,
               "miou": 100 * metrics["mIoU"], "mpa": 100 * metrics["mPA"], "mprecision": 100 * metrics["mPrecision"]}
        for bench in results["bench"]["rows"]:
            prefix = BACKENDS.get((bench["backend"], bench["dtype"]))
            if bench["model"] != name or prefix is None or bench["status"] != "✅":
                continue
            row[f"{prefix}_ms"], row[f"{prefix}_fps"] = bench["mean_ms"], bench["fps"]
            if prefix == "eager":
                row.update(input=bench["input"], params_m=bench["params_m"], gflops=bench["gflops"])
        rows.append(row)
    return rows


def kd_gain(rows: list[dict]) -> float:
    """Distilled minus student-alone test mIoU, in points."""
    by_name = {r["name"]: r for r in rows}
    return by_name["student-kd"]["miou"] - by_name["student"]["miou"]


def cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value)


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "|" + "|".join("---" if k in ("model", "input") else "---:" for k, _, _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(cell(r, k, f) for k, _, f in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)

"""`segkd export`: the model alone to ONNX (fp32, optionally fp16 and int8), each file verified against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from segkd import deploy
from segkd.commands.common import OVERRIDES_HELP, err, out, print_json
from segkd.errors import ConfigError, JobFailed
from segkd.outputs import guard_outputs

if TYPE_CHECKING:
    from segkd.deploy.artifacts import ExportReport


def parse_size(text: str | None) -> tuple[int, int] | None:
    """`224` -> (224, 224); `256,320` or `256x320` -> (256, 320)."""
    if text is None:
        return None
    parts = text.lower().replace("x", ",").replace("×", ",").split(",")
    try:
        sides = [int(p) for p in parts if p.strip()]
    except ValueError:
        raise ConfigError(f"--imgsz {text}: expected a side (224) or H,W (256,320)") from None
    if len(sides) not in (1, 2) or min(sides) <= 0:
        raise ConfigError(f"--imgsz {text}: expected a side (224) or H,W (256,320)")
    return (sides[0], sides[-1])


def main(
    weights: Path = typer.Option(..., "--weights", "-w", help="A segkd checkpoint, or (with --preset) any weights "
                                 "file segkd can load (e.g. a paper's released state dict)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Preset (name or YAML) describing the model."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="The fp32 .onnx (default: next to the weights)."),
    imgsz: Optional[str] = typer.Option(None, "--imgsz", help="Input size: 224 or H,W (default: the config's)."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Dynamic batch, height and width (batch only for "
                                 "fixed-size models)."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write <name>.fp16.onnx (half on CUDA, converted on CPU)."),
    int8: bool = typer.Option(False, "--int8", help="Also write <name>.int8.onnx (static QDQ U8S8, per-channel "
                              "weights, opset ≥ 20; needs --calib, except for a QAT checkpoint: its learned "
                              "scales)."),
    int8_ops: str = typer.Option("auto", "--int8-ops", help="Ops in int8: conv (Conv/MatMul only), all (every "
                                 "supported op), or auto: build both, keep the fastest within 0.5 val mIoU of fp32."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="Dataset folder: int8 calibration (val split) and "
                                         "real images for the parity check."),
    simplify: bool = typer.Option(True, "--simplify/--no-simplify", help="Simplify the graph with onnxsim."),
    opset: int = typer.Option(17, "--opset", min=11, help="ONNX opset."),
    argmax: bool = typer.Option(False, "--argmax", help="Output `labels` (B×H×W) instead of `logits`."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda: --fp16 is traced in half on CUDA."),
    force: bool = typer.Option(False, "--force", help="Replace .onnx files a previous segkd export wrote (never "
                               "other files)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of lines."),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP + " (with --preset)"),
) -> None:
    """Export the model alone to ONNX and verify every file with ONNX Runtime against PyTorch.

    Verification: max |Δlogit| ≤ 1e-3·max(1, max |logit|) and argmax agreement ≥ 99.9% (fp32); fp16 and int8 in
    `segkd.deploy.verify`. A file that fails is renamed `<name>.onnx.unverified` and the command exits 1.

    Example: [bold]segkd export --weights runs/train/fastsegformer-p/weights/best.pt --dynamic --int8 --calib data/oranges[/]
    """
    loaded = deploy.loading.load_model(weights, preset, overrides or None)  # torch from here
    target = out_path or Path(weights).with_suffix(".onnx")
    preset_file = preset if preset and Path(preset).is_file() else None
    guard_outputs(deploy.artifacts.export_outputs(target, fp16, int8), [weights, calib, preset_file], force=force)
    device_name = str(deploy.predictor.pick_device(device))
    request = deploy.artifacts.ExportRequest(target, parse_size(imgsz), dynamic, fp16, int8, calib, simplify, opset,
                                             argmax, device_name, int8_ops=int8_ops)
    params = sum(p.numel() for p in loaded.model.parameters())
    err.print(f"PyTorch: starting from '{weights}' ({loaded.meta.arch}, {params / 1e6:.2f} M params, "
              f"{len(loaded.meta.classes)} classes)")
    report = deploy.artifacts.export_artifacts(loaded, request, log=lambda msg: err.print(msg))
    if as_json:
        print_json(report_json(report))
    else:
        print_report(report)
    if report.failures:
        kept = ", ".join(str(a.path) for a in report.artifacts if not a.ok)
        raise JobFailed(f"export did not verify ({report.failures[0]}); kept as {kept}")


def print_report(report: ExportReport) -> None:
    for a in report.artifacts:
        parity = f"  parity: {a.parity.summary()}" if a.parity else ""
        out.print(f"{a.format}: export {'success ✅' if a.ok else 'failed ❌'} {a.seconds:.1f}s, saved as "
                  f"'{a.path}' ({a.mb:.1f} MB){parity}")
        for note in a.notes:
            out.print(f"  note: {note}")
        if a.parity and a.parity.failures:
            for failure in a.parity.failures:
                out.print(f"  ❌ {failure}")
    if report.int8:
        r = report.int8
        scales = "scales learned in QAT" if r.qat else f"calibrated on {r.calib_images}"
        out.print(f"int8 vs fp32 (ONNX Runtime, op set {r.op_set}, val {r.val_images} images, {scales}): "
                  f"mIoU {100 * r.miou_fp32:.2f} → {100 * r.miou_int8:.2f} ({-r.miou_drop:+.2f}), "
                  f"latency {r.ms_fp32:.1f} → {r.ms_int8:.1f} ms ({r.speedup:.2f}× faster)")
    good = [a for a in report.artifacts if a.ok]
    if good:
        out.print("Export complete. Next:")
        predict, bench = _next_commands(good)
        out.print(f"  Predict: {predict}")
        out.print(f"  Bench:   {bench}")


def _next_commands(good: list) -> list[str]:
    if not good:
        return []
    return [f"segkd predict --weights {good[-1].path} IMAGES...",
            f"segkd bench --weights {','.join(str(a.path) for a in good)}"]


def report_json(report: ExportReport) -> dict:
    return {
        "source": report.source,
        "artifacts": [
            {"format": a.format, "ok": a.ok, "seconds": a.seconds, "path": str(a.path), "mb": a.mb, "notes": a.notes,
             "parity": None if a.parity is None else {
                 "max_abs": a.parity.max_abs, "agreement": a.parity.agreement, "failures": a.parity.failures,
                 "cases": [vars(c) for c in a.parity.cases]}}
            for a in report.artifacts
        ],
        "int8": None if report.int8 is None else {**vars(report.int8), "speedup": report.int8.speedup,
                                                   "miou_drop": report.int8.miou_drop},
        "next": _next_commands([a for a in report.artifacts if a.ok]),
    }

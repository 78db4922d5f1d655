"""`segkd eval`: a checkpoint's metrics on a split, at the original image resolution.

The engine (torch) is imported once the options are valid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from segkd import engine
from segkd.commands.common import OVERRIDES_HELP, err, out, print_json, progress_enabled
from segkd.engine.runs import weights_run_name
from segkd.errors import ConfigError, DataError


def parse_tta(text: str | None) -> tuple[tuple[float, ...], bool]:
    """'flip,0.75,1.0,1.25' -> ((0.75, 1.0, 1.25), True); no scales means (1.0,)."""
    if not text:
        return (1.0,), False
    scales, flip = [], False
    for token in (t.strip() for t in text.split(",") if t.strip()):
        if token == "flip":
            flip = True
            continue
        try:
            scale = float(token)
        except ValueError:
            raise ConfigError(f"--tta: '{token}' is neither 'flip' nor a scale (e.g. flip,0.75,1.0,1.25)") from None
        if scale <= 0:
            raise ConfigError(f"--tta: scale {token} must be > 0")
        scales.append(scale)
    return tuple(scales) or (1.0,), flip


def main(
    weights: Path = typer.Option(..., "--weights", "-w", help="A segkd checkpoint (weights/best.pt or last.pt)."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Build the model from this preset instead "
                                         "of the checkpoint's config (for foreign weights, e.g. a paper's)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Dataset folder (sets data.root)."),
    split: str = typer.Option("test", "--split", help="train, val, test (the config's split names) or a list name."),
    tta: Optional[str] = typer.Option(None, "--tta", help="Average over 'flip' and/or scales: flip,0.75,1.0,1.25"),
    slide: bool = typer.Option(False, "--slide", help="Sliding windows of the input size at the original resolution."),
    absent: Optional[str] = typer.Option(None, "--absent", help="Classes without pixels: nan (left out of means) "
                                         "or zero (FastSegFormer). Default: eval.absent."),
    batch: int = typer.Option(4, "--batch", min=1, help="Images (or windows) per forward pass."),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics document only."),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Evaluate a checkpoint: per-class IoU / Acc / Precision / Dice, confusion matrix and plots.

    Writes metrics.json, confusion_matrix.csv and PNGs to runs/eval/<run>/, named after the weights' run
    (runs/train/x/weights/best.pt -> runs/eval/x, last.pt -> x-last; else the checkpoint's name): evaluating
    them again refreshes that folder (exist_ok); name=NAME writes elsewhere. The data is the folder the checkpoint was
    trained on, or --data DIR.

    Example: [bold]segkd eval --weights runs/train/fastsegformer-p/weights/best.pt --data demo/oranges --tta flip[/]
    """
    scales, flip = parse_tta(tta)
    extra = list(overrides or []) + ([f"eval.absent={absent}"] if absent is not None else [])
    given = {o.partition("=")[0] for o in extra}
    cfg = engine.evaluator.eval_config(weights, extra, preset)  # torch from here: the options are valid
    if "name" not in given:
        cfg.name = weights_run_name(weights) or cfg.name
    if "exist_ok" not in given:
        cfg.exist_ok = True
    if data is not None:
        cfg.data.root = str(data)
    elif cfg.data.root and not Path(cfg.data.root).is_dir():
        raise DataError(f"{cfg.data.root}: the data {weights} was trained on is not there: pass --data DIR")
    metrics, run_dir = engine.evaluator.run_eval(cfg, weights, split=split, tta_scales=scales, flip=flip, slide=slide,
                                batch_size=batch, progress=progress_enabled() and not json_out)
    report = json.loads((run_dir / "metrics.json").read_text())
    if json_out:
        print_json(report | {"run_dir": str(run_dir)})
        return
    if report.get("fake_quant"):
        err.print("QAT checkpoint: evaluated the fake-quantised int8 model (what `segkd export --int8` runs on "
                  "ONNX Runtime)")
    out.print(engine.eval_report.metrics_table(metrics, title=f"{cfg.name} · {split} split · {weights}"))
    out.print(engine.eval_report.summary_line(metrics))
    err.print(f"results saved to [bold]{run_dir}[/]")

"""`segkd predict`: segment images, folders, globs and videos with a checkpoint or an exported ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from segkd import deploy
from segkd.commands.common import err, out, print_json, progress_enabled
from segkd.deploy.visualize import MIXES
from segkd.engine.runs import make_run_dir, weights_run_name
from segkd.errors import ConfigError, DataError, JobFailed

if TYPE_CHECKING:
    from segkd.deploy.predict import PredictReport


def main(
    sources: list[str] = typer.Argument(..., help="Image files, folders, glob patterns ('imgs/*.jpg') or videos."),
    weights: Path = typer.Option(..., "--weights", "-w", help="A segkd checkpoint (.pt) or an exported .onnx file."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Output folder (default runs/predict/<name>)."),
    mix: str = typer.Option("overlay", "--mix", help="Picture: overlay (image + colours), mask (colours), cutout."),
    alpha: float = typer.Option(0.7, "--alpha", help="Colour weight of the overlay (0.7 = FastSegFormer mix 0)."),
    count: bool = typer.Option(False, "--count", help="Print pixel counts and ratios per class; write counts.csv."),
    batch: int = typer.Option(1, "--batch", min=1, help="Images (or video frames) per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (ONNX: CUDA EP when installed)."),
    mean: Optional[str] = typer.Option(None, "--mean", help="Input mean (0..1 pixels) of an ONNX file segkd did not "
                                       "export, e.g. 0.485,0.456,0.406 (default: ImageNet, with a warning)."),
    std: Optional[str] = typer.Option(None, "--std", help="Input std of an ONNX file segkd did not export."),
    force: bool = typer.Option(False, "--force", help="Replace files a previous segkd predict wrote in --out "
                               "(never other files)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
) -> None:
    """Segment images, folders, globs and videos; write label PNGs and pictures (exit 1 if an input failed).

    Writes labels/<name>.png (class indices, palette PNG), <mix>/<name>.jpg and <video>_<mix>.mp4 to --out or
    runs/predict/<run>/, named after the weights' run (runs/train/x/weights/best.pt -> x; else the checkpoint's
    name) and reused by the next prediction with the same weights (exist_ok: files of the same name are replaced).
    Unreadable inputs are warned about and skipped: exit code 1 when any input failed, 2 when none was readable.
    --out must lie outside every source folder; files there that segkd did not write are never replaced.
    An ONNX file without segkd metadata runs when it maps one image tensor to per-pixel scores or labels.

    Example: [bold]segkd predict --weights runs/train/fastsegformer-p/weights/best.pt photos/ clip.mp4 --count[/]
    """
    if mix not in MIXES:
        raise ConfigError(f"--mix {mix}: choose from {', '.join(MIXES)}")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"--alpha {alpha}: must lie in [0, 1]")
    norm = (parse_floats("--mean", mean), parse_floats("--std", std))
    predictor = deploy.predictor.Predictor.load(weights, device, norm=norm)  # torch from here: the options are valid
    if predictor.foreign and (mean is None or std is None):
        err.print(f"[yellow]warning:[/] {weights} has no segkd metadata: ImageNet mean/std assumed for what --mean/"
                  "--std do not give, class names class0..", soft_wrap=True)
    elif not predictor.foreign and (mean or std):
        err.print("[yellow]warning:[/] --mean/--std ignored: the model carries its own normalisation", soft_wrap=True)
    name = weights_run_name(weights) or predictor.name
    folder = Path(out_dir) if out_dir else make_run_dir("runs", "predict", name, exist_ok=True, create=False)
    err.print(f"predict: {weights} via {predictor.backend} on {predictor.device}, input "
              f"{'×'.join(map(str, predictor.meta.input_size))} ({predictor.meta.resize})")
    options = deploy.predict.PredictOptions(mix, alpha, batch, count)
    report = deploy.predict.predict_sources(predictor, sources, folder, options, progress=progress_enabled(),
                                            warn=lambda msg: err.print(f"[yellow]warning:[/] {msg}"),
                                            force=force or not out_dir, inputs=[weights])  # the run folder: exist_ok
    if as_json:
        print_json(report_json(report, predictor.classes))
    elif count and report.images:
        out.print(counts_table(report, predictor.classes))
    if report.done:
        err.print(f"{_plural(len(report.images), 'image')}, {_plural(len(report.videos), 'video')} -> {folder}"
                  + (f" (skipped {report.skipped} non-image files)" if report.skipped else ""))
        for v in report.videos:
            err.print(f"  {v.source.name}: {v.frames} frames, {v.fps:.1f} FPS end-to-end -> {v.output}")
    if not report.done:
        raise DataError(f"nothing readable in {', '.join(sources)}")
    if report.failed:
        raise JobFailed(f"{len(report.failed)} of {len(report.failed) + report.done} inputs failed "
                        f"(first: {report.failed[0][0]})")


def parse_floats(option: str, text: str | None) -> list[float] | None:
    """`0.485,0.456,0.406` -> three floats (None when the option is not given)."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"{option} {text}: expected three numbers, e.g. 0.485,0.456,0.406") from None
    if len(values) != 3:
        raise ConfigError(f"{option} {text}: expected three numbers (R,G,B), got {len(values)}")
    return values


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def counts_table(report: PredictReport, classes: list[str]) -> Table:
    table = Table(title="pixels per class (ratio)")
    table.add_column("image")
    for name in classes:
        table.add_column(name, justify="right")
    for r in report.images:
        total = max(1, sum(r.counts))
        table.add_row(r.source.name, *(f"{n} ({100 * n / total:.1f}%)" for n in r.counts))
    return table


def report_json(report: PredictReport, classes: list[str]) -> dict:
    def counts(r):
        total = max(1, sum(r.counts))
        return {c: {"pixels": n, "ratio": n / total} for c, n in zip(classes, r.counts)}

    return {
        "out_dir": str(report.out_dir),
        "images": [{"source": str(r.source), "labels": str(r.labels), "picture": str(r.picture),
                    "size": list(r.size), **({"counts": counts(r)} if r.counts is not None else {})}
                   for r in report.images],
        "videos": [{"source": str(v.source), "output": str(v.output), "frames": v.frames, "fps": v.fps}
                   for v in report.videos],
        "counts_csv": str(report.counts_csv) if report.counts_csv else None,
        "failed": [{"input": name, "reason": reason} for name, reason in report.failed],
        "skipped": report.skipped,
    }

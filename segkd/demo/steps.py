"""The demo's steps: each calls the plain function its `segkd` command runs and returns a JSON-able result.

`STEPS` is the order; each step is `fn(ctx) -> dict`. Every file goes through the output guard first: the demo
replaces only files segkd wrote (its own earlier run in OUT), never a foreign file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from segkd import deploy, engine
from segkd.config import load_config
from segkd.data.dataset import open_dataset
from segkd.data.synthetic import CLASSES, generate_oranges
from segkd.demo.plan import MODELS, DemoPaths, DemoPlan, commands, recipe_text
from segkd.engine.runs import make_run_dir
from segkd.outputs import atomic_write, guard_outputs
from segkd.report.document import write_report

#: on_epoch(done, total): what a training step tells the progress display after each epoch
EpochHook = Callable[[int, int], None]


@dataclass
class DemoContext:
    plan: DemoPlan
    paths: DemoPaths
    results: dict[str, dict]  # finished steps' results (loaded from the state file on a rerun)
    on_epoch: EpochHook = lambda done, total: None
    log: Callable[[str], None] = lambda message: None


def step_data(ctx: DemoContext) -> dict:
    """Generate OUT/oranges (VOC layout, stratified 6:2:2 lists) and write the demo's two presets."""
    plan, paths = ctx.plan, ctx.paths
    presets = {role: paths.preset(role) for role in ("teacher", "student")}
    guard_outputs(presets.values(), force=True)
    root = generate_oranges(paths.data, plan.images, plan.image_size, plan.seed)
    sizes = {"teacher": (plan.teacher_size, plan.teacher_epochs), "student": (plan.student_size, plan.student_epochs)}
    for role, path in presets.items():
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.write(recipe_text(role, *sizes[role]))
    splits = {s: len(open_dataset(root, s, num_classes=len(CLASSES))) for s in ("train", "val", "test")}
    return {"root": str(root), "images": plan.images, "size": plan.image_size, "classes": CLASSES, "splits": splits,
            "presets": {role: str(p) for role, p in presets.items()}}


def _train_config(ctx: DemoContext, role: str, name: str, extra: dict | None = None):
    """The config `segkd train/distill --preset OUT/<preset> --data OUT/oranges project=OUT/runs name=NAME` runs."""
    overrides = {"data.root": str(ctx.paths.data), "project": str(ctx.paths.runs), "name": name,
                 "exist_ok": True, "train.seed": ctx.plan.seed} | (extra or {})
    if ctx.plan.workers is not None:
        overrides["data.workers"] = ctx.plan.workers
    cfg = load_config(str(ctx.paths.preset(role)), overrides)
    for note in engine.loaders.adopt_dataset_classes(cfg, set(overrides)):
        ctx.log(f"note: {note}")
    return cfg


def _epoch_callback(ctx: DemoContext) -> Callable:
    return lambda trainer: ctx.on_epoch(trainer.epoch + 1, trainer.cfg.train.epochs)


def _run_summary(summary: dict) -> dict:
    keys = ("save_dir", "best", "last", "results", "best_miou", "best_epoch", "time_s")
    return {k: summary.get(k) for k in keys}


def step_teacher(ctx: DemoContext) -> dict:
    """`segkd train` the teacher (SegFormer-B1 at the teacher's size)."""
    cfg = _train_config(ctx, "teacher", "teacher")
    return _run_summary(engine.trainer.train(cfg, callbacks={"on_fit_epoch_end": [_epoch_callback(ctx)]}))


def step_student(ctx: DemoContext) -> dict:
    """`segkd train` the student alone (FastSegFormer-P at the student's size)."""
    cfg = _train_config(ctx, "student", "student")
    return _run_summary(engine.trainer.train(cfg, callbacks={"on_fit_epoch_end": [_epoch_callback(ctx)]}))


def step_distill(ctx: DemoContext) -> dict:
    """`segkd distill` the student from the teacher's best.pt, the teacher at its own (larger) input size."""
    teacher = ctx.results["teacher"]["best"]
    cfg = _train_config(ctx, "student", "student-kd", {"distill.teacher.weights": teacher})
    distiller = engine.distill.Distiller.from_config(cfg, teacher_size_from_checkpoint=True)
    callbacks = distiller.callbacks()
    callbacks["on_fit_epoch_end"] = [_epoch_callback(ctx)]
    summary = _run_summary(engine.trainer.train(cfg, distiller=distiller, callbacks=callbacks))
    return summary | {"teacher_size": list(distiller.teacher_size), "student_size": list(distiller.student_size),
                      "terms": distiller.term_names}


def step_eval(ctx: DemoContext) -> dict:
    """`segkd eval --split test` of the three best.pt (runs/eval/<model>/: metrics.json, confusion matrix)."""
    found = {}
    for i, model in enumerate(MODELS):
        weights = ctx.results[_step_of(model)]["best"]
        cfg = engine.evaluator.eval_config(weights, [f"project={ctx.paths.runs}", f"name={model}", "exist_ok=true"])
        metrics, run_dir = engine.evaluator.run_eval(cfg, weights, split="test")
        found[model] = metrics.summary() | {"run_dir": str(run_dir), "iou": [float(x) for x in metrics.iou],
                                            "classes": metrics.class_names}
        ctx.on_epoch(i + 1, len(MODELS))
    return found


def step_export(ctx: DemoContext) -> dict:
    """`segkd export --int8` of the distilled student: fp32 and int8 ONNX, each verified against PyTorch."""
    weights, target = ctx.results["distill"]["best"], ctx.paths.onnx
    loaded = deploy.loading.load_model(weights)
    guard_outputs(deploy.artifacts.export_outputs(target, False, True), [weights, ctx.paths.data], force=True)
    request = deploy.artifacts.ExportRequest(target, int8=True, calib=ctx.paths.data, int8_ops=ctx.plan.int8_ops)
    report = deploy.artifacts.export_artifacts(loaded, request, log=ctx.log)
    return {"artifacts": [{"format": a.format, "path": str(a.path), "ok": a.ok, "mb": a.mb} for a in report.artifacts],
            "failures": report.failures}


def step_bench(ctx: DemoContext) -> dict:
    """`segkd bench`, 2 threads (the plan's), batch 1: teacher and student eager and in ONNX Runtime; the
    distilled student eager and as the exported (verified) fp32 and int8 ONNX files."""
    weights = {m: ctx.results[_step_of(m)]["best"] for m in MODELS}
    exported = [a["path"] for a in ctx.results["export"]["artifacts"] if a["ok"]]
    run_dir = make_run_dir(ctx.paths.runs, "bench", "demo", exist_ok=True)
    report = deploy.bench_report
    files = [run_dir / "results.csv", run_dir / "bench.json"]
    guard_outputs(files, list(weights.values()), force=True)
    protocol = deploy.timing.Protocol(1 if ctx.plan.quick else 5, ctx.plan.bench_iters, ctx.plan.bench_seconds)
    rows = []
    for backends, files_ in ((("torch", "onnxruntime"), [weights["teacher"], weights["student"]]),
                             (("torch",), [weights["student-kd"]]), (("onnxruntime",), exported)):
        targets = deploy.bench.load_targets([], files_)
        for target, path in zip(targets, files_):
            target.name = next(m for m, w in weights.items() if Path(w).parent == Path(path).parent)
        opts = deploy.bench.BenchOptions(backends, None, 1, "fp32", False, torch.device("cpu"),
                                         ctx.plan.bench_threads, protocol, None, run_dir)
        rows += deploy.bench.bench(targets, opts, log=ctx.log)
    report.write_csv(files[0], rows)
    report.write_json(files[1], report.bench_document(opts, rows))
    return {"rows": [vars(r) for r in rows], "header": report.protocol_header(opts), "csv": str(files[0])}


def step_predict(ctx: DemoContext) -> dict:
    """`segkd predict` of the first test images with each model: label PNGs and overlays under OUT/overlays/."""
    test = open_dataset(ctx.paths.data, "test", num_classes=len(CLASSES))
    samples = test.samples[:ctx.plan.grid_images]
    images = [str(s.image) for s in samples]
    found = {}
    for model in MODELS:
        weights = ctx.results[_step_of(model)]["best"]
        predictor = deploy.predictor.Predictor.load(weights, "cpu")
        report = deploy.predict.predict_sources(predictor, images, ctx.paths.out / "overlays" / model,
                                                deploy.predict.PredictOptions(), force=True, inputs=[Path(weights)])
        found[model] = [str(r.labels) for r in report.images]
    masks = [str(s.mask) for s in samples]
    return {"images": images, "masks": masks, "labels": found}


def step_report(ctx: DemoContext) -> dict:
    """OUT/report.html (self-contained) and OUT/report.md with its PNGs under OUT/report/."""
    lines = list(commands(ctx.plan, ctx.paths).values())
    return write_report(ctx.paths.out, ctx.results, ctx.plan.key(), lines)


def _step_of(model: str) -> str:
    return "distill" if model == "student-kd" else model


#: steps that need nothing from each other: with `plan.side_by_side` they run at once (segkd.demo.side_by_side)
SIDE_BY_SIDE = ("teacher", "student")

STEPS: list[tuple[str, Callable[[DemoContext], dict]]] = [
    ("data", step_data), ("teacher", step_teacher), ("student", step_student), ("distill", step_distill),
    ("eval", step_eval), ("export", step_export), ("bench", step_bench), ("predict", step_predict),
    ("report", step_report),
]

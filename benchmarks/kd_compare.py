"""Which distillation method helps at equal wall-clock time? The student alone against each KD method, N seeds.

    python benchmarks/kd_compare.py [--methods pkl+nfd,cwd,kl] [--seeds 3] [--budget-s 300] [--teacher CKPT]
                                    [--student-arch segformer_b0] [--json]

Data: `segkd demo`'s synthetic orange defects and its two presets, written by the demo's own data step
(`segkd.demo.steps.step_data`: `--images` images at 256 px, stratified 6:2:2, data seed 0; the student's recipe
`fastsegformer-p-demo.yaml` at 128 px: AdamW 2e-3 poly, hflip, CE + Dice, NHWC, distill.normalize on; the
teacher's `segformer-b1-demo.yaml` at 160 px). Every model is scored with its final weights on the test split
(never seen in training or model selection).

Plan, the same for every method:
  1. the teacher is trained once (the demo's SegFormer-B1 recipe, `--teacher-arch` to change the model, for
     `--teacher-budget-s`, seed 0), or taken from `--teacher` (any segkd checkpoint trained on the same data, e.g.
     a longer `segkd demo` teacher; it is seen at its own input size);
  2. for each seed in 0..N-1: the student alone, then the student distilled with each method, every run with the
     same seed (same initial weights, same data order), the same data and `train.time` = `--budget-s` seconds
     (`segkd.engine.time_budget`: the epoch count and lr schedule stretch to the budget; the teacher's forward
     pass is part of each distilled run's time, which is what equal time means). Validation runs only after the
     last epoch, so it does not eat the budget.
The table: test mIoU mean ± std over seeds, the gain over the student alone paired by seed, the epochs each run
reached in its budget, and the peak memory of a run (CPU: peak RSS of this process during the run, reset before
each; CUDA: max allocated). torch's deterministic algorithms are on (`torch.use_deterministic_algorithms`): a
seeded run is repeatable up to the epoch count, which depends on the wall clock by design.

Methods (`--methods`, comma separated; each is a list of KD terms, normalised by their start value):
    pkl+nfd  FastSegFormer's KD: P&KL on the logits (t 2, k1 0.5) + 0.5 NFD over `pairs: auto` (equal stride)
    cwd      channel-wise distillation on the logits (Shu et al. 2021; t 1 as MMRazor)
    kl       pixel-wise KL on the logits (t 2)
    <loss>   any other registered KD loss (DIST, CIRKD, BPKD once merged): one term on the logits
`--method NAME='[{loss: x, weight: 1, student: logits, teacher: logits}]'` defines or replaces a method (YAML).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from segkd.config import Config, config_from_dict, load_config
from segkd.data.dataset import open_dataset
from segkd.data.synthetic import CLASSES
from segkd.demo.plan import DemoPaths, make_plan
from segkd.demo.steps import DemoContext, step_data
from segkd.engine.distill import Distiller
from segkd.engine.evaluator import evaluate_model
from segkd.engine.trainer import train
from segkd.losses import list_losses
from segkd.models import list_models, load_checkpoint, read_checkpoint

LOGITS = {"student": "logits", "teacher": "logits"}
METHODS: dict[str, list[dict]] = {
    "pkl+nfd": [{"loss": "pkl", "weight": 1.0, **LOGITS, "temperature": 2.0, "k1": 0.5},
                {"loss": "nfd", "weight": 0.5, "pairs": "auto"}],
    "cwd": [{"loss": "cwd", "weight": 1.0, **LOGITS, "temperature": 1.0}],
    "kl": [{"loss": "kl", "weight": 1.0, **LOGITS, "temperature": 2.0}],
}
#: methods run by default once their loss is registered (the issue's list)
DEFAULT_METHODS = ("pkl+nfd", "cwd", "kl", "dist", "cirkd", "bpkd")
ALONE = "alone"


def method_terms(name: str, custom: dict[str, list[dict]]) -> list[dict]:
    """The KD terms of a method: `--method` definitions, the table above, or one logits term of a registered loss."""
    if name in custom:
        return custom[name]
    if name in METHODS:
        return METHODS[name]
    if name in list_losses():
        return [{"loss": name, "weight": 1.0, **LOGITS}]
    known = sorted({*METHODS, *custom, *(n for n in list_losses() if n not in ("ce", "dice", "focal", "lovasz"))})
    sys.exit(f"error: --methods: unknown method '{name}' (known: {', '.join(known)})")


def run_config(recipe: Path, data: Path, project: Path, name: str, seed: int, seconds: float, device: str,
               arch: str | None, extra: dict | None = None) -> Config:
    """The demo recipe for one run: its data, seed, device, a wall-clock budget, validation only at the end."""
    overrides = {
        "name": name, "project": str(project), "exist_ok": True, "data.root": str(data), "data.workers": 0,
        "train.time": seconds / 3600, "train.seed": seed, "train.device": device, "train.val_interval": 10_000,
    }
    if arch is not None:
        overrides |= {"model.arch": arch, "model.options": {}}
    return load_config(str(recipe), overrides | (extra or {}))


def peak_reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak RSS (VmHWM) restarts from the current RSS


def peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


def test_miou(checkpoint: str, data: Path, device: str) -> float:
    """Test-split mIoU (%) on `data` of a checkpoint's final weights, at its own input size and normalisation."""
    cfg = config_from_dict(read_checkpoint(checkpoint)["config"])
    test = open_dataset(data, cfg.data.test_split, num_classes=cfg.model.num_classes)
    model = load_checkpoint(checkpoint)
    return 100 * float(evaluate_model(model, test, cfg.data, device=device, batch_size=16, absent="nan").mIoU)


def one_run(cfg: Config, device: str, distiller: Distiller | None = None) -> dict:
    peak_reset(device)
    summary = train(cfg, distiller=distiller)
    return {"miou": test_miou(summary["last"], cfg.data.root, device), "epochs": summary["epochs"],
            "seconds": summary["time_s"], "peak_mb": peak_mb(device)}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Per method: mIoU mean/std, paired gain over `alone`, epochs and peak memory."""
    alone = [r["miou"] for r in runs[ALONE]]
    rows = {}
    for method, rs in runs.items():
        m, s = mean_std([r["miou"] for r in rs])
        gm, gs = mean_std([r["miou"] - a for r, a in zip(rs, alone)])
        rows[method] = {"miou": m, "miou_std": s, "gain": gm, "gain_std": gs,
                        "per_seed": [round(r["miou"], 2) for r in rs], "epochs": [r["epochs"] for r in rs],
                        "peak_mb": max(r["peak_mb"] for r in rs), "seconds": [round(r["seconds"], 1) for r in rs]}
    return rows


def print_table(doc: dict) -> None:
    print(f"{'method':<12} {'test mIoU (%)':>15} {'gain (paired)':>15} {'epochs':>10} {'peak MB':>8}   per seed")
    for method, r in doc["rows"].items():
        gain = "-" if method == ALONE else f"{r['gain']:+6.2f} ± {r['gain_std']:.2f}"
        epochs = "/".join(str(e) for e in r["epochs"])
        print(f"{method:<12} {r['miou']:>7.2f} ± {r['miou_std']:<5.2f} {gain:>15} {epochs:>10} {r['peak_mb']:>8.0f}   "
              + " ".join(f"{v:6.2f}" for v in r["per_seed"]))
    a = doc["setup"]
    print(f"student {a['student']} · teacher {a['teacher']} (test mIoU {doc['teacher_miou']:.2f}) · device "
          f"{a['device']} ({a['threads']} threads), float32, input {a['size']}×{a['size']}, batch {a['batch']} · "
          f"{a['budget_s']:g} s per run, {a['seeds']} seeds, {a['images']} demo images · {doc['seconds']:.0f} s total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=None, help="comma separated (default: "
                        f"{','.join(DEFAULT_METHODS)}, those registered)")
    parser.add_argument("--method", action="append", default=[], metavar="NAME=YAML", help="define a method")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=300.0, help="wall-clock seconds per run (train.time)")
    parser.add_argument("--teacher", default=None, help="a trained segkd checkpoint (default: train one)")
    parser.add_argument("--teacher-arch", default=None, help="model of the trained teacher (default: the demo's)")
    parser.add_argument("--teacher-budget-s", type=float, default=None, help="default: 3 × --budget-s")
    parser.add_argument("--student-arch", default=None, help="e.g. segformer_b0, mobilev3_large_lraspp")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=None, help="student input side (default: the demo's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", type=Path, default=None, help="keep data and runs here (default: a temp folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = parser.parse_args()
    custom = {}
    for text in args.method:
        name, _, terms = text.partition("=")
        custom[name] = yaml.safe_load(terms)
    names = (args.methods.split(",") if args.methods else
             [m for m in DEFAULT_METHODS if m in METHODS or m in list_losses()] + list(custom))
    methods = {name: method_terms(name, custom) for name in names if name != ALONE}
    for arch in (args.student_arch, args.teacher_arch):
        if arch is not None and arch not in list_models():
            sys.exit(f"error: unknown model '{arch}' (see segkd.models.list_models())")
    if args.device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        paths = DemoPaths(work / "demo")
        plan = make_plan(images=args.images)
        step_data(DemoContext(plan, paths, {}))  # the demo's data and presets, as `segkd demo` writes them
        data, recipe, project = paths.data, paths.preset("student"), work / "runs"
        size = {"data.input_size": args.size} if args.size else {}
        teacher = args.teacher
        if teacher is None:
            t_cfg = run_config(paths.preset("teacher"), data, project, "teacher", 0,
                               args.teacher_budget_s or 3 * args.budget_s, args.device, args.teacher_arch)
            teacher = train(t_cfg)["last"]
        teacher_miou, teacher_arch = test_miou(teacher, data, args.device), read_checkpoint(teacher)["arch"]
        log(f"teacher {teacher_arch} {teacher}: test mIoU {teacher_miou:.2f}")
        runs: dict[str, list[dict]] = {ALONE: [], **{m: [] for m in methods}}
        log(f"plan: seeds 0..{args.seeds - 1} × ({', '.join(runs)}), {args.budget_s:g} s of training each, "
            f"student {args.student_arch or 'of the demo recipe'}, the same {args.images} images")
        for seed in range(args.seeds):
            for method in runs:
                kd = None if method == ALONE else {"distill.teacher.weights": teacher, "distill.terms": methods[method]}
                cfg = run_config(recipe, data, project, f"{method}-{seed}", seed, args.budget_s, args.device,
                                 args.student_arch, size | (kd or {}))
                distiller = Distiller.from_config(cfg, teacher_size_from_checkpoint=True) if kd else None
                runs[method].append(result := one_run(cfg, args.device, distiller))
                log(f"seed {seed} {method}: test mIoU {result['miou']:.2f} after {result['epochs']} epochs "
                    f"({result['seconds']:.0f} s, peak {result['peak_mb']:.0f} MB)")
    setup = {"student": cfg.model.arch, "teacher": teacher_arch, "device": args.device,
             "threads": torch.get_num_threads(), "size": cfg.data.input_size, "batch": cfg.train.batch_size,
             "budget_s": args.budget_s, "seeds": args.seeds, "images": args.images, "methods": methods}
    doc = {"setup": setup, "teacher_miou": teacher_miou, "rows": summarise(runs),
           "seconds": time.perf_counter() - start, "classes": CLASSES}
    slow = sorted({m for m, rs in runs.items() for r in rs if r["epochs"] == 1 and r["seconds"] > 1.5 * args.budget_s})
    if slow:
        log(f"warning: one epoch outlasts the budget ({', '.join(slow)}: 1 epoch): raise --budget-s or lower --images")
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_table(doc)


if __name__ == "__main__":
    main()

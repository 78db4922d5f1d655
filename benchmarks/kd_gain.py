"""Does distillation help? Teacher, student alone and student distilled (P&KL + NFD) on the synthetic oranges.

    python benchmarks/kd_gain.py [--seeds 3] [--json]

For each seed, on the same generated data (segkd.data.synthetic.generate_oranges, fixed data seed):
  1. the teacher is trained (its own budget),
  2. the student is trained alone (hard labels only),
  3. the student is trained with the same budget plus FastSegFormer's KD terms from that seed's teacher:
     0.5·P&KL on the logits (t=2, k1=0.5) and 5·NFD (paper form: learned 1×1 adapters, normalised maps) over
     the four backbone stages and the decoder's fused map.
Every model is scored by its final-epoch val mIoU (no checkpoint selection). The table gives mean ± std over
seeds and the paired gain (distilled − alone). The default budget fits in about 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from segkd.config import Config, load_config
from segkd.data.synthetic import generate_oranges
from segkd.engine.distill import Distiller
from segkd.engine.trainer import train


@dataclass
class Budget:
    images: int = 100  # generated images (6:2:2 train/val/test split)
    size: int = 64  # generated image side = network input side
    teacher_epochs: int = 60
    student_epochs: int = 30
    batch_size: int = 8
    lr: float = 2e-3
    teacher_preset: str = "segformer-b1"
    student_preset: str = "segformer-b0"


#: NFD pairs (student tap, teacher tap): the four encoder stages (strides 4/8/16/32) and the decoder's fused map
NFD_PAIRS = [["stage1", "stage1"], ["stage2", "stage2"], ["stage3", "stage3"], ["stage4", "stage4"],
             ["fusion", "fusion"]]
#: the hard-label loss of all three: each defect class is ~1.5% of the pixels, and with CE alone no model
#: predicts a defect within this budget
HARD_LOSS = [{"name": "ce", "weight": 1.0}, {"name": "dice", "weight": 1.0}]
KD_TERMS = [
    {"loss": "nfd", "weight": 5.0, "pairs": NFD_PAIRS},
    {"loss": "pkl", "weight": 0.5, "student": "logits", "teacher": "logits", "temperature": 2.0, "k1": 0.5},
]


def run_config(preset: str, budget: Budget, data: Path, project: Path, name: str, epochs: int, seed: int,
               extra: dict | None = None) -> Config:
    """`preset` with this benchmark's data, budget and (shared) input pipeline."""
    overrides = {
        "name": name, "project": str(project), "exist_ok": True,
        "model.num_classes": 4, "model.backbone_weights": None, "model.weights": None,
        "data.root": str(data), "data.input_size": budget.size, "data.resize": "resize", "data.workers": 0,
        "data.mean": [0.485, 0.456, 0.406], "data.std": [0.229, 0.224, 0.225], "data.mask_pad": "ignore",
        "train.epochs": epochs, "train.batch_size": budget.batch_size, "train.optimizer": "adamw",
        "train.lr": budget.lr, "train.min_lr": budget.lr * 0.01, "train.weight_decay": 0.01,
        "train.scheduler": "poly", "train.power": 1.0, "train.sched_step": "iter", "train.warmup_epochs": 0,
        "train.freeze_epochs": 0, "train.device": "cpu", "train.seed": seed, "train.val_interval": epochs,
        "augment": [{"op": "hflip", "p": 0.5}], "loss": HARD_LOSS, "eval.absent": "nan",
    }
    return load_config(preset, overrides | (extra or {}))


def final_miou(summary: dict) -> float:
    return float(summary["final"]["val/mIoU"])


def run_seed(seed: int, budget: Budget, data: Path, project: Path, log) -> dict[str, float]:
    """Teacher, student alone, student distilled for one seed: their final val mIoU (fractions)."""
    t0 = time.perf_counter()
    teacher_cfg = run_config(budget.teacher_preset, budget, data, project, f"teacher{seed}", budget.teacher_epochs, seed)
    teacher = train(teacher_cfg)
    log(f"seed {seed}: teacher {final_miou(teacher):.4f} ({time.perf_counter() - t0:.0f}s)")

    t0 = time.perf_counter()
    alone = train(run_config(budget.student_preset, budget, data, project, f"student{seed}", budget.student_epochs, seed))
    log(f"seed {seed}: student alone {final_miou(alone):.4f} ({time.perf_counter() - t0:.0f}s)")

    t0 = time.perf_counter()
    kd_cfg = run_config(budget.student_preset, budget, data, project, f"kd{seed}", budget.student_epochs, seed, {
        "distill": {"teacher": {"preset": None, "weights": teacher["last"], "input_size": budget.size},
                    "terms": KD_TERMS, "adapter_lr_mult": 1.0, "batch_size": None, "freeze_epochs": None},
    })
    distilled = train(kd_cfg, distiller=Distiller.from_config(kd_cfg))
    log(f"seed {seed}: student distilled {final_miou(distilled):.4f} ({time.perf_counter() - t0:.0f}s)")
    return {"teacher": final_miou(teacher), "student": final_miou(alone), "distilled": final_miou(distilled)}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def report(runs: list[dict[str, float]], budget: Budget, seconds: float) -> dict:
    rows = {}
    for key in ("teacher", "student", "distilled"):
        m, s = mean_std([100 * r[key] for r in runs])
        rows[key] = {"mean": m, "std": s, "per_seed": [100 * r[key] for r in runs]}
    gm, gs = mean_std([100 * (r["distilled"] - r["student"]) for r in runs])
    rows["gain"] = {"mean": gm, "std": gs, "per_seed": [100 * (r["distilled"] - r["student"]) for r in runs]}
    return {"budget": asdict(budget), "seeds": len(runs), "miou": rows, "seconds": seconds,
            "device": "cpu", "threads": torch.get_num_threads(), "dtype": "float32"}


def print_table(doc: dict) -> None:
    b = doc["budget"]
    names = {"teacher": f"teacher   {b['teacher_preset']} ({b['teacher_epochs']} ep)",
             "student": f"student   {b['student_preset']} ({b['student_epochs']} ep)",
             "distilled": f"distilled {b['student_preset']} + P&KL + NFD",
             "gain": "gain (distilled - student, paired)"}
    print(f"{'model':<48} {'val mIoU (%)':>16}   per seed")
    for key, label in names.items():
        r = doc["miou"][key]
        seeds = " ".join(f"{v:6.2f}" for v in r["per_seed"])
        print(f"{label:<48} {r['mean']:>8.2f} ± {r['std']:<5.2f}   {seeds}")
    print(f"device cpu ({doc['threads']} threads), float32, input {b['size']}×{b['size']}, batch {b['batch_size']}, "
          f"{b['images']} synthetic images (6:2:2), {doc['seeds']} seeds, {doc['seconds']:.0f}s total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("--workdir", type=Path, default=None, help="keep runs here (default: a temp folder)")
    for field, default in asdict(Budget()).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default)
    args = parser.parse_args()
    budget = Budget(**{k: getattr(args, k) for k in asdict(Budget())})
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        data = generate_oranges(work / "oranges", n_images=budget.images, size=budget.size, seed=0)
        runs = [run_seed(seed, budget, data, work / "runs", log) for seed in range(args.seeds)]
    doc = report(runs, budget, time.perf_counter() - start)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_table(doc)


if __name__ == "__main__":
    main()

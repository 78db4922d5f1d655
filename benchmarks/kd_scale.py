"""How large each KD preset's terms start against the hard-label loss: the figures behind `distill.normalize`.

    python benchmarks/kd_scale.py --data demo/oranges [--presets fastsegformer-p-kd2,...] [--sizes native,128]
                                  [--batch 2] [--json]

For each preset and size, the Trainer of `segkd distill` is set up on the data (teacher and student randomly
initialised: `--random-teacher`; the feature terms are built from normalised maps, so their starting scale depends
little on training) and its first batch gives every weighted loss term, exactly as the run's first step sees it.
`native` is the preset's own sizes (e.g. teacher 512, student 224); a number sets both models' input size.
Printed per term: the raw value, its weight, weight × raw, and that as a multiple of the hard-label loss.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch
from rich.console import Console
from rich.table import Table

from segkd.config import load_config
from segkd.engine.distill import Distiller
from segkd.engine.trainer import Trainer
from segkd.errors import SegkdError

PRESETS = ["fastsegformer-p-kd1", "fastsegformer-p-kd2", "fastsegformer-e-kd2", "sekd", "sekd-su", "sekd-ct",
           "segformer-b2-cwd-fastsegformer-e"]


def first_step_terms(preset: str, data: str, size: str, batch: int) -> dict:
    """{term: (raw, weight)} plus the hard-label loss at the first batch of a distill run of `preset`."""
    with tempfile.TemporaryDirectory() as project:
        overrides = {"data.root": data, "project": project, "train.device": "cpu", "data.workers": 0,
                     "distill.batch_size": batch, "data.images": batch}
        if size != "native":
            overrides |= {"data.input_size": int(size), "distill.teacher.input_size": int(size)}
        cfg = load_config(preset, overrides)
        if cfg.model.num_classes != 4:  # the demo data's classes.txt: 4 classes
            cfg = load_config(preset, overrides | {"model.num_classes": 4, "data.palette": None})
        torch.manual_seed(0)
        distiller = Distiller.from_config(cfg, allow_random_teacher=True)
        trainer = Trainer(cfg, "distill", distiller)
        trainer.setup()
        images, masks = next(iter(trainer.train_loader))
        with torch.no_grad():
            terms = {k: float(v) for k, v in trainer.loss_terms(images, masks).items()}
    weights = {t.name: t.weight for t in distiller.terms}
    hard = sum(v for k, v in terms.items() if k not in weights)
    return {"preset": preset, "teacher": list(distiller.teacher_size), "student": list(distiller.student_size),
            "hard": hard, "terms": {k: {"raw": terms[k] / w, "weight": w, "weighted": terms[k],
                                        "x_hard": terms[k] / hard} for k, w in weights.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="A dataset folder (e.g. demo/oranges from `segkd demo`).")
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--sizes", default="native,128", help="native and/or input sides, comma-separated.")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows, skipped = [], []
    for size in args.sizes.split(","):
        for preset in args.presets.split(","):
            try:
                rows.append(first_step_terms(preset, args.data, size, args.batch))
            except SegkdError as e:  # e.g. FastSegFormer-E runs at 224 only
                skipped.append(f"{preset} at {size}: {e}")
    if args.json:
        print(json.dumps({"rows": rows, "skipped": skipped}, indent=2))
        return
    table = Table(title="KD terms at the first step (random teacher and student)")
    for col in ("preset", "teacher", "student", "hard loss", "term", "raw", "weight", "weighted", "× hard"):
        table.add_column(col, justify="left" if col in ("preset", "term") else "right")
    for r in rows:
        for i, (name, t) in enumerate(r["terms"].items()):
            first = i == 0
            table.add_row(r["preset"] if first else "", "×".join(map(str, r["teacher"])) if first else "",
                          "×".join(map(str, r["student"])) if first else "", f"{r['hard']:.3g}" if first else "",
                          name, f"{t['raw']:.3g}", f"{t['weight']:g}", f"{t['weighted']:.3g}", f"{t['x_hard']:.3g}")
    Console(width=160).print(table)
    for line in skipped:
        print(f"skipped {line}")
    print(f"device cpu · fp32 · batch {args.batch} · data {args.data} · sizes {args.sizes}")


if __name__ == "__main__":
    main()

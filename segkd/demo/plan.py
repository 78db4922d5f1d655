"""What `segkd demo` runs: the data, the two presets it writes, sizes and epochs, and each step's command line.

The full plan fits 10 minutes on 2 CPU cores (measured 479-530 s): the teacher (6 epochs) and the student
alone (8 epochs) train side by side in about the same time, one core each, then the distillation (8 epochs)
runs. `--quick` (the CI integration test) is the same story on a few tiny images for one epoch. The teacher is a
bigger model (SegFormer-B1, 13.7 M params) that sees a larger image than the student (FastSegFormer-P, 14.9 M
params but a PoolFormer encoder) -- multi-resolution KD: the distiller takes the teacher's input size from its
checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

STUDENT_PRESET = "fastsegformer-p-demo.yaml"
TEACHER_PRESET = "segformer-b1-demo.yaml"
FIRST_LINE = "# written by segkd demo"

#: the recipe both models train with: a short run from a random backbone (measured: README "The demo")
_TRAIN = """\
train:
  epochs: {epochs}
  batch_size: 2                   # steps, not images, are what a random start needs: FastSegFormer-P at 8 epochs
                                  # reached 36.3 % val mIoU at batch 2, 34.4 % at 4, background only (24.2 %) at 8
  optimizer: adamw                # the papers' Adam 1e-4 is for a pretrained backbone; these start random
  lr: 2.0e-3
  min_lr: 2.0e-5
  weight_decay: 0.01
  scheduler: poly                 # linear decay per step, no warm-up, no min-lr tail
  power: 1.0
  sched_step: iter
  warmup_epochs: 0
  min_lr_epochs: 0
  freeze_epochs: 0
  channels_last: true             # NHWC weights and batches: faster convolutions (benchmarks/demo_threads.py)
augment:                          # flips only, as measured (the paper's paste + HSV jitter: not tried alone)
  - {{op: hflip, p: 0.5}}
loss:                             # each defect covers 1-2 % of the pixels: CE alone stays at background
  - {{name: ce, weight: 1.0}}
  - {{name: dice, weight: 1.0}}
"""

_DATA = """\
data:
  input_size: {size}
  resize: resize                  # eval/predict: plain resize (the demo images are square)
  mean: [0.485, 0.456, 0.406]     # ImageNet mean/std instead of the reference's x/255
  std: [0.229, 0.224, 0.225]
  mask_pad: ignore
"""

_STUDENT_HEAD = FIRST_LINE + """: FastSegFormer-P on the demo data, a short run from a random backbone.
# Edit freely under another name (segkd demo replaces this file while it is its own).
base: fastsegformer-p
description: FastSegFormer-P, demo recipe ({size} px, AdamW 2e-3 poly, hflip, CE + Dice)
"""
_DISTILL = """\
distill:                          # the teacher: a segkd checkpoint (teacher.weights=FILE), seen at its own size
  batch_size: 2
  normalize: true                 # each term divided by its starting value: the weight is relative importance
  terms:                          # P&KL on the logits + NFD on the two deepest encoder stages
    - {{loss: pkl, weight: 1.0, student: logits, teacher: logits, temperature: 2.0, k1: 0.5}}
    - {{loss: nfd, weight: 0.25, pairs: [[stage3, stage3], [stage4, stage4]]}}
"""
_TEACHER_HEAD = FIRST_LINE + """: SegFormer-B1, the demo's teacher (a larger input than the student's).
# Edit freely under another name (segkd demo replaces this file while it is its own).
base: segformer-b1
description: SegFormer-B1 teacher, demo recipe ({size} px, AdamW 2e-3 poly, hflip, CE + Dice)
model:
  num_classes: 4
"""


def recipe_text(role: str, size: int, epochs: int) -> str:
    """The YAML of the demo's teacher or student preset at `size` px for `epochs`."""
    parts = [_TEACHER_HEAD, _DATA, _TRAIN] if role == "teacher" else [_STUDENT_HEAD, _DATA, _TRAIN, _DISTILL]
    return "".join(parts).format(size=size, epochs=epochs)


@dataclass(frozen=True)
class DemoPlan:
    """Sizes and epochs of one demo; `key()` is what a resumed run must share with the state file."""

    images: int = 200  # generated images (6:2:2 split)
    image_size: int = 256  # generated side
    student_size: int = 128  # the student's input side
    teacher_size: int = 160  # the teacher's input side (multi-resolution KD)
    teacher_epochs: int = 6
    student_epochs: int = 8  # alone and distilled alike
    grid_images: int = 4  # test images in the overlay grid
    bench_iters: int = 20  # timed calls per bench row (at least), after 5 warm-up calls
    bench_seconds: float = 0.5  # ... and at least this long
    int8_ops: str = "auto"  # export --int8-ops
    threads: int | None = None  # PyTorch threads of every step (None: PyTorch's default); at 64 px one is faster
    bench_threads: int = 2  # bench --threads (PyTorch and ONNX Runtime)
    workers: int | None = 1  # data.workers of each run (None: the preset's): two runs side by side share 2 cores
    side_by_side: bool = True  # teacher and student alone train at once, one process and thread each
    seed: int = 0
    quick: bool = False

    def key(self) -> dict:
        return asdict(self)


QUICK = dict(images=10, image_size=64, student_size=64, teacher_size=96, teacher_epochs=1, student_epochs=1,
             grid_images=2, bench_iters=3, bench_seconds=0.0, int8_ops="conv", threads=1, bench_threads=1,
             workers=0, quick=True)


def make_plan(quick: bool = False, images: int | None = None, seed: int = 0) -> DemoPlan:
    base = DemoPlan(**QUICK) if quick else DemoPlan()
    return DemoPlan(**{**base.key(), "seed": seed, **({"images": images} if images else {})})


@dataclass(frozen=True)
class DemoPaths:
    """Where each step writes, under OUT."""

    out: Path

    @property
    def data(self) -> Path:
        return self.out / "oranges"

    @property
    def runs(self) -> Path:
        return self.out / "runs"

    def preset(self, role: str) -> Path:
        return self.out / (TEACHER_PRESET if role == "teacher" else STUDENT_PRESET)

    def best(self, model: str) -> Path:
        command = "distill" if model == "student-kd" else "train"
        return self.runs / command / model / "weights" / "best.pt"

    @property
    def onnx(self) -> Path:
        return self.best("student-kd").with_suffix(".onnx")

    @property
    def state(self) -> Path:
        return self.out / "demo-state.json"

    def top_level(self) -> list[Path]:
        """The files the demo writes directly in OUT (the report's: `segkd.report.document.report_outputs`)."""
        return [self.state, self.preset("teacher"), self.preset("student")]


MODELS = ("teacher", "student", "student-kd")  # run names; the report's rows in this order


def commands(plan: DemoPlan, paths: DemoPaths) -> dict[str, str]:
    """Step -> the `segkd ...` line that does the same on the command line (from the folder OUT is in)."""
    data, runs = paths.data, paths.runs
    kd = paths.best("student-kd")
    models = " ".join(str(paths.best(m)) for m in MODELS)
    bench = ",".join([str(paths.best("teacher")), str(paths.best("student"))])
    exported = ",".join([str(paths.onnx), str(paths.onnx.with_suffix(".int8.onnx"))])
    return {
        "data": f"segkd split {data} --ratio 6:2:2 --stratify  # after generating the images (segkd.data.synthetic)",
        "teacher": f"segkd train --preset {paths.preset('teacher')} --data {data} project={runs} name=teacher",
        "student": f"segkd train --preset {paths.preset('student')} --data {data} project={runs} name=student",
        "distill": f"segkd distill --preset {paths.preset('student')} --data {data} project={runs} name=student-kd"
                   f" teacher.weights={paths.best('teacher')}",
        "eval": f"for w in {models}; do segkd eval --weights $w --split test project={runs}; done",
        "export": f"segkd export --weights {kd} --int8 --int8-ops {plan.int8_ops} --calib {data}",
        "bench": " && ".join(f"segkd bench --weights {w}{b} --threads {plan.bench_threads} --iters {plan.bench_iters}"
                             f" --min-time {plan.bench_seconds:g} --name demo" for w, b in
                             ((bench, ""), (kd, " --backend torch"), (exported, " --backend onnxruntime"))),
        "predict": f"for m in {' '.join(MODELS)}; do segkd predict --weights {runs}/*/$m/weights/best.pt"
                   f" <{plan.grid_images} test images> --out {paths.out}/overlays/$m; done",
        "report": f"segkd demo --out {paths.out}  # the report: {paths.out}/report.html and report.md",
    }


#: the epochs of the longer runs that `keeping_commands` prints (measured: README "A student worth keeping")
KEEPING_EPOCHS = {"teacher": 20, "student": 30}


def keeping_commands(paths: DemoPaths) -> list[str]:
    """The demo's teacher, student and distill commands for longer runs: a student worth keeping (over 40 % val
    mIoU on the demo data) rather than a 10-minute story."""
    data, runs = paths.data, paths.runs
    teacher, student = KEEPING_EPOCHS["teacher"], KEEPING_EPOCHS["student"]
    best = runs / "train" / f"teacher-{teacher}" / "weights" / "best.pt"
    return [
        f"segkd train --preset {paths.preset('teacher')} --data {data} project={runs} name=teacher-{teacher}"
        f" train.epochs={teacher}",
        f"segkd train --preset {paths.preset('student')} --data {data} project={runs} name=student-{student}"
        f" train.epochs={student}",
        f"segkd distill --preset {paths.preset('student')} --data {data} project={runs} name=student-kd-{student}"
        f" train.epochs={student} teacher.weights={best}",
    ]


"""The config schema: every key a preset or an override may set, with its type and default.

A preset is complete once its `base:` chain is resolved; these dataclasses are the list of valid keys.
Keys are addressed with dots on the command line: `train.epochs=10 data.root=data/x model.num_classes=6`.

Phases in epochs or iterations (warmup_epochs, warmup_iters, min_lr_epochs, freeze_epochs, distill.freeze_epochs)
are written for the preset's own `train.epochs`: setting `train.epochs` scales the ones not set alongside it in
proportion (`segkd.config.recipe`), e.g. FastSegFormer's 3 warm-up epochs of 1000 become 0.06 of 20.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Size = int | list[int]  # a square side or [H, W]


@dataclass
class ModelConfig:
    arch: str = ""  # registered entrypoint, e.g. fastsegformer_p (see `segkd.models.list_models()`)
    num_classes: int = 19
    weights: str | None = None  # a segkd checkpoint or a foreign state dict (`load_weights` detects the layout)
    pretrained: bool = False  # ImageNet backbone weights through timm's hub mechanism (HF cache; HF_HUB_OFFLINE)
    backbone_weights: str | None = None  # a local timm / ImageNet file for the backbone only
    options: dict = field(default_factory=dict)  # extra keyword arguments of the entrypoint


@dataclass
class DataConfig:
    root: str | None = None  # dataset folder (VOC, plain or Cityscapes layout)
    format: Literal["auto", "voc", "plain", "cityscapes"] = "auto"
    input_size: Size = 512  # network input, square side or [H, W]
    classes: list[str] = field(default_factory=list)  # class names; classes.txt in the data root wins
    palette: list[list[int]] | None = None  # RGB per class; None = VOC palette
    ignore_index: int = 255
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])  # on 0..1 pixels
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    resize: Literal["letterbox", "resize"] = "resize"  # eval/predict geometry
    pad_value: int = 128  # letterbox / paste canvas grey level
    mask_pad: Literal["ignore", "background"] = "ignore"  # label value of padded pixels
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    images: int | None = None  # use only the first N images of each split (quick runs)
    workers: int = 2  # DataLoader worker processes
    skip_bad: bool = False  # train on the pairs that pass the data scan (the count is printed) instead of failing


@dataclass
class TrainConfig:
    epochs: int = 100  # with train.time: the first epoch's guess only
    time: float | None = None  # hours of wall time: re-estimates epochs + stretches the schedule (engine/time_budget)
    batch_size: int = 8
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = 1e-4
    min_lr: float = 1e-6
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam / adamw
    weight_decay: float = 0.0
    scheduler: Literal["warm_cosine", "poly", "exponential", "linear", "step", "constant"] = "poly"  # constant: no warm-up
    sched_step: Literal["epoch", "iter"] = "iter"  # when the schedule advances
    warmup_epochs: float = 0.0  # scales with train.epochs (see the module docstring)
    warmup_iters: int = 0  # scales with train.epochs
    warmup_start_lr: float | None = None  # None = 0.1 * lr
    min_lr_epochs: float = 0  # the last N epochs run at min_lr (FastSegFormer: 15); scales with train.epochs
    power: float = 0.9  # poly
    gamma: float = 0.975  # exponential, per scheduler step
    steps: int = 10  # step schedule: number of decays
    head_lr_mult: float = 1.0
    backbone_lr_mult: float = 1.0
    freeze_epochs: int = 0  # a loaded backbone is frozen for the first N epochs; scales with train.epochs
    amp: bool = False  # fp16 on CUDA, bf16 on CPU
    channels_last: bool = False  # NHWC weights and batches (timm's --channels-last): faster convolutions, same maths
    accumulate: int = 1  # gradient accumulation steps
    clip_grad: float | None = None  # max grad norm
    ema: bool = False
    ema_decay: float = 0.9999  # capped at 1 - 10/(the run's optimizer steps) on a short run (engine/ema.py)
    val_interval: int = 1  # validate every N epochs (and always after the last)
    save_period: int = 0  # also keep epochN.pt every N epochs (0 = off)
    seed: int = 0  # >= 0
    nan_patience: int = 10  # non-finite steps in a row (each skipped with a warning) that stop the run
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    devices: int | list[int] | str | None = None  # N processes, or CUDA indices 0,1,2,3: relaunch under torchrun
    sync_bn: bool = False  # SyncBatchNorm across processes (CUDA); batch_size is per process either way
    tensorboard: bool = False  # log scalars when tensorboard is installed


@dataclass
class TeacherConfig:
    preset: str | None = None  # a preset whose model is the teacher (a segkd checkpoint in weights wins over it)
    arch: str | None = None  # a registered model for a foreign state dict (instead of preset; its default mean/std)
    weights: str | None = None  # the teacher's weights: a segkd checkpoint (it rebuilds itself) or a foreign state dict
    input_size: Size | None = None  # None = the student's input size (KD_1); e.g. 512 for KD_2


@dataclass
class DistillConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    terms: list[dict] = field(default_factory=list)  # {loss, weight, student: tap, teacher: tap | pairs: [[s, t]] | auto}
    adapter_lr_mult: float = 1.0  # lr multiplier of the learned channel adapters
    batch_size: int | None = None  # None = train.batch_size (FastSegFormer KD: 6)
    freeze_epochs: int | None = None  # None = train.freeze_epochs (FastSegFormer KD HEAD: 0); scales with train.epochs
    normalize: bool = False  # divide each KD term by its mean raw value over the first normalize_steps steps
    normalize_steps: int = 20  #   (weights then mean relative importance: 1.0 = as large as it started)


@dataclass
class EvalConfig:
    absent: Literal["nan", "zero"] = "nan"  # absent classes: NaN (left out of means) or 0 (FastSegFormer)
    slide_stride: float = 2 / 3  # sliding window stride as a fraction of the window


@dataclass
class QuantConfig:
    """Quantisation-aware training (`segkd.engine.qat`): the student trains through the int8 graph's fake quantisers."""

    qat: bool = False  # fake-quantise from start_epoch: BN folded, convs in int8 as `segkd export --int8` runs them
    start_epoch: int | None = None  # 0-based; None = the last 20 % of the epochs, or 0 when model.weights is set
    calib_batches: int = 8  # train batches (no gradient) whose min/max set the first scales, then learned (LSQ+)
    lr_mult: float = 1.0  # lr multiplier of the learned scales and zero points (and the biases BN folding adds)
    reduce_range: bool = True  # 7-bit weights: exact on CPUs without VNNI (see `segkd.quant.fake_quant`)


@dataclass
class Config:
    name: str = ""  # run name under runs/<command>/; default = the preset's name
    exist_ok: bool = False  # reuse runs/<command>/<name> instead of name2, name3, ...
    project: str = "runs"
    resume: str | None = None  # a last.pt to continue from
    preset: str = ""  # the preset this config was resolved from
    paper: str = ""  # citation shown by `segkd presets`
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: list[dict] = field(default_factory=list)  # online train-time ops: {op: name, ...params}
    loss: list[dict] = field(default_factory=lambda: [{"name": "ce", "weight": 1.0}])
    distill: DistillConfig | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)

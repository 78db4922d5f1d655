"""Evaluation at the original image resolution, as FastSegFormer's get_miou does, with optional TTA and slide.

For every image: preprocess to the network input (letterbox or resize, `data.resize`), forward, softmax,
`restore()` the probabilities to the ORIGINAL size (crop the padding, bilinear), argmax, and add the result to
ONE confusion matrix over the whole split against the original-resolution mask.

- TTA: softmax probabilities are averaged over horizontal flips and input scales. Scale s feeds the image at
  s × input size, rounded to the model's `size_divisor`; a fixed-size model cannot do that (error).
- Slide: the image stays at its original resolution (normalised only); windows of the input size move with a
  stride of `slide_stride` × window, and overlapping probabilities are averaged.
- Labels come from the model's `predict_labels`. For the default (argmax of the logits) that is the argmax of the
  restored probabilities above; a model that computes labels another way (PP-MobileSeg's VIM) has its labels at
  the network input cropped and resized (nearest) to the original size, and TTA / slide (which average scores)
  are refused for it.

Under torch.distributed (every rank calls `evaluate_model`) the batches are dealt round-robin to the ranks and
the confusion matrices all-reduced: each image meets the same batch as in one process, so the metrics equal a
single-process evaluation exactly.

`run_eval(cfg, weights, ...)` is the whole `segkd eval` job: checkpoint -> split -> metrics -> report files. A
quantisation-aware (QAT) checkpoint loads fake-quantised, so its metrics are those of the int8 model
(metrics.json: `fake_quant: true`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import track
from torch import Tensor, nn

from segkd.config import Config, config_from_dict, config_to_dict, load_config
from segkd.config.overrides import apply_overrides, parse_overrides
from segkd.data.transforms import Preprocess, restore, restore_labels, to_batch
from segkd.engine.device import Precision, select_device, world
from segkd.engine.distributed import all_reduce_confusion
from segkd.engine.eval_report import report_files, write_eval_report
from segkd.engine.loaders import open_split, resolve_classes
from segkd.engine.metrics import ConfusionMatrix, SegMetrics
from segkd.engine.runs import make_run_dir
from segkd.errors import ConfigError, DataError
from segkd.models import build_model, labels_are_argmax, load_weights, read_checkpoint
from segkd.outputs import guard_outputs
from segkd.quant import is_qat


class Predictor:
    """Class probabilities (K×H0×W0, on `device`) at each image's original size, whole-image or sliding."""

    def __init__(self, model: nn.Module, preprocess: Preprocess, *, device: torch.device, batch_size: int = 4,
                 scales: Sequence[float] = (1.0,), flip: bool = False, slide: bool = False,
                 slide_stride: float = 2 / 3, amp: bool = False):
        self.model, self.preprocess, self.device = model, preprocess, device
        self.batch_size, self.flip, self.slide = max(1, batch_size), flip, slide
        self.scales = tuple(float(s) for s in scales) or (1.0,)
        if any(s <= 0 for s in self.scales):
            raise ConfigError(f"TTA scales must be > 0, got {list(self.scales)}")
        if not 0 < slide_stride <= 1:
            raise ConfigError(f"eval.slide_stride={slide_stride} must be in (0, 1]")
        self.slide_stride = slide_stride
        self.precision = Precision.for_device(device, amp)
        self.num_classes: int | None = None  # K, known after the first scores
        self.own_labels = not labels_are_argmax(model)
        if self.own_labels and (slide or flip or self.scales != (1.0,)):
            raise ConfigError(f"{type(model).__name__} computes its own labels (predict_labels), not scores: "
                              "TTA and slide need scores; evaluate without them")
        fixed = getattr(model, "fixed_input_size", None)
        if fixed is not None and not slide and any(s != 1.0 for s in self.scales):
            raise ConfigError(f"{type(model).__name__} only runs at {fixed[0]}×{fixed[1]} (fixed input size): "
                              f"multi-scale TTA {list(self.scales)} is impossible; use flip TTA or --slide")

    @torch.inference_mode()
    def __call__(self, images: list[np.ndarray]) -> list[Tensor]:
        """H×W×3 uint8 RGB images -> K×H×W probabilities each (TTA-averaged)."""
        if self.slide:
            return [self._slide(image) for image in images]
        total: list[Tensor | None] = [None] * len(images)
        for s in self.scales:
            pre = self.preprocess if s == 1.0 else self._scaled_preprocess(s)
            arrays, geoms = zip(*(pre(image) for image in images))
            probs = self._forward(to_batch(list(arrays)).to(self.device))  # B×K×h×w
            for i, geom in enumerate(geoms):
                p = restore(probs[i : i + 1], geom)[0]  # K×H0×W0
                total[i] = p if total[i] is None else total[i] + p
        return [t / len(self.scales) for t in total]

    @torch.inference_mode()
    def labels(self, images: list[np.ndarray]) -> list[Tensor]:
        """H×W×3 uint8 RGB images -> H×W int64 labels each, at the original size (see the module docstring)."""
        if not self.own_labels:
            return [probs.argmax(dim=0) for probs in self(images)]
        arrays, geoms = zip(*(self.preprocess(image) for image in images))
        with self.precision.autocast():
            labels = self.model.predict_labels(to_batch(list(arrays)).to(self.device))  # B×h×w
        return [torch.from_numpy(restore_labels(lab.cpu().numpy(), g)).long().to(self.device)
                for lab, g in zip(labels, geoms)]

    def _forward(self, x: Tensor) -> Tensor:
        """B×3×h×w normalised input -> B×K×h×w softmax probabilities (flip-averaged with `flip`)."""
        with self.precision.autocast():
            probs = self.model(x).float().softmax(dim=1)
            if self.flip:
                probs = (probs + self.model(x.flip(-1)).float().softmax(dim=1).flip(-1)) / 2
        self.num_classes = probs.shape[1]
        return probs

    def _scaled_preprocess(self, s: float) -> Preprocess:
        d = getattr(self.model, "size_divisor", 1)
        h, w = (max(d, round(s * side / d) * d) for side in self.preprocess.size)
        return Preprocess((h, w), self.preprocess.mode, self.preprocess.mean, self.preprocess.std,
                          self.preprocess.pad_value)

    def _slide(self, image: np.ndarray) -> Tensor:
        h0, w0 = image.shape[:2]
        total = None
        for s in self.scales:
            scaled = image if s == 1.0 else cv2.resize(image, (max(1, round(w0 * s)), max(1, round(h0 * s))),
                                                       interpolation=cv2.INTER_CUBIC)
            probs = self._slide_one(scaled)[None]  # 1×K×h×w
            probs = F.interpolate(probs, size=(h0, w0), mode="bilinear", align_corners=False)[0]
            total = probs if total is None else total + probs
        return total / len(self.scales)

    def _slide_one(self, image: np.ndarray) -> Tensor:
        """K×H×W probabilities of one image from overlapping windows of the input size."""
        (wh, ww), (h, w) = self.preprocess.size, image.shape[:2]
        canvas = np.full((max(h, wh), max(w, ww), 3), self.preprocess.pad_value, np.uint8)
        canvas[:h, :w] = image  # images smaller than a window are padded bottom/right
        x = torch.from_numpy(self.preprocess.normalize(canvas)).to(self.device)  # 3×Hp×Wp
        ys = window_starts(canvas.shape[0], wh, max(1, int(wh * self.slide_stride)))
        xs = window_starts(canvas.shape[1], ww, max(1, int(ww * self.slide_stride)))
        corners = [(y, x0) for y in ys for x0 in xs]
        acc, count = None, torch.zeros(1, *canvas.shape[:2], device=self.device)
        for i in range(0, len(corners), self.batch_size):
            chunk = corners[i : i + self.batch_size]
            probs = self._forward(torch.stack([x[:, y : y + wh, x0 : x0 + ww] for y, x0 in chunk]))  # N×K×wh×ww
            if acc is None:
                acc = torch.zeros(probs.shape[1], *canvas.shape[:2], device=self.device)
            for (y, x0), p in zip(chunk, probs):
                acc[:, y : y + wh, x0 : x0 + ww] += p
                count[:, y : y + wh, x0 : x0 + ww] += 1
        return (acc / count)[:, :h, :w]


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets covering [0, length) with `window`-long steps of `stride`; the last one ends at length."""
    n = max(length - window + stride - 1, 0) // stride + 1
    return [min(i * stride, length - window) for i in range(n)]


def evaluate_model(model: nn.Module, dataset: Any, data_cfg: Any, *, device: str | torch.device = "cpu",
                   batch_size: int = 4, tta_scales: Sequence[float] = (1.0,), flip: bool = False,
                   slide: bool = False, slide_stride: float = 2 / 3, absent: str = "nan", progress: bool = False,
                   amp: bool = False, class_names: list[str] | None = None) -> SegMetrics:
    """Metrics of `model` on every `(image, mask)` of `dataset`, at the original resolution.

    `data_cfg` is a `DataConfig` (or its dict form): input size, resize mode, mean/std, ignore index, classes.
    The model is put in eval mode for the pass and restored to its previous mode afterwards. Under
    torch.distributed every rank must call it: each runs its share of the batches, the matrix is all-reduced.
    """
    device = select_device(device) if isinstance(device, str) else device
    get = data_cfg.get if isinstance(data_cfg, dict) else lambda k: getattr(data_cfg, k)
    predictor = Predictor(model, Preprocess.from_config(data_cfg), device=device, batch_size=batch_size,
                          scales=tta_scales, flip=flip, slide=slide, slide_stride=slide_stride, amp=amp)
    n = len(dataset)
    if n == 0:
        raise DataError(f"{getattr(dataset, 'root', 'dataset')}: no images to evaluate")
    names = class_names or list(getattr(dataset, "classes", None) or []) or list(get("classes") or [])
    cm: ConfusionMatrix | None = None
    was_training = model.training
    model.eval()
    try:
        rank, world_size = world()
        starts = range(0, n, batch_size)[rank::world_size]  # whole batches per rank: as in one process
        for start in track(starts, description="eval", total=len(starts), disable=not progress,
                           console=Console(stderr=True), transient=True):
            batch = [dataset[i] for i in range(start, min(start + batch_size, n))]
            for labels, (_, mask) in zip(predictor.labels([image for image, _ in batch]), batch):
                if cm is None:  # K: the model's score channels, or the class names for a labels-only model
                    cm = ConfusionMatrix(predictor.num_classes or len(names), get("ignore_index"))
                cm.update(labels, mask)  # H×W vs the original mask
    finally:
        model.train(was_training)
    cm = all_reduce_confusion(cm, get("ignore_index"))
    return cm.compute(absent, names)


def eval_config(weights: str | Path, overrides: list[str] | None = None, preset: str | None = None) -> Config:
    """The config to evaluate with: the one stored in segkd checkpoint `weights`, or `preset` (for foreign
    weights such as a paper's release), with `key=value` overrides applied."""
    if preset is not None:
        cfg = load_config(preset, overrides)
    else:
        raw = read_checkpoint(weights)["config"]
        cfg = config_from_dict(raw, f"{weights}: ")
        if overrides:
            cfg = config_from_dict(apply_overrides(raw, parse_overrides(overrides)))
    if not cfg.name:
        cfg.name = cfg.preset or Path(weights).stem
    return cfg


def split_name(cfg: Config, split: str) -> str:
    """'train' / 'val' / 'test' mean the config's split names; anything else is a split list name."""
    return getattr(cfg.data, f"{split}_split") if split in ("train", "val", "test") else split


def run_eval(cfg: Config, weights: str | Path, *, split: str = "test", tta_scales: Sequence[float] = (1.0,),
             flip: bool = False, slide: bool = False, batch_size: int = 4,
             progress: bool = False) -> tuple[SegMetrics, Path]:
    """Evaluate `weights` (a segkd checkpoint, or any file `load_weights` maps onto `cfg.model`) on `split` of
    `cfg.data.root`; write the report to runs/eval/<name>/."""
    planned = make_run_dir(cfg.project, "eval", cfg.name, cfg.exist_ok, create=False)
    guard_outputs(report_files(planned), [weights, cfg.data.root], force=cfg.exist_ok, force_hint="exist_ok=true")
    device = select_device(cfg.train.device)
    model = load_weights(build_model(config_to_dict(cfg)["model"]), weights).to(device)
    num_classes = cfg.model.num_classes
    dataset = open_split(cfg.data, split_name(cfg, split), num_classes)
    names, _ = resolve_classes(cfg.data, dataset, num_classes)
    metrics = evaluate_model(
        model, dataset, cfg.data, device=device,
        batch_size=batch_size, tta_scales=tta_scales, flip=flip, slide=slide, slide_stride=cfg.eval.slide_stride,
        absent=cfg.eval.absent, progress=progress, amp=cfg.train.amp, class_names=names,
    )
    run_dir = make_run_dir(cfg.project, "eval", cfg.name, cfg.exist_ok)
    info = {"weights": str(weights), "data": str(cfg.data.root), "split": split_name(cfg, split),
            "images": len(dataset), "tta": {"scales": list(tta_scales), "flip": flip}, "slide": slide,
            "fake_quant": is_qat(model)}  # a QAT checkpoint: the int8 model as ONNX Runtime runs it
    write_eval_report(metrics, run_dir, info)
    return metrics, run_dir

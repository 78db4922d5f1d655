"""Images in, label maps out, from a segkd checkpoint (PyTorch) or an exported `.onnx` (ONNX Runtime).

`Predictor.load(weights)` reads everything it needs from the file: the checkpoint's config, or the ONNX
metadata. `predict(images)` runs the shared inference geometry (`segkd.data.transforms`) as the evaluator does:
letterbox or resize and normalise, one batched forward pass, softmax, probabilities cropped and resized back
to each original size, argmax.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from segkd.data.transforms import Geometry, restore
from segkd.deploy.loading import is_onnx, load_model
from segkd.deploy.meta import DeployMeta
from segkd.deploy.onnx_model import OnnxModel
from segkd.engine.device import select_device
from segkd.errors import ConfigError

Run = Callable[[np.ndarray], torch.Tensor]  # B×3×H×W float32 -> B×K×h×w scores or B×h×w labels


def pick_device(spec: str = "auto") -> torch.device:
    """`--device` (auto | cpu | cuda | cuda:N) as a torch device."""
    try:
        return select_device(spec)
    except ConfigError as e:
        raise ConfigError(str(e).replace("train.device", "--device")) from None


class Predictor:
    def __init__(self, run: Run, meta: DeployMeta, name: str, backend: str, device: torch.device,
                 foreign: bool = False):
        self.run = run
        self.meta = meta
        self.name = name
        self.backend = backend  # "torch" | "onnxruntime (CPUExecutionProvider)" ...
        self.device = device
        self.foreign = foreign  # an ONNX file without segkd metadata (normalisation assumed or given)
        self.preprocess = meta.preprocess()

    @classmethod
    def load(cls, weights: str | Path, device: str = "auto", threads: int | None = None,
             norm: tuple[list[float] | None, list[float] | None] = (None, None)) -> "Predictor":
        """From a segkd checkpoint or an exported ONNX file; `norm` (mean, std) for an ONNX file segkd did not
        export (its own metadata wins otherwise)."""
        dev = pick_device(device)
        if is_onnx(weights):
            onnx_model = OnnxModel(weights, dev, threads)
            run = lambda x: torch.from_numpy(onnx_model(x))  # noqa: E731
            backend = f"onnxruntime ({onnx_model.providers[0]})"
            meta = onnx_model.meta
            if onnx_model.foreign:
                mean, std = norm
                meta = meta.replace(mean=mean or meta.mean, std=std or meta.std)
            return cls(run, meta, Path(weights).stem, backend, dev, onnx_model.foreign)
        loaded = load_model(weights)
        model = loaded.model.to(dev)

        @torch.inference_mode()
        def run(x: np.ndarray) -> torch.Tensor:
            return model(torch.from_numpy(x).to(dev))

        return cls(run, loaded.meta, loaded.name, "torch", dev)

    @property
    def classes(self) -> list[str]:
        return self.meta.classes

    @property
    def palette(self) -> list[list[int]]:
        return self.meta.palette

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """H×W×3 uint8 RGB images (any sizes) -> H×W class indices at each image's own size."""
        arrays, geoms = zip(*(self.preprocess(im) for im in images))
        out = self.run(np.stack(arrays))  # B×K×h×w or B×h×w
        dtype = np.uint8 if self.meta.num_classes <= 256 else np.int32
        if self.meta.output == "labels":
            return [restore_labels(out[i].cpu().numpy(), g).astype(dtype) for i, g in enumerate(geoms)]
        probs = out.float().softmax(1)  # as the evaluator: softmax, restore, argmax
        return [restore(probs[i : i + 1], g).argmax(1)[0].cpu().numpy().astype(dtype) for i, g in enumerate(geoms)]


def restore_labels(labels: np.ndarray, geom: Geometry) -> np.ndarray:
    """h×w labels at the network input -> H0×W0 (crop the letterbox padding, nearest-neighbour resize)."""
    top, left, nh, nw = geom.box
    crop = np.ascontiguousarray(labels[top : top + nh, left : left + nw]).astype(np.int32)
    h0, w0 = geom.orig_hw
    return cv2.resize(crop, (w0, h0), interpolation=cv2.INTER_NEAREST)

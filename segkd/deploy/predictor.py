"""Images in, label maps out, from a segkd checkpoint (PyTorch) or an exported `.onnx` (ONNX Runtime).

`Predictor.load(weights)` reads everything it needs from the file: the checkpoint's config, or the ONNX
metadata. `predict(images)` runs the shared inference geometry (`segkd.data.transforms`) as the evaluator does:
letterbox or resize and normalise, one batched forward pass, softmax, probabilities cropped and resized back
to each original size, argmax. Labels come from the model's `predict_labels`: for the default (argmax of the
logits) the scores are resized before the argmax as above; a model that computes its labels another way, and
an ONNX file exported with `--argmax`, give labels that are cropped and resized (nearest) as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from segkd.data.transforms import restore, restore_labels
from segkd.deploy.loading import is_onnx, load_model
from segkd.deploy.meta import DeployMeta
from segkd.deploy.onnx_model import OnnxModel
from segkd.engine.device import select_device
from segkd.errors import ConfigError
from segkd.models.inference import labels_are_argmax

Run = Callable[[np.ndarray], torch.Tensor]  # B×3×H×W float32 -> B×K×h×w scores or B×h×w labels


def pick_device(spec: str = "auto") -> torch.device:
    """`--device` (auto | cpu | cuda | cuda:N) as a torch device."""
    try:
        return select_device(spec)
    except ConfigError as e:
        raise ConfigError(str(e).replace("train.device", "--device")) from None


class Predictor:
    def __init__(self, run: Run, meta: DeployMeta, name: str, backend: str, device: torch.device,
                 foreign: bool = False, outputs_labels: bool = False):
        self.run = run
        self.meta = meta
        self.outputs_labels = outputs_labels or meta.output == "labels"  # B×h×w labels instead of B×K×h×w scores
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
        labels = not labels_are_argmax(model)
        forward = model.predict_labels if labels else model

        @torch.inference_mode()
        def run(x: np.ndarray) -> torch.Tensor:
            return forward(torch.from_numpy(x).to(dev))

        return cls(run, loaded.meta, loaded.name, "torch", dev, outputs_labels=labels)

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
        if self.outputs_labels:
            return [restore_labels(out[i].cpu().numpy(), g).astype(dtype) for i, g in enumerate(geoms)]
        probs = out.float().softmax(1)  # as the evaluator: softmax, restore, argmax
        return [restore(probs[i : i + 1], g).argmax(1)[0].cpu().numpy().astype(dtype) for i, g in enumerate(geoms)]


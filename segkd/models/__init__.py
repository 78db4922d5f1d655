"""segkd models: a registry of families behind one contract (see `segkd.models.base`).

Importing this package registers every family; `create_model(name, num_classes=K, **options)` builds one.
"""

from segkd.models import efficientdet_seg, fastsegformer, segformer, swin_att_unet  # noqa: F401  (registers the families)
from segkd.models.base import SegmentationModel
from segkd.models.builder import build_model_with_cfg
from segkd.models.checkpoint import (
    build_model,
    checkpoint_payload,
    is_segkd_checkpoint,
    load_checkpoint,
    load_weights,
    read_checkpoint,
)
from segkd.models.inference import labels_are_argmax
from segkd.models.registry import create_model, list_models, model_family, register_model

__all__ = [
    "SegmentationModel", "build_model", "build_model_with_cfg", "checkpoint_payload", "create_model",
    "is_segkd_checkpoint", "labels_are_argmax", "list_models", "load_checkpoint", "load_weights", "model_family",
    "read_checkpoint", "register_model",
]

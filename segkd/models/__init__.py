"""segkd models: a registry of families behind one contract (see `segkd.models.base`).

Importing this package registers every family; `create_model(name, num_classes=K, **options)` builds one.
"""

# importing the family modules registers them
from segkd.models import (  # noqa: F401
    efficientdet_seg, fastsegformer, lraspp, pp_mobileseg, segformer, swin_att_unet,
)
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

"""Segmentation and KD losses, all built from YAML by name (`build_loss`)."""

from segkd.losses import ce, dice, focal, kd, lovasz, soft_iou  # noqa: F401  (registers the losses)
from segkd.losses.registry import build_loss, list_losses, loss_class, register_loss

__all__ = ["build_loss", "list_losses", "loss_class", "register_loss"]

"""segkd: real-time semantic segmentation with knowledge distillation."""

__version__ = "0.1.0"

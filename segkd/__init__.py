"""segkd: real-time semantic segmentation with knowledge distillation.

`segkd.colorize(labels, palette=None)` and `segkd.blend(image, colorized, alpha=0.5)` draw predictions (fastseg's
API; `model.predict(images)` gives the labels, see `segkd.models`).
"""

__version__ = "0.1.0"

from segkd.deploy.visualize import blend, colorize  # noqa: E402  (after __version__, which checkpoints import)

__all__ = ["__version__", "blend", "colorize"]

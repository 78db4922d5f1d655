"""Knowledge-distillation losses: each a registered `KDLoss` on (student, teacher) tap pairs.

Importing this package registers: pkl, nfd (FastSegFormer), kl, cwd, at, fitnet, sekd_align, sekd_masked,
sekd_context, sekd_texture (SEKD), dist (DIST), cirkd (CIRKD), bpkd (BPKD); `kl` and `pkl` take
`standardize: true` (logit standardisation). Adapters that bring a student tap to the teacher's width are built from tap
shapes by `segkd.losses.kd.adapters.build_adapter` (through `KDLoss.build_adapter`).
"""

from segkd.losses.kd import (  # noqa: F401  (registers the losses)
    at, bpkd, cirkd, cwd, dist, fitnet, logit_kl, nfd, pkl, sekd_feature, sekd_texture,
)
from segkd.losses.kd.adapters import CBAM, FeatureEnhancement, build_adapter
from segkd.losses.kd.base import KDLoss, check_finite

__all__ = ["CBAM", "FeatureEnhancement", "KDLoss", "build_adapter", "check_finite"]

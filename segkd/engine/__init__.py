"""The engine: one training loop for train and distill, evaluation, metrics, checkpoints.

Submodules load on first use (`segkd.lazy`): commands reach `engine.trainer`, `engine.evaluator`, ... as attributes
once their options and config are valid, so PyTorch is imported only then.
"""

from segkd.lazy import submodules_on_demand

__getattr__ = submodules_on_demand(__name__)

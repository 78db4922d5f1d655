"""The `segkd` CLI with the engine tests' tiny models registered, run as a script by torchrun in
test_distributed.py (each worker is a fresh interpreter, so the models must register there too).

Test hooks, from the environment (read in every worker):
- SEGKD_TEST_FAIL_RANK=r: rank r raises a JobFailed after its first training batch (of epoch
  SEGKD_TEST_FAIL_EPOCH, default 1).
- SEGKD_TEST_GRADS_DIR=dir: before the first optimizer step, each rank saves its KD adapters' gradients
  to dir/rank<r>.pt.
"""

import importlib.util
import os
import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent
for name, file in (("engine_conftest", "conftest.py"), ("engine_test_distill", "test_distill.py")):
    if name not in sys.modules:  # registers tiny_seg, kd_tiny_student, kd_tiny_teacher
        spec = importlib.util.spec_from_file_location(name, HERE / file)
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

from segkd.engine import trainer as engine  # noqa: E402
from segkd.errors import JobFailed  # noqa: E402

RANK = int(os.environ.get("RANK", "0"))

if os.environ.get("SEGKD_TEST_FAIL_RANK") == str(RANK):
    def fail(trainer):
        if trainer.epoch + 1 == int(os.environ.get("SEGKD_TEST_FAIL_EPOCH", "1")):
            raise JobFailed(f"injected failure on rank {RANK}")

    init = engine.Trainer.__init__

    def init_with_failure(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.add_callback("on_train_batch_end", fail)

    engine.Trainer.__init__ = init_with_failure

if os.environ.get("SEGKD_TEST_GRADS_DIR"):
    step = engine.Trainer.optimizer_step

    def step_saving_grads(self, *args, **kwargs):
        if self.global_step == 0:
            grads = {k: p.grad.detach().clone() for k, p in self.distiller.adapters.named_parameters()}
            torch.save(grads, Path(os.environ["SEGKD_TEST_GRADS_DIR"]) / f"rank{RANK}.pt")
        step(self, *args, **kwargs)

    engine.Trainer.optimizer_step = step_saving_grads

if __name__ == "__main__":
    from segkd.cli import app

    app(sys.argv[1:], prog_name="segkd")

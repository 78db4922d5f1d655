"""The one training loop, for `segkd train` and `segkd distill`.

```python
summary = train(load_config("fastsegformer-p", ["data.root=data/oranges", "train.epochs=10"]))
```
`Trainer(cfg, command="train", distiller=None)` owns the loop, AMP, gradient accumulation and clipping, EMA,
backbone freezing, validation (`evaluate_model`, so `segkd eval best.pt` reproduces results.csv), checkpoints
and results; `train.time` ends it at a wall-clock budget (`segkd.engine.time_budget`). Extra behaviour hangs on
named events (`add_callback`, see `segkd.engine.callbacks`).

Distillation is this loop plus a distiller (`segkd.engine.distill.Distiller`, teacher frozen inside; see
`segkd.engine.distiller_hooks.DistillerHooks`):
- `distiller.train_input_size` (H, W): the size the train loader produces (the teacher's, for multi-resolution
  KD); labels come at that size and the hard-label losses upsample the student's logits to it.
- `distiller.student_input(images)`: the student's input (resized when the sizes differ).
- `distiller.student_module(student)`: the student and the adapters as one module whose forward gives
  (logits, adapted taps); this is what trains, and what DDP wraps.
- `distiller(images, adapted, masks) -> {term: tensor}`: already-weighted KD terms, added to the loss and logged
  as results.csv columns.
- `distiller.adapters`: trainable modules, one optimizer group at lr × distill.adapter_lr_mult, saved in last.pt.
The distiller keeps its teacher in eval mode itself; best.pt holds the student only.

Under torchrun (`segkd.engine.distributed`) every rank runs this loop on its shard of each epoch (batch size is
per process), DDP averages the gradients, validation is sharded with one all-reduced confusion matrix, the
loss averages are reduced, and only rank 0 writes files (`segkd.engine.run_writer.RunWriter`).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from rich.console import Console
from torch import Tensor, nn

from segkd.config import Config, config_to_dict, size_hw
from segkd.engine.callbacks import add_callback, new_callbacks, run_callbacks
from segkd.engine.checkpointing import read_unfinished_run, seed_everything, set_rng_state, training_state
from segkd.engine.device import Precision, is_main_process, world
from segkd.engine.distributed import (any_rank, convert_sync_bn, init_distributed, reduce_mean,
                                     silence_echoed_failures, sync_replicas, wrap_ddp)
from segkd.engine.distiller_hooks import DistillerHooks
from segkd.engine.divergence import DivergenceGuard, first_nonfinite
from segkd.engine.ema import ModelEMA
from segkd.engine.evaluator import evaluate_model
from segkd.engine.interrupt import StopRequest
from segkd.engine.loaders import build_run_loader, open_run_splits, worker_errors
from segkd.engine.metrics import SegMetrics
from segkd.engine.optim import ParamGroupSpec, build_optimizer, model_param_groups, trainable_parameters
from segkd.engine.plan import RunPlan
from segkd.engine.progress import EpochProgress, epoch_line
from segkd.engine.qat import attach_qat
from segkd.engine.run_writer import RunWriter
from segkd.engine.schedulers import LRSchedule, Scheduler
from segkd.engine.time_budget import TimeBudget, WallClock
from segkd.errors import Interrupted, JobFailed
from segkd.losses import build_loss
from segkd.models import build_model, checkpoint_payload, load_weights


class Trainer:
    """Train `cfg.model` on `cfg.data` (optionally distilling through `distiller`); `train()` runs it."""

    def __init__(self, cfg: Config, command: str = "train", distiller: DistillerHooks | None = None, *,
                 progress: bool = False, console: Console | None = None):
        self.cfg = copy.deepcopy(cfg)
        self.command = command
        self.distiller = distiller
        self.progress, self.console = progress, console
        self.callbacks = new_callbacks()
        self.main = is_main_process()
        self.epoch = 0  # 0-based index of the running epoch
        self.start_epoch = 0
        self.global_step = 0  # optimizer steps so far
        self.best_fitness: float | None = None  # best val mIoU
        self.best_epoch: int | None = None
        self.batch_losses: dict[str, float] = {}
        self.metrics: SegMetrics | None = None
        self.results: dict[str, Any] = {}  # the last results.csv row
        self.summary: dict[str, Any] = {}
        self.writer = RunWriter(self.cfg, command, self.run_inputs(), self.main, self.log)
        self.resume_rng: dict | None = None
        self.ema: ModelEMA | None = None  # built in setup() when train.ema is on
        self.images_per_second: float | None = None  # train throughput of the last epoch
        self.resume_step = 0  # batches of `start_epoch` already done (a run stopped by Ctrl-C mid-epoch)
        self.resume_sums: dict[str, float] = {}
        self.clock = WallClock()  # training seconds, across resumes (train.time)
        if self.cfg.train.time is not None:
            TimeBudget(self.cfg.train.time).attach(self)
        self.stop = StopRequest(lambda: self.log("[yellow]interrupt:[/] saving last.pt at the end of this step "
                                                 "(Ctrl-C again to quit at once)"))
        if self.cfg.quant.qat:
            attach_qat(self)  # quantisation-aware from quant.start_epoch (segkd.engine.qat)

    # -- events ---------------------------------------------------------------------------------------
    def add_callback(self, event: str, fn: Callable[["Trainer"], None]) -> None:
        add_callback(self.callbacks, event, fn)

    def run_callbacks(self, event: str) -> None:
        run_callbacks(self.callbacks, event, self)

    def log(self, message: str) -> None:
        if self.console is not None and self.main:
            self.console.print(message, soft_wrap=True)  # one line per message: logs stay greppable

    # -- setup ----------------------------------------------------------------------------------------
    @property
    def distilling(self) -> bool:
        return self.distiller is not None

    def _kd_or_train(self, key: str) -> Any:
        """distill.<key> when distilling and set, else train.<key> (batch_size, freeze_epochs)."""
        kd = self.cfg.distill
        value = getattr(kd, key) if self.distilling and kd is not None else None
        return getattr(self.cfg.train, key) if value is None else value

    def setup(self) -> None:
        """Data, model, losses, optimizer, schedule, EMA, resume state, run folder."""
        cfg, tcfg = self.cfg, self.cfg.train
        resume = read_unfinished_run(cfg.resume, tcfg.epochs, tcfg.time) if cfg.resume else None
        if resume is None and self.main:
            self.writer.guard()  # before any work: the data scan's cache is the first write
        self.device = init_distributed(tcfg.device)  # this rank's device; the process group under torchrun
        self.precision = Precision.for_device(self.device, tcfg.amp)
        seed_everything(tcfg.seed)

        self.train_set, self.val_set = open_run_splits(cfg, lambda msg: self.log(f"[yellow]warning:[/] {msg}"))

        self.model = build_model(config_to_dict(cfg)["model"], init_backbone=resume is None)
        if cfg.model.weights and resume is None:
            load_weights(self.model, cfg.model.weights)
        if tcfg.sync_bn:
            self.model = convert_sync_bn(self.model, self.device)
        self.memory_format = torch.channels_last if tcfg.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=self.memory_format)
        self.losses = [
            build_loss(spec, f"loss[{i}]", defaults={"ignore_index": cfg.data.ignore_index})
            for i, spec in enumerate(cfg.loss)
        ]
        for _, _, module in self.losses:
            module.to(self.device)
        if self.distiller is not None:
            self.distiller.to(self.device)

        self.batch_size = self._kd_or_train("batch_size")
        self.input_size = tuple(self.distiller.train_input_size) if self.distilling else size_hw(cfg.data.input_size)
        self.train_loader = build_run_loader(cfg, self.train_set, self.input_size, self.batch_size, self.device)

        groups = model_param_groups(self.model, tcfg.backbone_lr_mult, tcfg.head_lr_mult)
        if self.distiller is not None:
            adapters = [p for p in self.distiller.adapters.parameters()]
            if adapters:
                groups.append(ParamGroupSpec("adapters", adapters, cfg.distill.adapter_lr_mult))
        self.optimizer = build_optimizer(groups, tcfg)
        self.steps_per_epoch = math.ceil(len(self.train_loader) / tcfg.accumulate)
        self.scheduler = Scheduler(self.optimizer, LRSchedule.from_config(tcfg, self.steps_per_epoch),
                                   per_iter=tcfg.sched_step == "iter")
        self.replan()
        self.scaler = self.precision.grad_scaler()
        self.ema = ModelEMA(self.model, self.plan.run_ema_decay) if tcfg.ema else None

        if resume is not None:
            self._load_resume_state(resume)
        trainable = self.distiller.student_module(self.model) if self.distiller is not None else self.model
        self.train_module = wrap_ddp(trainable, self.device, static_graph=self.freeze_epochs == 0)
        self.writer.open(self.start_epoch if resume is not None else None)
        self.divergence = DivergenceGuard(tcfg.nan_patience, lambda msg: self.log(f"[yellow]warning:[/] {msg}"),
                                          advice=f"lower train.lr (resume={self.save_dir}/weights/last.pt "
                                                 "train.lr=X), set train.clip_grad, or check the labels")

    def replan(self) -> None:
        """The lr schedule, plan and frozen epochs for `cfg.train.epochs` (again when `train.time` changes it)."""
        self.scheduler.schedule = LRSchedule.from_config(self.cfg.train, self.steps_per_epoch)
        self.plan = RunPlan.from_config(self.cfg, self.scheduler.schedule, self.steps_per_epoch,
                                        self._kd_or_train("freeze_epochs"))
        self.freeze_epochs = self.plan.freeze_epochs  # 0 for a random backbone
        if self.ema is not None:
            self.ema.decay = self.plan.run_ema_decay  # its horizon follows the run's new length

    def _load_resume_state(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt.get("train_model", ckpt["model"]))
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"], ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.distiller is not None:
            self.distiller.adapters.load_state_dict(ckpt["distiller"])
        self.start_epoch, self.global_step = int(ckpt["epoch"]), int(ckpt["global_step"])
        self.best_fitness, self.best_epoch = ckpt["best_fitness"], ckpt.get("best_epoch")
        self.resume_rng, self.clock.before = ckpt["rng"], float(ckpt.get("train_seconds", 0.0))
        self.resume_step, self.resume_sums = int(ckpt.get("epoch_step", 0)), dict(ckpt.get("epoch_sums", {}))
        saved_lr = ckpt["config"]["train"]["lr"]
        if saved_lr != self.cfg.train.lr:
            self.log(f"note: train.lr changes from {saved_lr:g} to {self.cfg.train.lr:g} on resume "
                     "(the schedule continues from the same step with the new base lr)")

    def run_inputs(self) -> list[str | None]:
        """What a run reads: the data root and every weights file."""
        cfg = self.cfg
        teacher = cfg.distill.teacher.weights if self.distilling and cfg.distill is not None else None
        return [cfg.data.root, cfg.model.weights, cfg.model.backbone_weights, teacher]

    @property
    def save_dir(self) -> Path | None:
        return self.writer.save_dir

    @property
    def weights_dir(self) -> Path | None:
        return self.writer.weights_dir

    # -- the loop -------------------------------------------------------------------------------------
    @silence_echoed_failures
    def train(self) -> dict[str, Any]:
        """Run every remaining epoch; returns the summary (best mIoU and epoch, paths).

        A run that fails before it saved anything removes the run folder it made (no empty runs/train/x2/)."""
        try:
            return self._train()
        except BaseException:
            self.writer.remove_if_unused()
            raise

    def _train(self) -> dict[str, Any]:
        self.setup()
        if self.resume_rng is not None:
            set_rng_state(self.resume_rng)
            self.log(f"resuming {self.save_dir} from epoch {self.start_epoch + 1}/{self.cfg.train.epochs}")
        self.log(self.describe())
        for line in (self.plan.line(), *self.plan.messages()):
            self.log(line)
        self.run_callbacks("on_train_start")
        t0 = time.perf_counter()
        self.clock.start()
        with self.stop:
            epoch = self.start_epoch
            while epoch < self.cfg.train.epochs:  # train.time moves the end after every epoch
                self.epoch = epoch
                start = time.perf_counter()
                losses = self.train_epoch(epoch)
                self.run_callbacks("on_train_epoch_end")
                self._check_weights(f"epoch {epoch + 1}")
                final = epoch + 1 == self.cfg.train.epochs
                self.metrics = self.validate() if final or (epoch + 1) % self.cfg.train.val_interval == 0 else None
                self._end_epoch(epoch, losses, time.perf_counter() - start)
                if not final and any_rank(self.stop.requested):
                    self._interrupted(f"after epoch {epoch + 1}")
                epoch += 1
        self.summary = self._summary(time.perf_counter() - t0)
        self.writer.close()
        self.run_callbacks("on_train_end")
        return self.summary

    def describe(self) -> str:
        """One line: model, device, precision, data, batches, run folder."""
        params = sum(p.numel() for p in self.model.parameters()) / 1e6
        h, w = self.input_size
        n = world()[1]
        batch = f"batch {self.batch_size}" if n == 1 else (
            f"batch {self.batch_size} per process × {n} processes = {self.batch_size * n} global "
            f"(lr {self.cfg.train.lr:g} not scaled{', SyncBatchNorm' if self.cfg.train.sync_bn else ''})")
        return (f"{self.command} {self.cfg.model.arch} ({params:.2f}M params) on {self.device} {self.precision.name}: "
                f"{len(self.train_set)} train / {len(self.val_set)} val images at {h}×{w}, {batch}, "
                f"{len(self.train_loader)} batches/epoch{' per process' if n > 1 else ''} -> {self.save_dir}")

    def _set_backbone_frozen(self, epoch: int) -> None:
        if self.freeze_epochs > 0 and hasattr(self.model, "freeze_backbone"):
            self.model.freeze_backbone() if epoch < self.freeze_epochs else self.model.unfreeze_backbone()

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the train loader; returns the mean of each loss term and `loss` (their sum)."""
        tcfg = self.cfg.train
        self.model.train()
        self._set_backbone_frozen(epoch)
        self.train_loader.sampler.set_epoch(epoch)
        if not self.scheduler.per_iter:
            self.scheduler.set(epoch)
        self.run_callbacks("on_train_epoch_start")
        first = self.resume_step if epoch == self.start_epoch else 0  # batches done before a Ctrl-C
        sums: dict[str, float] = dict(self.resume_sums) if first else {}
        good, pending = first, 0  # batches whose loss went into `sums`; backward passes since the last step
        n_batches = len(self.train_loader)
        self.train_loader.sampler.skip = first * self.batch_size
        self.optimizer.zero_grad(set_to_none=True)
        title = f"{self.command} {epoch + 1}/{tcfg.epochs}"
        with EpochProgress(self.console if self.main else None, self.progress, title, n_batches) as bar, \
                worker_errors():
            for i, (images, masks) in enumerate(self.train_loader, start=first):
                images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)  # B×3×H×W
                masks = masks.to(self.device, non_blocking=True)  # B×H×W
                with self.precision.autocast():
                    terms = self.loss_terms(images, masks)
                total = torch.stack([t.float() for t in terms.values()]).sum()
                self.batch_losses = self._values(terms, total)
                bad = self.divergence.bad_loss(self.batch_losses)
                if any_rank(bool(bad)):  # every rank skips the same step (DDP)
                    bad = bad or "a loss term on another rank is not finite"
                    self.divergence.skip(bad, f"epoch {epoch + 1}, iteration {i + 1}")
                else:
                    self.scaler.scale(total / tcfg.accumulate).backward()
                    good, pending = good + 1, pending + 1
                    for k, v in self.batch_losses.items():
                        sums[k] = sums.get(k, 0.0) + v
                boundary = (i + 1) % tcfg.accumulate == 0 or i + 1 == n_batches
                if boundary and pending:
                    self.optimizer_step(f"epoch {epoch + 1}, iteration {i + 1}")
                    pending = 0
                if boundary and i + 1 < n_batches and any_rank(self.stop.requested):
                    self._interrupted(f"at epoch {epoch + 1}, iteration {i + 1}", step=i + 1, sums=sums)
                bar.update(images.shape[0], {k: v / max(good, 1) for k, v in sums.items()}, self.scheduler.lr)
                self.run_callbacks("on_train_batch_end")
        self.images_per_second = bar.images_per_second
        self.resume_step, self.resume_sums = 0, {}
        return reduce_mean({k: v / max(good, 1) for k, v in sums.items()})  # averaged over the ranks too

    def loss_terms(self, images: Tensor, masks: Tensor) -> dict[str, Tensor]:
        """Weighted loss terms of one batch: the hard-label losses, then (distilling) the KD terms."""
        if self.distiller is None:
            logits = self.train_module(images)  # B×K×H×W
        else:
            logits, adapted = self.train_module(self.distiller.student_input(images))
        terms = {name: weight * loss(logits, masks) for name, weight, loss in self.losses}
        if self.distiller is not None:
            terms.update(self.distiller(images, adapted, masks))
        return terms

    @staticmethod
    def _values(terms: dict[str, Tensor], total: Tensor) -> dict[str, float]:
        """Detached float values of every term plus `loss` (their sum)."""
        values = torch.stack([t.detach().float() for t in terms.values()] + [total.detach()]).cpu().tolist()
        return dict(zip([*terms, "loss"], values))

    def optimizer_step(self, where: str = "") -> None:
        """lr for this step, unscale + clip, gradient check (a non-finite step is skipped), step, EMA update."""
        if self.scheduler.per_iter:
            self.scheduler.set(self.global_step)
        norm = None
        if self.cfg.train.clip_grad:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(trainable_parameters(self.optimizer), self.cfg.train.clip_grad)
        bad = None if self.precision.scaled else self.divergence.bad_grads(trainable_parameters(self.optimizer), norm)
        if bad:
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            self.divergence.skip(bad, where)
            return
        self.divergence.ok()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.global_step += 1

    @property
    def eval_model(self) -> nn.Module:
        """The weights validation and best.pt use: the EMA copy when train.ema is on."""
        return self.ema.module if self.ema is not None else self.model

    def validate(self) -> SegMetrics:
        """Metrics of `eval_model` on the val split (sharded across ranks: rank 0's weights, one matrix)."""
        cfg = self.cfg
        sync_replicas(self.eval_model)
        return evaluate_model(
            self.eval_model, self.val_set, cfg.data, device=self.device, batch_size=self.batch_size,
            absent=cfg.eval.absent, progress=self.progress and self.main, amp=cfg.train.amp,
            class_names=cfg.data.classes,
        )

    # -- after each epoch -----------------------------------------------------------------------------
    def _end_epoch(self, epoch: int, losses: dict[str, float], seconds: float) -> None:
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": self.scheduler.lr}
        row |= {f"train/{k}": v for k, v in losses.items() if k != "loss"}
        row["train/loss"] = losses.get("loss")
        improved = False
        if self.metrics is not None:
            row |= {f"val/{k}": v for k, v in self.metrics.summary().items()}
            fitness = self.metrics.mIoU
            improved = math.isfinite(fitness) and (self.best_fitness is None or fitness > self.best_fitness)
            if improved:
                self.best_fitness, self.best_epoch = fitness, epoch + 1
        row |= {"time": seconds, "elapsed": self.clock.elapsed()}
        self.results = row
        if self.main:
            self.writer.write_epoch(row, lambda training: self._payload(epoch + 1, training, row["elapsed"]), improved)
            self.log(epoch_line(row, self.cfg.train.epochs, improved))
            self.run_callbacks("on_model_save")
        self.run_callbacks("on_fit_epoch_end")

    def _check_weights(self, when: str) -> None:
        """Fail (keeping the saved checkpoints) when a weight of the model or its EMA copy is not finite."""
        for label, module in (("model", self.model), ("EMA model", self.eval_model)):
            name = first_nonfinite(module)
            if name is not None:
                kept = f"{self.weights_dir} keeps epoch {self.epoch}" if self.epoch else "nothing was saved yet"
                raise JobFailed(f"{label} weight '{name}' is not finite {when}: not saved ({kept}); "
                                f"{self.divergence.advice}")

    def _interrupted(self, where: str, step: int = 0, sums: dict[str, float] | None = None) -> None:
        """Save last.pt mid-epoch (Ctrl-C), then stop with the exact resume command (exit 130)."""
        last = self.weights_dir / "last.pt"
        if step:
            self._check_weights(where)
            self.writer.save_last(self._payload(self.epoch, training=True, epoch_step=step,
                                                epoch_sums=dict(sums or {})))
        raise Interrupted(f"interrupted {where}: saved {last}; resume with: segkd {self.command} resume={last}")

    def _payload(self, epochs_done: int, training: bool = False, train_seconds: float | None = None,
                 **extra: Any) -> dict[str, Any]:
        """A checkpoint of the eval model; `training=True` adds what last.pt needs to resume. `train_seconds`
        (train.time's clock) is the epoch's results.csv `elapsed`, or now for a save mid-epoch."""
        config = config_to_dict(self.cfg) | {"resume": None}
        common = {"epoch": epochs_done, "best_fitness": self.best_fitness, "best_epoch": self.best_epoch,
                  "train_seconds": self.clock.elapsed() if train_seconds is None else train_seconds,
                  "metrics": self.metrics.summary() if self.metrics is not None else None}
        if training:
            common |= training_state(self.optimizer, self.scheduler, self.scaler, self.global_step, ema=self.ema,
                                     model=self.model, adapters=self.distiller.adapters if self.distilling else None)
        return checkpoint_payload(self.eval_model, config, **common, **extra)

    def _summary(self, seconds: float) -> dict[str, Any]:
        weights = self.save_dir / "weights" if self.save_dir is not None else None
        return {
            "command": self.command,
            "save_dir": str(self.save_dir) if self.save_dir else None,
            "best": str(weights / "best.pt") if weights and self.best_epoch else None,
            "last": str(weights / "last.pt") if weights else None,
            "results": str(self.save_dir / "results.csv") if self.save_dir else None,
            "epochs": self.cfg.train.epochs,
            "best_epoch": self.best_epoch,
            "best_miou": self.best_fitness,
            "final": dict(self.results),
            "classes": list(self.cfg.data.classes),
            "device": str(self.device),
            "precision": self.precision.name,
            "train_img_s": self.images_per_second,
            "time_s": seconds,
        }


def train(cfg: Config, *, distiller: DistillerHooks | None = None, progress: bool = False,
          console: Console | None = None, callbacks: dict[str, list[Callable]] | None = None) -> dict[str, Any]:
    """Train (or, with `distiller`, distill) as `cfg` says; returns the run summary."""
    trainer = Trainer(cfg, "distill" if distiller is not None else "train", distiller,
                      progress=progress, console=console)
    for event, fns in (callbacks or {}).items():
        for fn in fns:
            trainer.add_callback(event, fn)
    return trainer.train()

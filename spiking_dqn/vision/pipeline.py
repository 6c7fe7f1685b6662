"""Vision pipeline: train the ANN, convert it, run IIR down to the target latency, optionally prune; one run dir.

Run directory: config.yaml, ann.pt, stage_T<t>.pt per finished stage (pruned.pt), tb/ (TensorBoard),
results.json / results.md / results.png. Evaluation "trials" are the test set split into `trials` equal
shards in its fixed order: score = mean ± std (population) of the shards' top-1 accuracy in %.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from spiking_dqn.config import load_preset, merge
from spiking_dqn.convert import convert, fuse_bn
from spiking_dqn.iir import Stage, parse_schedule, run_stages, stages_to
from spiking_dqn.network import SpikingNetwork, TimeDropout, clamp_after_step, recording
from spiking_dqn.report import Row, ann_row, atomic_save, atomic_write, snn_row, write_results
from spiking_dqn.vision.data import ImageData, load_dataset
from spiking_dqn.vision.models import ARCHS, build_model

log = logging.getLogger("spiking_dqn")
DEFAULTS: dict = load_preset("vision")


def resolve(cfg: dict) -> dict:
    """The full config (DEFAULTS overridden by cfg), validated; ValueError on bad user input."""
    full = merge(DEFAULTS, cfg)
    if full["dataset"] not in full["data"]:
        raise ValueError(f"unknown dataset {full['dataset']!r}; choose one of {', '.join(full['data'])}")
    if full["arch"] not in ARCHS:
        raise ValueError(f"unknown arch {full['arch']!r}; choose one of {', '.join(ARCHS)}")
    full["schedule"] = parse_schedule(full["schedule"])
    stages_to(full["schedule"], int(full["timesteps"]))
    if not 0.0 <= float(full["prune"]["fraction"]) < 1.0:
        raise ValueError(f"prune.fraction must be in [0, 1), got {full['prune']['fraction']}")
    return full


class Session:
    """Device, distributed rank and TensorBoard writer of one run."""

    def __init__(self, device: str, out_dir: Path) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1:
            torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"
        elif device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.writer = None
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tb"))

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model as trained: DistributedDataParallel under torchrun, else itself."""
        if self.world == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def loader(self, ds: Dataset, batch_size: int, workers: int) -> DataLoader:
        """Shuffled training batches (a DistributedSampler shard per rank under torchrun)."""
        sampler = DistributedSampler(ds) if self.world > 1 else None
        return DataLoader(ds, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                          num_workers=workers, drop_last=len(ds) >= batch_size * self.world)

    @torch.no_grad()
    def sync(self, model: nn.Module) -> None:
        """Copy rank 0's parameters and buffers (batch-norm statistics) to every rank (no-op on one process)."""
        if self.world > 1:
            for tensor in model.state_dict().values():
                torch.distributed.broadcast(tensor, 0)

    def barrier(self) -> None:
        """Wait for every rank (no-op on one process)."""
        if self.world > 1:
            torch.distributed.barrier()

    def log(self, tag: str, value: float, step: int) -> None:
        """Scalar to TensorBoard (rank 0)."""
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        """Flush logs and leave the process group."""
        if self.writer is not None:
            self.writer.close()
        if self.world > 1:
            torch.distributed.destroy_process_group()


@torch.no_grad()
def predictions_correct(model: nn.Module, ds: Dataset, batch_size: int, device: torch.device) -> torch.Tensor:
    """Boolean per test image, in dataset order: was the top-1 prediction right."""
    model.eval()
    out = [(model(x.to(device)).argmax(1).cpu() == y) for x, y in DataLoader(ds, batch_size=batch_size)]
    return torch.cat(out)


def shard_score(correct: torch.Tensor, trials: int) -> tuple[float, float]:
    """Mean and std of top-1 % over `trials` equal consecutive shards of the test set."""
    acc = [100.0 * s.float().mean().item() for s in torch.tensor_split(correct, trials) if len(s)]
    return float(np.mean(acc)), float(np.std(acc))


def fit(model: nn.Module, session: Session, ds: Dataset, epochs: int, batch_size: int, workers: int,
        optimizer: torch.optim.Optimizer, milestones: list[float], factor: float,
        on_epoch: Callable[[int, float, float], None]) -> None:
    """Cross-entropy training with the lr divided at fractions of the epochs; on_epoch(epoch, loss, acc)."""
    marks = sorted({max(1, round(m * epochs)) for m in milestones})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, marks, gamma=factor)
    loader = session.loader(ds, batch_size, workers)
    for epoch in range(epochs):
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        model.train()
        total = hits = seen = 0.0
        for x, y in loader:
            x, y = x.to(session.device), y.to(session.device)
            out = model(x)
            loss = nn.functional.cross_entropy(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            hits += (out.argmax(1) == y).sum().item()
            seen += len(y)
        scheduler.step()
        on_epoch(epoch, total / max(seen, 1), 100.0 * hits / max(seen, 1))


class Pipeline:
    """One run: data, ANN, spiking network, stage callbacks and the rows written so far."""

    def __init__(self, cfg: dict, data: ImageData, session: Session, out_dir: Path, resume: bool) -> None:
        self.cfg, self.data, self.session, self.out_dir, self.resume = cfg, data, session, out_dir, resume
        self.example = self.data.test[0][0].unsqueeze(0).to(self.session.device)
        self.rows: list[Row] = []
        self.step = 0

    def score(self, model: nn.Module) -> tuple[float, float]:
        """Top-1 mean ± std over the evaluation shards."""
        correct = predictions_correct(model, self.data.test, self.cfg["eval_batch_size"], self.session.device)
        return shard_score(correct, self.cfg["trials"])

    def checkpoint(self, name: str, payload: dict) -> None:
        """Save a checkpoint from rank 0 and wait for the other ranks."""
        if self.session.rank == 0:
            atomic_save(self.out_dir / name, lambda p: torch.save(payload, p))
        self.session.barrier()

    def publish(self) -> None:
        """Rewrite results.json / .md / .png with the rows so far (rank 0)."""
        if self.session.rank == 0:
            c = self.cfg
            write_results(self.out_dir, f"{c['dataset']}/{c['arch']}", "top1", c["trials"], c["seed"], self.rows,
                          notes=f"Trials: the {len(self.data.test)} test images split into {c['trials']} equal "
                                "shards; score = mean ± std of shard top-1 accuracy (%).")

    def ann(self) -> nn.Sequential:
        """Train the ANN (or load ann.pt when resuming) and record its row."""
        c, d = self.cfg, self.data
        model = build_model(c["arch"], d.num_classes, d.in_channels, d.image_size, c["ann"]["dropout"], c["hidden"])
        model.to(self.session.device)
        path = self.out_dir / "ann.pt"
        if self.resume and path.exists():
            state = torch.load(path, map_location=self.session.device)
            model.load_state_dict(state["model"])
            self.rows.append(Row(**state["row"]))
            return model
        a = c["ann"]
        opt = torch.optim.SGD(model.parameters(), lr=a["lr"], momentum=a["momentum"], weight_decay=a["weight_decay"],
                              fused=True)

        def on_epoch(epoch: int, loss: float, acc: float) -> None:
            test = self.score(model)[0]
            self.session.log("ann/train_loss", loss, epoch)
            self.session.log("ann/train_top1", acc, epoch)
            self.session.log("ann/test_top1", test, epoch)
            log.info("ann epoch %d: loss %.4f, train top1 %.2f, test top1 %.2f", epoch + 1, loss, acc, test)

        fit(self.session.wrap(model), self.session, d.train, a["epochs"], a["batch_size"], c["workers"], opt,
            a["milestones"], a["lr_factor"], on_epoch)
        self.session.sync(model)
        model.eval()
        row = ann_row(fuse_bn(model).eval(), self.example, *self.score(model))  # timed as deployed: BN fused
        self.checkpoint("ann.pt", {"model": model.state_dict(), "row": asdict(row)})
        self.rows.append(row)
        return model

    def spiking(self, ann: nn.Sequential, stages: list[int]) -> tuple[SpikingNetwork, list[int]]:
        """The converted SNN, or the last finished stage's when resuming; returns it and the stages left."""
        done = []
        for t in stages:
            if not (self.resume and (self.out_dir / f"stage_T{t}.pt").exists()):
                break
            done.append(t)
        if done:
            net = convert(ann, done[-1])
            for t in done:
                state = torch.load(self.out_dir / f"stage_T{t}.pt", map_location=self.session.device)
                self.rows.append(Row(**state["row"]))
            net.load_state_dict(state["model"])
        else:
            calib = self.data.calibration_images(self.cfg["convert"]["images"]).to(self.session.device)
            net = convert(ann, stages[0], data=calib, percentile=self.cfg["convert"]["percentile"])
        for m in net.modules():
            if isinstance(m, (nn.Dropout, TimeDropout)):
                m.p = self.cfg["iir"]["dropout"]
        return net.to(self.session.device), stages[len(done):]

    def train_snn(self, net: SpikingNetwork, epochs: int, tag: str, after_step: Callable[[], None] | None = None
                  ) -> None:
        """Adam (paper A.2.2) training of the SNN at its current T, logging spikes, thresholds and leaks."""
        i = self.cfg["iir"]
        opt = torch.optim.Adam(net.parameters(), lr=i["lr"], amsgrad=i["amsgrad"], fused=True)
        clamp_after_step(opt, net)
        if after_step is not None:
            opt.register_step_post_hook(lambda *_: after_step())

        def on_epoch(epoch: int, loss: float, acc: float) -> None:
            step = self.step
            self.step += 1
            self.session.log(f"{tag}/train_loss", loss, step)
            self.session.log(f"{tag}/train_top1", acc, step)
            with recording(net):
                test = self.score(net)[0]
            log.info("%s epoch %d: loss %.4f, train top1 %.2f, test top1 %.2f, spike rates %s", tag, epoch + 1, loss,
                     acc, test, " ".join(f"{r:.3f}" for r in net.spike_rates()))
            self.session.log(f"{tag}/test_top1", test, step)
            for key, value in net.layer_stats().items():
                self.session.log(f"{tag}/{key}", value, step)

        fit(self.session.wrap(net), self.session, self.data.train, epochs, i["batch_size"], self.cfg["workers"], opt,
            i["milestones"], i["lr_factor"], on_epoch)

    def evaluate(self, net: SpikingNetwork, model: str) -> Row:
        """Score the SNN with spike counting and build its row."""
        with recording(net):
            mean, std = self.score(net)
        return snn_row(model, net, self.example, net.spike_rates(), mean, std)

    @torch.no_grad()
    def probe(self, net: SpikingNetwork) -> list[float]:
        """Per-layer spike rates on calibration images at the current T."""
        net.eval()
        with recording(net):
            net(self.data.calibration_images(256).to(self.session.device))
        return net.spike_rates()

    def prune(self, net: SpikingNetwork) -> None:
        """Remove the smallest-magnitude weights (global), fine-tune with the mask held, record the row."""
        path = self.out_dir / "pruned.pt"
        if self.resume and path.exists():
            state = torch.load(path, map_location=self.session.device)
            net.load_state_dict(state["model"])
            self.rows.append(Row(**state["row"]))
            return
        weights = [m.weight for m in net.weight_layers()]
        magnitudes = torch.cat([w.detach().abs().flatten() for w in weights])
        k = int(self.cfg["prune"]["fraction"] * magnitudes.numel())
        cut = magnitudes.kthvalue(k).values if k > 0 else magnitudes.new_tensor(-1.0)
        masks = [(w.detach().abs() > cut).to(w.dtype) for w in weights]

        @torch.no_grad()
        def apply() -> None:
            for w, m in zip(weights, masks):
                w.mul_(m)

        apply()
        self.train_snn(net, self.cfg["prune"]["epochs"], f"pruned_T{net.timesteps}", apply)
        row = self.evaluate(net, "pruned")
        self.checkpoint("pruned.pt", {"model": net.state_dict(), "row": asdict(row)})
        self.rows.append(row)

    def run(self) -> list[Row]:
        """ANN, conversion, IIR stages, optional pruning; results rewritten after each step."""
        c = self.cfg
        ann = self.ann()
        self.publish()
        stages = stages_to(c["schedule"], int(c["timesteps"]))
        net, todo = self.spiking(ann, stages)

        def set_t(t: int) -> None:
            net.timesteps = t

        def end(stage: Stage) -> None:
            row: Row = stage.metrics["row"]
            self.checkpoint(f"stage_T{stage.timesteps}.pt",
                            {"model": net.state_dict(), "row": asdict(row), "start_rates": stage.start_rates})
            self.rows.append(row)
            self.publish()

        run_stages(todo, set_t, lambda: self.probe(net), lambda t: self.train_snn(net, c["iir"]["epochs"], f"T{t}"),
                   lambda t: {"row": self.evaluate(net, "iir")}, end)
        if c["prune"]["fraction"] > 0:
            self.prune(net)
            self.publish()
        return self.rows


def run(cfg: dict, out_dir: Path, resume: bool) -> list[Row]:
    """Run the vision pipeline with `cfg` (over DEFAULTS) into out_dir; resume skips finished checkpoints."""
    full = resolve(cfg)
    spec = full["data"][full["dataset"]]
    data = load_dataset(full["dataset"], full["data_dir"], full["download"], spec["image_size"], spec["pad"],
                        spec["flip"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(full["seed"])
    session = Session(full["device"], out_dir)
    try:
        if session.rank == 0:
            atomic_write(out_dir / "config.yaml", yaml.safe_dump(full, sort_keys=False))
        return Pipeline(full, data, session, out_dir, resume).run()
    finally:
        session.close()

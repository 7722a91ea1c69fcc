"""Training in several processes: DistributedDataParallel over gloo on the CPU.

Two processes train one tiny model together, as ``torchrun`` would start them. Every image
carries its index in its pixels, so each process can record exactly which images it saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from helpers import config, runtime
from helpers import data as hd
from helpers import train as ht
from tests.conftest import REPO_ROOT

WORLD_SIZE = 2
STATS = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


def _indexed_data(count: int = 120) -> hd.ImageData:
    """Image ``i`` is filled with the value ``i`` (so batches reveal which images they hold)."""
    images = torch.arange(count, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 8, 8)
    labels = torch.arange(count) % 10
    return hd.ImageData(
        train_images=images.contiguous(),
        train_labels=labels,
        test_images=images[:40].contiguous(),
        test_labels=labels[:40],
        class_names=tuple(str(i) for i in range(10)),
        source="indexed test images",
        fingerprint="indexed",
    )


class RecordingNet(nn.Module):
    """A tiny classifier that writes down the index of every image it trains on."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 10)
        self.seen: list[int] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.training:  # undo the normalisation: (x * std + mean) * 255 is the index
            pixel = images[:, 0, 0, 0] * STATS["std"][0] + STATS["mean"][0]
            self.seen.extend((pixel * 255).round().long().tolist())
        return self.head(torch.relu(self.conv(images)).mean(dim=(2, 3)))  # (B, 10)


def _worker(rank: int, store: str, out: str, loader: str) -> None:
    """One of the processes: join the group, train, and report what it saw and wrote."""
    os.environ.update(LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD_SIZE))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        info = runtime.init_distributed("cpu")  # the group exists: just describe it
        saves = []
        original_save = ht._fit.save_checkpoint

        def counting_save(state, path):
            saves.append(str(path))
            return original_save(state, path)

        ht._fit.save_checkpoint = counting_save
        data_cfg = config.DataConfig(
            image_size=8, batch_size=10, loader=loader, augment="none", val_fraction=0.25
        )
        train_cfg = config.TrainConfig(
            epochs=2, precision="fp32", progress=False, checkpoint_dir=str(Path(out) / "run")
        )
        cfg = config.RunConfig(profile="smoke", data=data_cfg, train=train_cfg)
        loaders = hd.make_loaders(_indexed_data(), data_cfg, device="cpu", seed=0, **STATS)
        runtime.seed_everything(rank)  # different initial weights: DDP must broadcast rank 0's
        model = RecordingNet()
        result = ht.fit(model, loaders, cfg, device=info.device, verbose=rank == 0)
        report = {
            "rank": info.rank,
            "world_size": info.world_size,
            "seen": model.seen,
            "saves": saves,
            "history": result.history,
            "weights": {k: v.tolist() for k, v in model.state_dict().items()},
            "val_images": len(loaders.val.dataset),
        }
        Path(out, f"rank{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("loader", ["standard", "fast"])
def test_two_process_gloo_training_shares_out_the_data(tmp_path, loader) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path), loader), nprocs=WORLD_SIZE)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    assert [r["rank"] for r in reports] == [0, 1] and {r["world_size"] for r in reports} == {2}
    train_images = 90  # 120 images, a quarter held out for validation
    for epoch in range(2):  # each epoch: 45 disjoint images per process, 4 full batches each
        parts = [set(r["seen"][epoch * 40 : (epoch + 1) * 40]) for r in reports]
        assert len(parts[0]) == len(parts[1]) == 40
        assert not parts[0] & parts[1]
    assert all(len(r["seen"]) == 2 * 40 for r in reports) and train_images // 2 // 10 == 4
    assert reports[0]["saves"] and not reports[1]["saves"]  # only rank 0 writes
    checkpoint = ht.load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["world_size"] == 2 and checkpoint["epoch"] == 2
    assert len(checkpoint["rng"]) == 2  # every process's generators, for an exact resume
    metrics = [
        [{k: v for k, v in row.items() if k not in ("epoch_seconds", "images_per_second")}
         for row in report["history"]]
        for report in reports
    ]  # fmt: skip
    assert metrics[0] == metrics[1]  # metrics totalled over processes, the same on each
    assert reports[0]["weights"] == reports[1]["weights"]  # DDP kept the replicas equal
    assert checkpoint["model"]["head.bias"].tolist() == reports[0]["weights"]["head.bias"]


@pytest.mark.slow
def test_cli_under_torchrun_with_two_processes(tmp_path) -> None:
    pytest.importorskip("helpers.models")
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "HELPERS_DATA_DIR": str(tmp_path)}
    env.pop("CIFAR10_PATH", None)
    args = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "helpers", "train"]
    args += ["--device", "cpu", "profile=smoke", "train.progress=false", "train.epochs=2"]
    proc = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("test: loss") == 1  # rank 0 alone prints
    assert "2 processes" in proc.stdout
    folder = tmp_path / "checkpoints" / "run"
    summary = json.loads((folder / "history.json").read_text())
    assert [row["epoch"] for row in summary["history"]] == [1, 2]
    assert ht.load_checkpoint(folder / "last.pt")["world_size"] == 2

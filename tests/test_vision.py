"""Vision pipeline: paper architectures, the CIFAR reader, conversion of trained classifiers, a tiny run."""
import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spiking_dqn import convert
from spiking_dqn.network import SpikingResidual
from spiking_dqn.vision.data import load_dataset, load_digits, read_cifar
from spiking_dqn.vision.models import basic_block, build_model
from spiking_dqn.vision.pipeline import DEFAULTS, resolve, run


def _weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_vgg6_parameter_count_matches_paper_layout():
    model = build_model("vgg6", 10, 3, 32)
    convs = 3 * 64 * 9 + 64 * 128 * 9 + 128 * 128 * 9  # {64, A, 128, 128, A}, no biases
    bns = 2 * (64 + 128 + 128)
    linears = 128 * 8 * 8 * 4096 + 4096 * 4096 + 4096 * 10  # Linear {4096, D, 4096, D, classes}
    assert sum(p.numel() for p in model.parameters()) == convs + bns + linears
    assert build_model("vgg6", 10, 3, 32).eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("arch, depth, shortcuts", [("vgg16", 16, 0), ("resnet20", 20, 3)])
def test_depth_counts_weight_layers_outside_shortcuts(arch, depth, shortcuts):
    model = build_model(arch, 100, 3, 32, hidden=64).eval()
    layers = _weight_layers(model)
    one_by_one = [m for m in layers if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(layers) - len(one_by_one) == depth and len(one_by_one) == shortcuts
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_bad_arch_and_dataset_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("vgg7", 10)
    with pytest.raises(ValueError, match="unknown arch"):
        resolve({"arch": "alexnet"})
    with pytest.raises(ValueError, match="unknown dataset"):
        resolve({"dataset": "mnist"})
    with pytest.raises(ValueError, match="cifar10"):
        load_dataset("cifar10", tmp_path / "missing", False, 32, 4, True)
    with pytest.raises(ValueError, match="imagenet"):
        load_dataset("imagenet", tmp_path, False, 224, 0, True)


def _cifar_batch(n: int, seed: int, label_key: bytes) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return {b"batch_label": b"test", label_key: rng.integers(0, 10, n).tolist(), b"data": data,
            b"filenames": [b"x.png"] * n}, data


def _write_cifar10(root: Path, as_archive: bool) -> tuple[np.ndarray, np.ndarray]:
    files = {f"data_batch_{i}": _cifar_batch(4, i, b"labels") for i in range(1, 6)}
    files["test_batch"] = _cifar_batch(3, 9, b"labels")
    if as_archive:
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, (batch, _) in files.items():
                raw = pickle.dumps(batch, protocol=2)
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    else:
        (root / "cifar-10-batches-py").mkdir()
        for name, (batch, _) in files.items():
            (root / "cifar-10-batches-py" / name).write_bytes(pickle.dumps(batch, protocol=2))
    train = np.concatenate([files[f"data_batch_{i}"][1] for i in range(1, 6)])
    return train, files["test_batch"][1]


@pytest.mark.parametrize("as_archive", [False, True])
def test_cifar_reader_reads_real_pickle_layout(tmp_path, as_archive):
    train_raw, test_raw = _write_cifar10(tmp_path, as_archive)
    xtr, ytr, xte, _ = read_cifar("cifar10", tmp_path)
    assert xtr.shape == (20, 3, 32, 32) and xte.shape == (3, 3, 32, 32) and xtr.dtype == torch.uint8
    # rows of 3072 bytes: 1024 red (row-major 32x32), then green, then blue
    assert xtr[5, 1, 2, 3].item() == train_raw[5, 1024 + 2 * 32 + 3]
    assert xte[2, 2, 31, 0].item() == test_raw[2, 2048 + 31 * 32]
    assert len(ytr) == 20 and ytr.dtype == torch.int64
    data = load_dataset("cifar10", tmp_path, False, 32, 4, True)
    x, _ = data.train[0]
    assert x.shape == (3, 32, 32) and data.num_classes == 10
    plain = data.calibration_images(20)
    torch.testing.assert_close(plain.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)  # per-channel normalised
    test_x, _ = data.test[2]
    torch.testing.assert_close(test_x, (xte[2].float() / 255 - data.test.mean) / data.test.std)


def test_cifar100_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 6), ("test", 2)):
        batch, _ = _cifar_batch(n, n, b"fine_labels")
        batch[b"coarse_labels"] = [99] * n
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    _, ytr, _, yte = read_cifar("cifar100", tmp_path)
    assert len(ytr) == 6 and len(yte) == 2 and int(ytr.max()) < 10


def test_imagenet_style_folders_are_read_resized_and_cropped(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for k, cls in enumerate(("n01", "n02")):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (20 + 10 * i, 30, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{k}_{i}.png")
    data = load_dataset("imagenet", tmp_path, False, 16, 0, True)
    assert data.num_classes == 2 and len(data.train) == 4 and len(data.test) == 4
    x, y = data.test[3]
    assert x.shape == (3, 16, 16) and y == 1
    assert data.calibration_images(4).shape == (4, 3, 16, 16)


def _small_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 4, 10, bias=False))


def test_converted_digit_classifier_converges_to_the_ann_as_t_grows():
    torch.manual_seed(0)
    xtr, ytr, xte, _ = load_digits(8)
    ann = _small_cnn()
    opt = torch.optim.Adam(ann.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(ann(xtr), ytr).backward()
        opt.step()
    ann.eval()
    with torch.no_grad():
        target = ann(xte).argmax(1)
        agreement = [(convert(ann, t, data=xtr[:512], percentile=99.9)(xte).argmax(1) == target).float().mean().item()
                     for t in (2, 16, 128)]
    assert agreement[0] < agreement[1] < agreement[2]
    assert agreement[2] >= 0.97


@torch.no_grad()
def test_resnet_basic_blocks_convert_with_conv_and_identity_shortcuts():
    torch.manual_seed(3)
    ann = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), basic_block(8, 8, 1, 0.2), nn.ReLU(),
                        basic_block(8, 16, 2, 0.2), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 5))
    ann.train()
    x = torch.randn(64, 3, 8, 8)
    ann(x)  # move batch-norm running statistics off their defaults
    ann.eval()
    target = ann(x)
    blocks = [m for m in convert(ann, 1).modules() if isinstance(m, SpikingResidual)]
    assert len(blocks) == 2 and isinstance(blocks[1].shortcut, nn.Sequential)  # 1x1 conv shortcut where shape changes
    err = [(convert(ann, t, data=x, percentile=99.99).eval()(x) - target).abs().mean().item() for t in (8, 64, 512)]
    assert err[0] > err[1] > err[2]
    assert err[2] < 0.05 * target.abs().mean().item()


def test_config_file_is_the_single_source_of_defaults():
    assert resolve({}) == DEFAULTS
    assert DEFAULTS["ann"]["lr"] == 0.01 and DEFAULTS["iir"]["lr"] == 1e-4 and DEFAULTS["convert"]["percentile"] == 90


def test_tiny_pipeline_writes_results_and_resumes_without_redoing_stages(tmp_path):
    cfg = {"hidden": 32, "schedule": [2, 1], "trials": 5, "data": {"digits": {"image_size": 8, "pad": 1}},
           "ann": {"epochs": 2, "dropout": 0.0}, "iir": {"epochs": 1}, "prune": {"fraction": 0.5, "epochs": 1}}
    rows = run(cfg, tmp_path, resume=False)
    assert [(r.model, r.timesteps) for r in rows] == [("ann", None), ("iir", 2), ("iir", 1), ("pruned", 1)]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["task"] == "digits/vgg6" and results["metric"] == "top1" and results["trials"] == 5
    assert len(results["rows"]) == 4
    for row in results["rows"]:
        assert 0 <= row["score_mean"] <= 100 and row["score_std"] >= 0 and row["ms_per_decision"] > 0
    assert results["rows"][0]["score_mean"] > 30  # two epochs on digits already learn something (chance: 10)
    assert all(len(r["layer_spike_rates"]) == 5 for r in results["rows"][1:])
    for name in ("config.yaml", "results.md", "results.png", "ann.pt", "stage_T2.pt", "stage_T1.pt", "pruned.pt"):
        assert (tmp_path / name).is_file()
    assert any((tmp_path / "tb").iterdir())
    pruned = torch.load(tmp_path / "pruned.pt")["model"]
    weights = torch.cat([v.flatten() for k, v in pruned.items() if k.endswith("weight")])
    assert (weights == 0).float().mean() >= 0.49

    kept = {n: (tmp_path / n).stat().st_mtime_ns for n in ("ann.pt", "stage_T2.pt")}
    (tmp_path / "stage_T1.pt").unlink()
    (tmp_path / "pruned.pt").unlink()
    resumed = run(cfg, tmp_path, resume=True)
    assert {n: (tmp_path / n).stat().st_mtime_ns for n in kept} == kept  # ANN and T2 not redone
    assert (tmp_path / "stage_T1.pt").is_file()
    assert resumed[:2] == rows[:2]
    assert [(r.model, r.timesteps) for r in resumed] == [("ann", None), ("iir", 2), ("iir", 1), ("pruned", 1)]


def test_vision_cli_trains_digits_end_to_end(tmp_path):
    from spiking_dqn.cli import main

    out = tmp_path / "run"
    argv = ["vision", "train", "digits", "--arch", "vgg6", "--timesteps", "1", "--schedule", "2,1", "--out", str(out),
            "--set", "ann.epochs=1", "--set", "iir.epochs=1", "--set", "hidden=32", "--trials", "3"]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["metric"] == "top1" and res["trials"] == 3
    assert [(r["model"], r["timesteps"]) for r in res["rows"]] == [("ann", None), ("iir", 2), ("iir", 1)]

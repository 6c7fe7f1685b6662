"""Image datasets: sklearn's bundled digits (offline default), CIFAR-10/100 python archives, ImageNet folders.

Training images are augmented as in the paper (A.2.2): zero-pad, random crop back to size, horizontal flip
with probability 0.5; train and test images are normalised with per-channel statistics of the training set.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

DATASETS = ("digits", "cifar10", "cifar100", "imagenet")
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp"}
STATS_SAMPLE = 256  # images used to estimate the channel statistics of a folder dataset
DIGITS_TEST_FRACTION = 0.3  # fixed stratified split (seed 0) of the 1797 digits


@dataclass(frozen=True)
class CifarSpec:
    """Where a CIFAR variant lives inside its archive and how its labels are named."""

    folder: str
    archive: str
    md5: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    classes: int


CIFAR = {
    "cifar10": CifarSpec("cifar-10-batches-py", "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                         tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "labels", 10),
    "cifar100": CifarSpec("cifar-100-python", "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                          ("train",), ("test",), "fine_labels", 100),
}


@dataclass
class Augment:
    """Training-time augmentation: zero padding + random crop, optional horizontal flip."""

    pad: int
    flip: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            h, w = x.shape[-2:]
            x = F.pad(x, (self.pad,) * 4)
            i, j = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
            x = x[..., i:i + h, j:j + w]
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x


class TensorImages(Dataset):
    """In-memory images [N, C, H, W] (uint8, or float in [0, 1]) with labels, normalised on access."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                 augment: Augment | None) -> None:
        self.images, self.labels = images, labels
        self.mean, self.std, self.augment = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1), augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = to_unit(self.images[i])
        if self.augment is not None:
            x = self.augment(x)
        return (x - self.mean) / self.std, int(self.labels[i])


class FolderImages(Dataset):
    """A folder of class folders; images resized (shorter side size*8/7) and cropped to `size` on access."""

    def __init__(self, root: Path, size: int, augment: Augment | None) -> None:
        self.classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        self.samples = [(p, k) for k, c in enumerate(self.classes) for p in sorted((root / c).iterdir())
                        if p.suffix.lower() in IMAGE_SUFFIXES]
        if not self.samples:
            raise ValueError(f"no images found in class folders under {root}")
        self.size, self.augment = size, augment
        self.mean, self.std = torch.zeros(3, 1, 1), torch.ones(3, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def raw(self, i: int) -> torch.Tensor:
        """Image i in [0, 1], resized and cropped (random crop when augmenting, else centre), not normalised."""
        path, _ = self.samples[i]
        x = torch.from_numpy(read_image(path)).permute(2, 0, 1).float().div(255)
        short = round(self.size * 8 / 7)
        h, w = x.shape[-2:]
        x = F.interpolate(x[None], size=(max(short, round(h * short / w)), max(short, round(w * short / h))),
                          mode="bilinear", antialias=True, align_corners=False)[0]
        h, w = x.shape[-2:]
        if self.augment is not None:
            i0, j0 = torch.randint(0, h - self.size + 1, ()).item(), torch.randint(0, w - self.size + 1, ()).item()
            x = x[:, i0:i0 + self.size, j0:j0 + self.size]
            return x.flip(-1) if self.augment.flip and torch.rand(()) < 0.5 else x
        i0, j0 = (h - self.size) // 2, (w - self.size) // 2
        return x[:, i0:i0 + self.size, j0:j0 + self.size]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return (self.raw(i) - self.mean) / self.std, self.samples[i][1]


@dataclass
class ImageData:
    """A train/test pair and what a model needs to know about it."""

    train: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int

    def calibration_images(self, n: int) -> torch.Tensor:
        """The first n training images without augmentation, normalised (for threshold calibration)."""
        plain = _without_augment(self.train)
        return torch.stack([plain[i][0] for i in range(min(n, len(plain)))])


def _without_augment(ds: Dataset) -> Dataset:
    """A shallow copy of an in-memory or folder dataset with augmentation off."""
    copy = object.__new__(type(ds))
    copy.__dict__.update(ds.__dict__, augment=None)
    return copy


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [0, 1]; float images pass through."""
    return x.float().div(255) if x.dtype == torch.uint8 else x


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of images [N, C, H, W]."""
    x = to_unit(images).transpose(0, 1).flatten(1)
    return x.mean(1), x.std(1)


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to an RGB uint8 array [H, W, 3] with PIL, or OpenCV where PIL is missing."""
    try:
        from PIL import Image
    except ImportError:
        import cv2

        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read image {path}") from None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    with Image.open(path) as img:
        return np.array(img.convert("RGB"))


def load_digits(image_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), upscaled bilinearly; fixed 70/30 split."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).div(16).unsqueeze(1)
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(bunch.target)
    tr, te = train_test_split(np.arange(len(y)), test_size=DIGITS_TEST_FRACTION, stratify=bunch.target,
                              random_state=0)
    return x[tr], y[tr], x[te], y[te]


def download_cifar(name: str, root: Path) -> Path:
    """Fetch the official CIFAR python archive into root and check its md5; returns the archive path."""
    spec = CIFAR[name]
    root.mkdir(parents=True, exist_ok=True)
    target = root / spec.archive
    tmp = target.with_name(target.name + ".part")
    urllib.request.urlretrieve(CIFAR_URL + spec.archive, tmp)
    digest = hashlib.md5(tmp.read_bytes()).hexdigest()
    if digest != spec.md5:
        tmp.unlink()
        raise ValueError(f"downloaded {spec.archive} has md5 {digest}, expected {spec.md5}")
    os.replace(tmp, target)
    return target


def _unpickle(raw: bytes) -> dict:
    """A CIFAR batch dict with str keys (the archives were pickled by Python 2, so keys come back as bytes)."""
    data = pickle.loads(raw, encoding="bytes")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def read_cifar(name: str, root: Path, download: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CIFAR-10/100 from root/<folder> or root/<archive>.tar.gz (downloaded if asked): uint8 images, labels."""
    spec = CIFAR[name]
    folder, archive = root / spec.folder, root / spec.archive
    if not folder.is_dir() and not archive.is_file():
        if not download:
            raise ValueError(f"{name}: neither {folder} nor {archive} exists (set download=true to fetch it)")
        archive = download_cifar(name, root)

    def batches(files: tuple[str, ...]) -> list[dict]:
        if folder.is_dir():
            return [_unpickle((folder / f).read_bytes()) for f in files]
        with tarfile.open(archive, "r:gz") as tar:
            return [_unpickle(tar.extractfile(f"{spec.folder}/{f}").read()) for f in files]  # type: ignore[union-attr]

    def stack(files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = batches(files)
        x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in parts]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(b[spec.label_key], dtype=np.int64) for b in parts])
        return torch.from_numpy(x), torch.from_numpy(y)

    return (*stack(spec.train_files), *stack(spec.test_files))


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize square images to size (identity when already that size)."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(to_unit(images), size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def load_dataset(name: str, data_dir: str | Path | None, download: bool, image_size: int, pad: int,
                 flip: bool) -> ImageData:
    """Train (augmented) and test datasets for `name` (digits | cifar10 | cifar100 | imagenet)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    augment = Augment(pad, flip)
    if name == "imagenet":
        if data_dir is None or not (Path(data_dir) / "train").is_dir() or not (Path(data_dir) / "val").is_dir():
            raise ValueError(f"imagenet needs data_dir with train/ and val/ class folders, got {data_dir!r}")
        train = FolderImages(Path(data_dir) / "train", image_size, augment)
        test = FolderImages(Path(data_dir) / "val", image_size, None)
        sample = torch.stack([_without_augment(train).raw(i)
                              for i in torch.linspace(0, len(train) - 1, min(STATS_SAMPLE, len(train))).long()])
        for ds in (train, test):
            ds.mean, ds.std = (s.reshape(-1, 1, 1) for s in channel_stats(sample))
        return ImageData(train, test, len(train.classes), 3, image_size)
    if name == "digits":
        xtr, ytr, xte, yte = load_digits(image_size)
        classes = 10
    else:
        if data_dir is None:
            raise ValueError(f"{name} needs data_dir (the folder holding {CIFAR[name].folder} or its archive)")
        xtr, ytr, xte, yte = read_cifar(name, Path(data_dir), download)
        xtr, xte = _resize(xtr, image_size), _resize(xte, image_size)
        classes = CIFAR[name].classes
    mean, std = channel_stats(xtr)
    return ImageData(TensorImages(xtr, ytr, mean, std, augment), TensorImages(xte, yte, mean, std, None), classes,
                     xtr.shape[1], image_size)

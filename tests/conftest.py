"""Shared fixtures: tiny models and data made in the test, never the network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from labkit.data import CLASSES


class PixelTrigger(nn.Module):
    """A 10-class model whose decision hinges on one known pixel.

    Class ``base`` wins unless the pixel at (``row``, ``col``) is bright: the
    logit of class ``trigger`` grows with that pixel's mean colour and beats the
    base class when the mean exceeds 0.75. No other pixel matters, so a
    one-pixel attack succeeds exactly when it writes a bright colour there.
    """

    def __init__(self, row: int = 2, col: int = 5, base: int = 0, trigger: int = 1):
        super().__init__()
        self.row, self.col, self.base, self.trigger = row, col, base, trigger
        self.scale = nn.Parameter(torch.tensor(20.0))  # a parameter so the model has a device

    def forward(self, x: Tensor) -> Tensor:
        logits = torch.zeros(len(x), 10, device=x.device, dtype=x.dtype)
        bright = x[:, :, self.row, self.col].mean(1)
        logits[:, self.base] = 0.5 * self.scale
        logits[:, self.trigger] = self.scale * (bright - 0.25)
        return logits


@pytest.fixture
def pixel_model() -> PixelTrigger:
    return PixelTrigger().eval()


@pytest.fixture
def dark_images() -> Tensor:
    """Six 8x8 RGB images in [0, 0.4]: the PixelTrigger model predicts class 0 for all."""
    return torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.4


def make_tiny_cnn(num_classes: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, num_classes),
    ).eval()


@pytest.fixture
def tiny_cnn() -> nn.Module:
    """A random small CNN in eval mode (8x8 or 32x32 inputs)."""
    return make_tiny_cnn()


def result_row(defence: str, attack: str, asr: float, seed: int = 0, n: int = 100, clean: float = 0.9, **kw) -> dict:
    """One row of ``labkit.evaluate.evaluate_model``'s table (model "m"), its ASR interval Wilson over ``n``."""
    from labkit.stats import wilson

    lo, hi = wilson(round(asr * n), n)
    return {"model": "m", "seed": seed, "defence": defence, "paper": kw.pop("paper", defence), "attack": attack,
            "targeted": kw.pop("targeted", False), "clean_acc": clean, "attacked": n, "asr": asr, "asr_lo": lo,
            "asr_hi": hi, **kw}


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private LABKIT_CACHE for the test."""
    root = tmp_path / "cache"
    monkeypatch.setenv("LABKIT_CACHE", str(root))
    return root


def write_image_folder(root: Path, per_class: dict[str, int], size: int = 32) -> None:
    """A CIFAR-like ImageFolder of PNGs whose mean colour encodes the class (learnable in a few steps).

    Pixel means stay below 0.75, so the PixelTrigger model answers class 0 on all of them.
    """
    from torchvision.io import write_png

    gen = torch.Generator().manual_seed(0)
    palette = torch.tensor([[0, 0, 0], [150, 0, 0], [0, 150, 0], [0, 0, 150], [150, 150, 0],
                            [150, 0, 150], [0, 150, 150], [150, 150, 150], [75, 0, 0], [0, 0, 75]])
    for split, n in per_class.items():
        for label, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                noise = torch.rand(3, size, size, generator=gen) * 40
                img = (noise + palette[label].view(3, 1, 1)).to(torch.uint8)
                write_png(img, str(d / f"{i:04d}.png"))


@pytest.fixture(scope="session")
def tiny_folder_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "cifar"
    write_image_folder(root, {"train": 12, "test": 4})
    return root


@pytest.fixture
def tiny_folder(tiny_folder_master: Path, tmp_path: Path, tmp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny CIFAR-10 ImageFolder (10 classes x 12 train / 4 test images) set as LABKIT_DATA.

    Written once per session and copied per test, so a test may damage its copy.
    """
    import shutil

    root = tmp_path / "cifar"
    shutil.copytree(tiny_folder_master, root)
    monkeypatch.setenv("LABKIT_DATA", str(root))
    return root


def write_idx(folder: Path, n_train: int = 40, n_test: int = 20, size: int = 28, gz: bool = True) -> None:
    """The four IDX files of an MNIST-like dataset (grey ``size`` x ``size``, 10 classes): image i of a split has
    label i % 10 and every pixel equal to 20 * label, so a test can check what it loaded."""
    import gzip
    import struct

    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = bytes(i % 10 for i in range(n))
        pixels = b"".join(bytes([20 * (i % 10)]) * size * size for i in range(n))
        files = {f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 0x803, n, size, size) + pixels,
                 f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 0x801, n) + labels}
        for name, blob in files.items():
            if gz:
                with gzip.open(folder / f"{name}.gz", "wb") as fh:
                    fh.write(blob)
            else:
                (folder / name).write_bytes(blob)


#: (height, width) of the generated ImageNet-like images: landscape, portrait, square, and one smaller than 224.
IMAGENET_SIZES = ((300, 400), (333, 250), (256, 256), (180, 240))


def write_imagenet_folder(root: Path, wnids: tuple[str, ...] = ("n01440764", "n01443537", "n01484850"),
                          per_class: int = 2) -> Path:
    """An ILSVRC2012-like tree ``root/val/<wnid>/*.JPEG`` of random JPEGs of varied sizes (``IMAGENET_SIZES``, in
    turn); returns ``root``. Upper-case suffixes, as ImageNet's files have them."""
    from torchvision.io import encode_jpeg

    gen = torch.Generator().manual_seed(0)
    k = 0
    for wnid in wnids:
        folder = root / "val" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = IMAGENET_SIZES[k % len(IMAGENET_SIZES)]
            k += 1
            img = (torch.rand(3, h, w, generator=gen) * 255).to(torch.uint8)
            (folder / f"ILSVRC2012_val_{k:08d}.JPEG").write_bytes(encode_jpeg(img, quality=90).numpy().tobytes())
    return root

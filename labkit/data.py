"""The datasets, as uint8 tensors: CIFAR-10, and a registry (``DATASETS``) with Fashion-MNIST, MNIST and GTSRB.

CIFAR-10 comes from two sources, in this order:

1. an ImageFolder tree (``<root>/train/<class>/*.jpg|png`` and ``<root>/test/...``)
   named by the ``root`` argument or the ``LABKIT_DATA`` environment variable
   (the offline copy these machines use);
2. torchvision's ``CIFAR10(download=True)`` into the cache directory, when no
   local tree is set (machines with internet).

Decoding 60,000 JPEG files takes tens of seconds, so the decoded tensors are
cached in one file per split under ``cache_root()/data``. The other datasets of the registry
(``load_dataset``) follow the same conventions: a local copy named by an environment variable, uint8
(N, C, H, W) tensors, decoded once and cached.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from labkit.cache import cache_path, config_key, load_checked, save_atomic

#: Why JPEG results on the offline copy need a caveat (measured, issue #22): its images are stored as JPEG at about
#: quality 75, so re-compressing them at q75 moves clean pixels by about 0.16/255 on average and leaves clean accuracy
#: unchanged (86.15% vs 86.09% on the small CNN): a "JPEG q75" defence is close to a no-op on this data, and lower
#: qualities compress twice. torchvision's PNG-decoded CIFAR-10 has no such history.
JPEG_SOURCE_CAVEAT = ("Data caveat: the offline CIFAR-10 copy is itself JPEG-encoded at about quality 75, so JPEG at "
                      "q75 barely changes its clean images (a near no-op here), and lower qualities compress twice.")

CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "test")


class DataError(FileNotFoundError):
    """The local data folder is missing or not laid out as CIFAR-10 ImageFolder."""


@dataclass(frozen=True)
class Split:
    """One split of an image dataset (CIFAR-10 unless ``dataset`` says otherwise).

    images: (N, C, H, W) uint8, RGB or grey (3 x 32 x 32 for CIFAR-10); labels: (N,) int64 in [0, len(classes));
    source: where it came from (``folder:<path>`` or ``torchvision``); dataset: its name in words.
    """

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]
    source: str
    dataset: str = "CIFAR-10"

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def name(self) -> str:
        """The dataset in words, without this machine's paths (what a book page prints)."""
        if self.source.startswith("folder:"):
            return f"{self.dataset}, local ImageFolder copy '{Path(self.source[len('folder:'):]).name}'"
        if self.source.startswith("idx:"):
            return f"{self.dataset}, local IDX copy '{Path(self.source[len('idx:'):]).name}'"
        return f"{self.dataset} ({self.source})"

    def floats(self, idx: Tensor | slice | None = None) -> Tensor:
        """Images (or a subset) as float32 in [0, 1], shape (n, C, H, W)."""
        x = self.images if idx is None else self.images[idx]
        return x.float().div_(255)


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    """The local ImageFolder root: ``root``, else ``$LABKIT_DATA``, else ``None``."""
    value = root if root is not None else os.environ.get("LABKIT_DATA")
    return Path(value).expanduser().resolve() if value else None


def _layout_error(root: Path, problem: str) -> DataError:
    return DataError(
        f"{problem}\nlabkit expects CIFAR-10 as an ImageFolder tree: {root}/train/<class>/*.jpg "
        f"and {root}/test/<class>/*.jpg with the ten class folders {', '.join(CLASSES)}. "
        "Set LABKIT_DATA (or pass root=) to such a folder, e.g. "
        "LABKIT_DATA=../shared/data/cifar10-jpeg, or unset it to download CIFAR-10 with torchvision."
    )


def class_folders(folder: Path) -> tuple[str, ...]:
    """The sub-folders of an ImageFolder split, sorted: its class names in label order (torchvision's rule)."""
    return tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))


def _class_files(folder: Path, classes: Sequence[str], fail: Callable[[str], DataError]) -> list[tuple[Path, int]]:
    """(image path, label) of every .jpg/.png under ``folder/<class>/``, classes in the order given; an empty class
    folder raises ``fail(message)``."""
    files = []
    for label, name in enumerate(classes):
        paths = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise fail(f"{folder / name} holds no .jpg/.png images")
        files += [(p, label) for p in paths]
    return files


def _list_split(root: Path, split: str) -> list[tuple[Path, int]]:
    split_dir = root / split
    if not split_dir.is_dir():
        raise _layout_error(root, f"no '{split}' folder in {root}")
    found = class_folders(split_dir)
    if found != CLASSES:
        raise _layout_error(root, f"{split_dir} has class folders {found}, not the CIFAR-10 classes")
    return _class_files(split_dir, CLASSES, lambda message: _layout_error(root, message))


def _decode(files: list[tuple[Path, int]], fail: Callable[[str], DataError]) -> list[Tensor]:
    """Each file decoded as RGB uint8 (3, H, W); an undecodable one raises ``fail(message)``."""
    import warnings

    from torchvision.io import ImageReadMode, decode_image, read_file

    # torchvision 0.29 deprecates its decoders in favour of torchcodec; they still work, and
    # one warning per image would bury the notebook output.
    warnings.filterwarnings("ignore", message="The image decoding", category=DeprecationWarning)
    images = []
    for path, _ in files:
        try:
            images.append(decode_image(read_file(str(path)), mode=ImageReadMode.RGB))
        except RuntimeError as exc:
            raise fail(f"cannot decode {path}: {exc}") from exc
    return images


def _labels(files: list[tuple[Path, int]]) -> Tensor:
    return torch.tensor([label for _, label in files], dtype=torch.int64)


def _decode_folder(files: list[tuple[Path, int]], root: Path) -> tuple[Tensor, Tensor]:
    images = _decode(files, lambda message: _layout_error(root, message))
    for (path, _), img in zip(files, images):
        if img.shape != (3, 32, 32):
            raise _layout_error(root, f"{path} is {tuple(img.shape)}, not a 3x32x32 CIFAR image")
    return torch.stack(images), _labels(files)  # _list_split leaves no class empty


def _fingerprint(source: str, files: list[tuple[Path, int]]) -> list[Any]:
    """Names and sizes identify a tree's contents cheaply (no decoding)."""
    return [source, len(files), sum(p.stat().st_size for p, _ in files)]


def _cached(name: str, source: str, make: Callable[[], tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """(images, labels) from the data cache entry ``name``, else ``make()``'d and saved there."""
    path = cache_path("data", name)
    cached = load_checked(path, {"source": source})
    if cached is not None:
        return cached["images"], cached["labels"]
    images, labels = make()
    save_atomic({"source": source, "images": images, "labels": labels}, path)
    return images, labels


def _from_torchvision(split: str) -> tuple[Tensor, Tensor]:
    from torchvision.datasets import CIFAR10

    ds = CIFAR10(str(cache_path("data", "torchvision").parent / "torchvision"),
                 train=split == "train", download=True)
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(ds.targets, dtype=torch.int64)


def load_cifar10(split: str = "test", root: str | os.PathLike | None = None) -> Split:
    """Load a CIFAR-10 split, decoding it once and caching the tensors.

    Args:
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000 images).
        root: an ImageFolder tree; defaults to ``$LABKIT_DATA``; ``None`` and no
            variable means torchvision's download.

    Raises:
        ValueError: for an unknown split.
        DataError: when the local folder is missing or malformed (the message says how to fix it).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    folder = data_root(root)
    if folder is None:
        source = "torchvision"
        fingerprint: object = source
    else:
        if not folder.is_dir():
            raise _layout_error(folder, f"data folder {folder} does not exist")
        files = _list_split(folder, split)
        source = f"folder:{folder}"
        fingerprint = _fingerprint(source, files)
    images, labels = _cached(f"cifar10-{split}-{config_key(fingerprint)}", source,
                             lambda: _from_torchvision(split) if folder is None else _decode_folder(files, folder))
    return Split(images=images, labels=labels, classes=CLASSES, source=source)


def load_folder(root: str | os.PathLike, size: int | None = None) -> Split:
    """Any image folder in torchvision's ``ImageFolder`` layout, ``<root>/<class>/*.jpg|png`` (classes: the
    sub-folders, sorted), as one ``Split``, decoded once and cached like CIFAR-10.

    Images of different sizes need ``size``: each is then resized to ``size`` x ``size`` (antialiased), once, as
    data preparation. Raises ``DataError`` (saying what is wrong) for a missing folder, no class folders, an empty
    class, an undecodable file or mixed sizes without ``size``.
    """
    folder = Path(root).expanduser().resolve()
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    classes = class_folders(folder)
    if not classes:
        raise DataError(f"{folder} has no class folders: expected <root>/<class>/*.jpg|png")
    files = _class_files(folder, classes, DataError)
    source = f"folder:{folder}"

    def make() -> tuple[Tensor, Tensor]:
        decoded = [img if size is None or img.shape[1:] == (size, size) else _resize(img, size)
                   for img in _decode(files, DataError)]
        shapes = {tuple(img.shape) for img in decoded}
        if len(shapes) > 1:
            raise DataError(f"{folder} holds images of sizes {sorted(shapes)[:3]}...: pass size= (--size) to resize")
        return torch.stack(decoded), _labels(files)

    images, labels = _cached(f"folder-{config_key([*_fingerprint(source, files), size])}", source, make)
    return Split(images=images, labels=labels, classes=classes, source=source, dataset=folder.name)


def _resize(img: Tensor, size: int) -> Tensor:
    """A uint8 image (3, H, W) resized to ``size`` x ``size``, antialiased."""
    out = F.interpolate(img[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)


#: Names the order ``first_n`` produces; part of every trained model's cache key (``labkit.train.model_key``),
#: because training subsets are ``first_n`` prefixes: another order means other training images.
FIRST_N_ORDER = "class round-robin, seed 0"


def first_n(split: Split, n: int) -> Tensor:
    """Indices (n,) int64 of the first ``n`` images in a fixed, class-balanced order.

    The classes take turns (round-robin, in class-index order), each class drawing its images in a fixed random
    order (seed 0, from a private generator: torch's global RNG is neither used nor changed). So every prefix
    holds each class within one image of every other, as long as each class has images left; after a class
    runs out the others keep taking turns. ``first_n(split, m)`` is a prefix of ``first_n(split, n)`` for m < n.
    (The folder order is sorted by class, so the plain first n images would all be airplanes.)
    """
    if not 0 < n <= len(split):
        raise ValueError(f"n must be in [1, {len(split)}], got {n}")
    labels = split.labels
    shuffled = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    grouped = shuffled[torch.argsort(labels[shuffled], stable=True)]  # by class; shuffled within each class
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(labels)) - starts[labels[grouped]]  # position of each image within its class
    # Round r of the turn-taking holds the r-th image of every class, in class order.
    order = grouped[torch.argsort(rank * len(counts) + labels[grouped])]
    return order[:n]


@torch.no_grad()
def predict(model: torch.nn.Module, images: Tensor, batch_size: int = 500,
            device: torch.device | str | None = None) -> Tensor:
    """Predicted labels (N,) int64 for uint8 or [0,1] float images (N, 3, H, W)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    preds = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        preds.append(model(x).argmax(1).cpu())
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64)


def correctly_classified(models: torch.nn.Module | Sequence[torch.nn.Module], split: Split, n: int,
                         pool: int | None = None) -> Tensor:
    """Indices of the first ``n`` images (``first_n`` order) that every model classifies correctly.

    Attack success rates are measured over correctly classified images (an image
    already misclassified needs no attack); comparing defences on the same images
    removes one source of noise. ``models`` is one model or several; ``pool``
    bounds how many images are scanned (default: the whole split).
    """
    models = [models] if isinstance(models, torch.nn.Module) else list(models)
    if any(m.training for m in models):
        raise ValueError("a model is in training mode; call model.eval() first")
    order = first_n(split, pool or len(split))
    picked: list[Tensor] = []
    step = min(1000, max(64, 4 * n))  # small requests score a few images, not a thousand per model
    for start in range(0, len(order), step):
        idx = order[start:start + step]
        ok = torch.ones(len(idx), dtype=torch.bool)
        for m in models:
            ok &= predict(m, split.images[idx]) == split.labels[idx]
        picked.append(idx[ok])
        if sum(len(p) for p in picked) >= n:
            break
    found = torch.cat(picked)[:n]
    if len(found) < n:
        raise ValueError(f"only {len(found)} images in the pool are classified correctly by every model; "
                         f"asked for {n}")
    return found


# -- the dataset registry ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """What the pipeline needs to know of a dataset, before loading it: models take their input channels, class
    count and normalisation from here (no CIFAR constants elsewhere)."""

    name: str  # registry name (``load_dataset(name)``, ``TrainConfig.dataset``)
    title: str  # the dataset in words
    channels: int  # colour channels (1: grey, 3: RGB)
    size: int  # images are size x size pixels (GTSRB's variable sizes are resized to it once, when decoded)
    classes: tuple[str, ...]  # class names in label order
    mean: tuple[float, ...]  # per-channel training-set mean in [0, 1] units (the model's ``Normalize``)
    std: tuple[float, ...]  # per-channel training-set standard deviation
    env: str  # the environment variable naming a local copy

    @property
    def num_classes(self) -> int:
        return len(self.classes)


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
#: Debian's ``dataset-fashion-mnist`` package puts the four IDX files here (``apt-get install dataset-fashion-mnist``);
#: used when ``LABKIT_FASHION_MNIST`` is not set and the folder exists.
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec("cifar10", "CIFAR-10", 3, 32, CLASSES, (0.4914, 0.4822, 0.4465),
                           (0.2470, 0.2435, 0.2616), "LABKIT_DATA"),
    "fashion-mnist": DatasetSpec("fashion-mnist", "Fashion-MNIST", 1, 28, FASHION_CLASSES, (0.2860,), (0.3530,),
                                 "LABKIT_FASHION_MNIST"),
    "mnist": DatasetSpec("mnist", "MNIST", 1, 28, tuple(str(d) for d in range(10)), (0.1307,), (0.3081,),
                         "LABKIT_MNIST"),
    # GTSRB's 43 classes as ImageFolder sub-folders 00000..00042 (the official archive's names); statistics are
    # the usual ones of its training set.
    "gtsrb": DatasetSpec("gtsrb", "GTSRB", 3, 32, tuple(f"{c:05d}" for c in range(43)), (0.3403, 0.3121, 0.3214),
                         (0.2724, 0.2608, 0.2669), "LABKIT_GTSRB"),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry ``name``; a ValueError lists the registered names."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; registered: {sorted(DATASETS)}")
    return DATASETS[name]


def local_copy(name: str) -> Path | None:
    """The local copy of dataset ``name``: its variable's folder, Debian's Fashion-MNIST, or ``None`` (download)."""
    spec = dataset_spec(name)
    if spec.name == "cifar10":
        return data_root()
    if os.environ.get(spec.env):
        return Path(os.environ[spec.env]).expanduser().resolve()
    if spec.name == "fashion-mnist" and Path(DEBIAN_FASHION_MNIST).is_dir():
        return Path(DEBIAN_FASHION_MNIST)
    return None


def available(name: str) -> bool:
    """Whether ``load_dataset(name)`` can run without a download: a local copy is configured (or found)."""
    return local_copy(name) is not None


def dataset_source(name: str) -> str:
    """Which copy of dataset ``name`` a model key refers to (the folder's name, or ``torchvision``), without
    loading it; CIFAR-10's is ``folder:<name>`` or ``torchvision`` as it always was."""
    root = local_copy(name)
    return f"folder:{root.name}" if root is not None else "torchvision"


def load_dataset(name: str, split: str = "test") -> Split:
    """Split ``split`` ("train" or "test") of the registered dataset ``name`` as uint8 (N, C, size, size).

    CIFAR-10: ``load_cifar10``. Fashion-MNIST and MNIST: the four IDX files (``*-idx?-ubyte[.gz]``) of a local
    copy (``$LABKIT_FASHION_MNIST`` / ``$LABKIT_MNIST``; Debian's package for Fashion-MNIST), read by
    torchvision's own MNIST reader, else torchvision's download. GTSRB: ``$LABKIT_GTSRB`` holding ImageFolder
    trees ``train/<class>/`` and ``test/<class>/`` (43 class folders 00000..00042), resized to 32 x 32 once;
    there is no download. Raises ``DataError`` saying what to set when a copy is missing or malformed.
    """
    spec = dataset_spec(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if spec.name == "cifar10":
        return load_cifar10(split)
    if spec.name == "gtsrb":
        return _load_gtsrb(spec, split)
    return _load_idx(spec, split)


def _load_idx(spec: DatasetSpec, split: str) -> Split:
    """Fashion-MNIST or MNIST through ``torchvision.datasets``, from a local copy's IDX files when there is one."""
    import gzip
    import shutil

    from torchvision import datasets

    cls = datasets.FashionMNIST if spec.name == "fashion-mnist" else datasets.MNIST
    root = local_copy(spec.name)
    tv_root = cache_path("data", "torchvision").parent / "torchvision"
    if root is not None:
        stems = [Path(url).stem for url, _ in cls.resources]  # e.g. "train-images-idx3-ubyte"
        found = {stem: [p for p in (root / stem, root / f"{stem}.gz") if p.is_file()] for stem in stems}
        missing = [stem for stem, paths in found.items() if not paths]
        if missing:
            raise DataError(f"{root} lacks {', '.join(missing)} (.gz or not): {spec.env} must name a folder holding "
                            f"{spec.title}'s four IDX files" + (" (Debian: apt-get install dataset-fashion-mnist)"
                                                                if spec.name == "fashion-mnist" else ""))
        # torchvision reads the uncompressed files from <root>/<Class>/raw/: put a copy there, in the cache.
        fingerprint = [f"folder:{root}", *[(p.name, p.stat().st_size) for paths in found.values() for p in paths[:1]]]
        tv_root = cache_path("data", "idx").parent / f"idx-{spec.name}-{config_key(fingerprint)}"
        raw = tv_root / cls.__name__ / "raw"
        for stem, paths in found.items():
            if not (raw / stem).is_file():
                raw.mkdir(parents=True, exist_ok=True)
                opener = gzip.open if paths[0].suffix == ".gz" else open
                with opener(paths[0], "rb") as src, open(raw / f"{stem}.tmp", "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(raw / f"{stem}.tmp", raw / stem)
    ds = cls(str(tv_root), train=split == "train", download=root is None)
    source = f"idx:{root}" if root is not None else "torchvision"
    return Split(images=ds.data[:, None].contiguous(), labels=ds.targets.to(torch.int64), classes=spec.classes,
                 source=source, dataset=spec.title)


def _load_gtsrb(spec: DatasetSpec, split: str) -> Split:
    """GTSRB from ``$LABKIT_GTSRB/<split>/<class>/``: 43 class folders, images resized to 32 x 32 once."""
    root = local_copy(spec.name)
    if root is None:
        raise DataError(f"GTSRB has no download here: set {spec.env} to a folder holding train/<class>/ and "
                        f"test/<class>/ (43 class folders 00000..00042, any image size; resized to 32 x 32)")
    folder = root / split
    found = class_folders(folder) if folder.is_dir() else ()
    if found != spec.classes:
        raise DataError(f"{folder} must hold GTSRB's 43 class folders 00000..00042 ({spec.env}); found "
                        f"{len(found)}: {', '.join(found[:5])}{'...' if len(found) > 5 else ''}")
    loaded = load_folder(folder, size=spec.size)
    return Split(images=loaded.images, labels=loaded.labels, classes=spec.classes, source=f"folder:{root}",
                 dataset=spec.title)


# -- ImageNet (ILSVRC2012 validation), 224 x 224 ---------------------------------------------------------------------

#: The environment variable naming the ImageNet root (the folder that holds ``val/<wnid>/*.JPEG``).
IMAGENET_ENV = "LABKIT_IMAGENET"
#: The standard evaluation preparation of torchvision's ImageNet models: shorter side to 256, centre 224 x 224.
IMAGENET_RESIZE = 256
IMAGENET_CROP = 224


def _imagenet_error(problem: str) -> DataError:
    return DataError(
        f"{problem}\nlabkit expects ImageNet (ILSVRC2012) in ImageFolder layout: <root>/val/<wnid>/*.JPEG, one "
        f"folder per class named by its WordNet id (n01440764, ...). Set {IMAGENET_ENV}=<root> (or pass root=); "
        "the validation images sorted into class folders are what torchvision's ImageNet(split='val') prepares."
    )


def resize_centre_crop(img: Tensor, resize: int = IMAGENET_RESIZE, crop: int = IMAGENET_CROP) -> Tensor:
    """A uint8 image (3, H, W) with its shorter side resized to ``resize`` (bilinear, antialiased) and the centre
    ``crop`` x ``crop`` cut out: (3, crop, crop) uint8, torchvision's ``Resize(256)`` + ``CenterCrop(224)``."""
    from torchvision.transforms.v2 import functional as TF

    return TF.center_crop(TF.resize(img, [resize], antialias=True), [crop, crop])


def load_imagenet(split: str = "val", root: str | os.PathLike | None = None, per_class: int | None = None,
                  resize: int = IMAGENET_RESIZE, crop: int = IMAGENET_CROP) -> Split:
    """ImageNet's ``split`` folder as one ``Split`` of (N, 3, ``crop``, ``crop``) uint8 images, prepared once.

    Each image's shorter side is resized to ``resize`` and its centre ``crop`` x ``crop`` kept
    (:func:`resize_centre_crop`), as data preparation: the attack then works on that 224 x 224 image in [0, 1]
    and the model holds its normalisation, as for CIFAR-10. Classes are the sorted class folders (for ILSVRC2012
    the sorted WordNet ids, which is the class order of torchvision's pretrained weights).

    Args:
        split: the sub-folder of the root (``"val"``; the test labels of ILSVRC2012 were never published).
        root: the ImageNet root; defaults to ``$LABKIT_IMAGENET``.
        per_class: keep the first ``per_class`` files (by name) of each class; ``None`` keeps all. The whole
            validation set is 50,000 images, 7.5 GB as uint8 at 224 x 224; an attack needs a few hundred.
        resize, crop: the preparation's sizes in pixels (the standard 256 and 224).

    Raises:
        DataError: when neither ``root`` nor ``$LABKIT_IMAGENET`` is set, or the folder is not laid out as above
            (the message names the variable and the layout).
    """
    value = root if root is not None else os.environ.get(IMAGENET_ENV)
    if not value:
        raise _imagenet_error(f"{IMAGENET_ENV} is not set and no root= was given")
    if per_class is not None and per_class < 1:
        raise ValueError(f"per_class must be None or >= 1, got {per_class}")
    if crop > resize:
        raise ValueError(f"crop ({crop}) cannot exceed resize ({resize}): the crop is cut from the resized image")
    folder = Path(value).expanduser().resolve() / split
    if not folder.is_dir():
        raise _imagenet_error(f"no '{split}' folder in {folder.parent} ({IMAGENET_ENV}={value})")
    classes = class_folders(folder)
    if not classes:
        raise _imagenet_error(f"{folder} has no class folders ({IMAGENET_ENV}={value})")
    files = _class_files(folder, classes, _imagenet_error)
    if per_class is not None:
        # _class_files lists the files class by class, each class sorted by name.
        files = [f for _, group in groupby(files, key=lambda f: f[1]) for f in list(group)[:per_class]]
    source = f"folder:{folder}"

    def make() -> tuple[Tensor, Tensor]:
        images = [resize_centre_crop(img, resize, crop) for img in _decode(files, _imagenet_error)]
        return torch.stack(images), _labels(files)

    key = config_key([*_fingerprint(source, files), "imagenet", resize, crop])
    images, labels = _cached(f"imagenet-{split}-{key}", source, make)
    return Split(images=images, labels=labels, classes=classes, source=source, dataset="ImageNet")

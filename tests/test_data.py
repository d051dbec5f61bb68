"""CIFAR-10 loading from an ImageFolder tree made in the test."""

from __future__ import annotations

import pytest
import torch

from labkit import data
from labkit.data import CLASSES, DataError, load_cifar10


def test_loads_a_folder_as_uint8_tensors(tiny_folder):
    test = load_cifar10("test")
    assert test.images.shape == (40, 3, 32, 32) and test.images.dtype == torch.uint8
    assert torch.equal(test.labels, torch.arange(10).repeat_interleave(4))
    assert test.classes == CLASSES and test.source.startswith("folder:")
    assert test.floats(torch.tensor([0])).max() <= 1
    assert len(load_cifar10("train")) == 120


def test_decoded_tensors_are_cached(tiny_folder, monkeypatch):
    first = load_cifar10("test")
    monkeypatch.setattr(data, "_decode_folder", lambda *a: pytest.fail("decoded twice"))
    assert torch.equal(load_cifar10("test").images, first.images)


def test_root_argument_beats_the_environment(tiny_folder, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA", "/nonexistent")
    assert len(load_cifar10("test", root=tiny_folder)) == 40


def test_missing_folder_says_how_to_fix_it(tmp_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="LABKIT_DATA"):
        load_cifar10("test")


def test_malformed_folders_are_rejected(tiny_folder):
    import shutil

    shutil.rmtree(tiny_folder / "test" / "truck")
    with pytest.raises(DataError, match="class folders"):
        load_cifar10("test")
    with pytest.raises(ValueError):
        load_cifar10("validation")


def test_wrong_image_size_is_rejected(tmp_path, tmp_cache, monkeypatch):
    from conftest import write_image_folder

    write_image_folder(tmp_path / "big", {"test": 1}, size=48)
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path / "big"))
    with pytest.raises(DataError, match="not a 3x32x32"):
        load_cifar10("test")


def test_first_n_is_fixed_and_balanced_on_a_folder(tiny_folder):
    test = load_cifar10("test")
    a, b = data.first_n(test, 10), data.first_n(test, 20)
    assert torch.equal(a, b[:10])
    assert torch.equal(torch.bincount(test.labels[a], minlength=10), torch.ones(10, dtype=torch.long))
    assert torch.equal(torch.bincount(test.labels[b], minlength=10), torch.full((10,), 2))
    with pytest.raises(ValueError):
        data.first_n(test, 0)
    with pytest.raises(ValueError):
        data.first_n(test, len(test) + 1)


def test_first_n_prefixes_are_class_balanced_while_classes_last():
    # Unequal classes (one has a single image, one none), in a shuffled storage order.
    sizes = torch.tensor([7, 1, 4, 0, 9, 3, 5, 5, 2, 6])
    labels = torch.arange(10).repeat_interleave(sizes)
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(3))]
    split = data.Split(torch.zeros(len(labels), 3, 32, 32, dtype=torch.uint8), labels, CLASSES, "test")
    order = data.first_n(split, len(split))
    assert torch.equal(order.sort().values, torch.arange(len(split)))  # every image, once
    for n in range(1, len(split) + 1):
        counts = torch.bincount(labels[order[:n]], minlength=10)
        left = counts < sizes  # classes that still have images
        # A class with images left is never more than one behind any other class.
        assert (counts[left].min() >= counts.max() - 1) if left.any() else True, (n, counts.tolist())
        assert torch.equal(data.first_n(split, n), order[:n])  # a prefix of the longer order


def test_first_n_neither_uses_nor_changes_the_global_rng():
    labels = torch.arange(10).repeat(30)
    split = data.Split(torch.zeros(300, 3, 32, 32, dtype=torch.uint8), labels, CLASSES, "test")
    torch.manual_seed(1)
    state = torch.get_rng_state()
    first = data.first_n(split, 100)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(2)
    assert torch.equal(data.first_n(split, 100), first)
    assert not torch.equal(first[:30].sort().values, first[:30])  # in its own random order within the turns


def test_correctly_classified_returns_only_correct_images(tiny_folder, pixel_model):
    test = load_cifar10("test")
    idx = data.correctly_classified(pixel_model, test, 4)  # PixelTrigger says 0 on dark pixels
    preds = data.predict(pixel_model, test.images[idx])
    assert torch.equal(preds, test.labels[idx])
    with pytest.raises(ValueError, match="only"):
        data.correctly_classified(pixel_model, test, 39)


def test_split_name_never_shows_the_machines_path(tiny_folder) -> None:
    split = load_cifar10("test")
    assert split.source.startswith("folder:") and str(tiny_folder) not in split.name
    assert split.name == f"CIFAR-10, local ImageFolder copy '{tiny_folder.name}'"


def test_any_image_folder_loads_with_its_own_classes_and_sizes(tmp_path, tmp_cache):
    from torchvision.io import write_png

    from labkit.data import DataError, load_folder

    root = tmp_path / "signs"
    for label, (name, side) in enumerate((("stop", 12), ("yield", 20))):
        (root / name).mkdir(parents=True)
        for i in range(3):
            write_png(torch.full((3, side, side), 40 * label + i, dtype=torch.uint8), str(root / name / f"{i}.png"))
    with pytest.raises(DataError, match="pass size"):
        load_folder(root)  # 12 x 12 and 20 x 20 images: no common size
    split = load_folder(root, size=8)
    assert split.classes == ("stop", "yield") and split.images.shape == (6, 3, 8, 8)
    assert split.labels.tolist() == [0, 0, 0, 1, 1, 1] and split.name == "signs, local ImageFolder copy 'signs'"
    assert int(split.images[4, 0, 3, 3]) == 41  # a flat image stays flat when resized
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "missing")


# -- the dataset registry ------------------------------------------------------------------------------------------

def test_fashion_mnist_loads_from_local_idx_files(tmp_path, tmp_cache, monkeypatch):
    from conftest import write_idx

    write_idx(tmp_path / "fm")
    monkeypatch.setenv("LABKIT_FASHION_MNIST", str(tmp_path / "fm"))
    train, test = data.load_dataset("fashion-mnist", "train"), data.load_dataset("fashion-mnist", "test")
    assert train.images.shape == (40, 1, 28, 28) and test.images.shape == (20, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and test.labels.dtype == torch.int64
    assert torch.equal(test.labels, torch.arange(20) % 10)
    assert torch.equal(test.images[:, 0, 0, 0], (20 * (torch.arange(20) % 10)).to(torch.uint8))
    assert test.classes == data.FASHION_CLASSES and "Fashion-MNIST" in test.name and str(tmp_path) not in test.name
    assert data.dataset_source("fashion-mnist") == "folder:fm" and data.available("fashion-mnist")


def test_mnist_reads_uncompressed_idx_files_too(tmp_path, tmp_cache, monkeypatch):
    from conftest import write_idx

    write_idx(tmp_path / "digits", gz=False)
    monkeypatch.setenv("LABKIT_MNIST", str(tmp_path / "digits"))
    assert torch.equal(data.load_dataset("mnist", "train").labels, torch.arange(40) % 10)


def test_a_missing_idx_file_is_named_with_the_variable(tmp_path, tmp_cache, monkeypatch):
    from conftest import write_idx

    write_idx(tmp_path / "fm")
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("LABKIT_FASHION_MNIST", str(tmp_path / "fm"))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*LABKIT_FASHION_MNIST"):
        data.load_dataset("fashion-mnist", "test")


def test_gtsrb_loads_43_classes_resized_to_32(tmp_path, tmp_cache, monkeypatch):
    from torchvision.io import write_png

    for split in ("train", "test"):
        for c in range(43):
            d = tmp_path / "gtsrb" / split / f"{c:05d}"
            d.mkdir(parents=True)
            write_png(torch.full((3, 30 + c % 7, 40), c, dtype=torch.uint8), str(d / "a.png"))  # sizes vary
    monkeypatch.setenv("LABKIT_GTSRB", str(tmp_path / "gtsrb"))
    test = data.load_dataset("gtsrb", "test")
    assert test.images.shape == (43, 3, 32, 32) and torch.equal(test.labels, torch.arange(43))
    assert torch.equal(test.images[:, 0, 16, 16], torch.arange(43, dtype=torch.uint8))  # flat colours survive
    assert test.dataset == "GTSRB" and len(test.classes) == 43


def test_gtsrb_without_a_copy_or_with_missing_classes_says_what_to_set(tmp_path, tmp_cache, monkeypatch):
    monkeypatch.delenv("LABKIT_GTSRB", raising=False)
    assert not data.available("gtsrb")
    with pytest.raises(DataError, match="LABKIT_GTSRB"):
        data.load_dataset("gtsrb", "test")
    (tmp_path / "g" / "test" / "00000").mkdir(parents=True)
    monkeypatch.setenv("LABKIT_GTSRB", str(tmp_path / "g"))
    with pytest.raises(DataError, match="43 class folders"):
        data.load_dataset("gtsrb", "test")


def test_the_registry_describes_each_dataset_and_rejects_unknown_names(tiny_folder):
    assert {"cifar10", "fashion-mnist", "mnist", "gtsrb"} <= set(data.DATASETS)
    for spec in data.DATASETS.values():
        assert len(spec.mean) == len(spec.std) == spec.channels
    assert data.load_dataset("cifar10", "test").images.shape == (40, 3, 32, 32)
    assert data.dataset_source("cifar10") == "folder:cifar"
    with pytest.raises(ValueError, match="registered"):
        data.load_dataset("imagenette")


# -- ImageNet (a generated ILSVRC2012-like tree: no ImageNet on these machines) ------------------------------------

@pytest.fixture
def imagenet_root(tmp_path, tmp_cache, monkeypatch):
    from conftest import write_imagenet_folder

    root = write_imagenet_folder(tmp_path / "imagenet")
    monkeypatch.setenv("LABKIT_IMAGENET", str(root))
    return root


def test_imagenet_images_of_any_size_become_224_by_224_once(imagenet_root, monkeypatch):
    val = data.load_imagenet()
    assert val.images.shape == (6, 3, 224, 224) and val.images.dtype == torch.uint8
    assert val.classes == ("n01440764", "n01443537", "n01484850")  # sorted WordNet ids: torchvision's class order
    assert torch.equal(val.labels, torch.tensor([0, 0, 1, 1, 2, 2])) and val.dataset == "ImageNet"
    monkeypatch.setattr(data, "_decode", lambda *a: pytest.fail("decoded twice"))
    assert torch.equal(data.load_imagenet().images, val.images)


def test_imagenet_per_class_keeps_the_first_files_of_each_class(imagenet_root):
    full, one = data.load_imagenet(), data.load_imagenet(per_class=1)
    assert torch.equal(one.labels, torch.tensor([0, 1, 2]))
    assert torch.equal(one.images, full.images[[0, 2, 4]])


def test_resize_centre_crop_keeps_the_centre_at_the_shorter_side_256():
    img = torch.randint(0, 256, (3, 256, 400), dtype=torch.uint8)
    # The shorter side is already 256: no resampling, the crop is the middle 224 rows and columns.
    assert torch.equal(data.resize_centre_crop(img), img[:, 16:240, 88:312])
    # 512 x 800, black left half, white right half: halved to 256 x 400 the edge is at column 200, which the
    # crop (columns 88-311) moves to column 112; away from the antialiasing filter's reach both sides stay pure.
    halves = torch.zeros(3, 512, 800, dtype=torch.uint8)
    halves[:, :, 400:] = 255
    out = data.resize_centre_crop(halves)
    assert out.shape == (3, 224, 224) and (out[:, :, :111] == 0).all() and (out[:, :, 113:] == 255).all()


def test_imagenet_without_the_variable_or_the_layout_names_the_variable(tmp_path, tmp_cache, monkeypatch):
    monkeypatch.delenv("LABKIT_IMAGENET", raising=False)
    with pytest.raises(DataError, match="LABKIT_IMAGENET is not set"):
        data.load_imagenet()
    monkeypatch.setenv("LABKIT_IMAGENET", str(tmp_path))  # exists, but holds no val/
    with pytest.raises(DataError, match=r"no 'val' folder.*\n.*LABKIT_IMAGENET"):
        data.load_imagenet()
    (tmp_path / "val" / "n01440764").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no"):
        data.load_imagenet()

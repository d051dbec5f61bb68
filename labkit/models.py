"""Model registry. Every model takes [0, 1] images; normalisation is its first layer.

Attacks therefore never know about mean and std (the RobustBench convention):
the pixel an attack writes is the pixel the reader sees.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from labkit._checks import check_number
from labkit.data import dataset_spec

#: CIFAR-10 channel statistics (training set, RGB, [0, 1] units).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """(x - mean) / std per channel; x: (N, C, H, W) in [0, 1]."""

    def __init__(self, mean: tuple[float, ...] = CIFAR10_MEAN, std: tuple[float, ...] = CIFAR10_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def small_cnn(num_classes: int = 10, widths: tuple[int, int, int] = (32, 64, 128), in_channels: int = 3) -> nn.Module:
    """A VGG-style CNN: three stages of two 3x3 conv-BN-ReLU, max-pool between, global max-pool.

    With the default widths it has 289k parameters and reaches about 86% on the
    offline CIFAR-10 copy after 15 epochs (~6 min on 2 CPU cores): fast enough for
    the ``smoke`` and ``cpu`` profiles, good enough that attack numbers mean something.
    """
    layers: list[nn.Module] = []
    cin = in_channels
    for i, w in enumerate(widths):
        layers += _conv_bn(cin, w) + _conv_bn(w, w)
        if i < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
        cin = w
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs, identity or 1x1 projection shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet18(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """CIFAR ResNet-18 (He et al. 2016): 3x3 stem, no max-pool, stages 64-128-256-512, 11.2M parameters."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)


VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """CIFAR VGG-16 with batch norm (Simonyan & Zisserman 2015): 13 convs, one linear head, 14.7M parameters."""
    layers: list[nn.Module] = []
    cin = in_channels
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += _conv_bn(cin, int(v))
            cin = int(v)
    layers += [nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def allconv(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """All-CNN-C (Springenberg et al. 2015), one of Su et al.'s three CIFAR-10 networks: no pooling layers, two
    3x3 convs of stride 2 in their place, a 1x1 conv to the classes and global average pooling; 1.37M parameters.
    Batch norm after every conv but the last (the original has none; labkit's other networks have it, and it makes
    the ``cpu`` profile's short schedule train); no dropout."""
    layers = (_conv(in_channels, 96, 3) + _conv(96, 96, 3) + _conv(96, 96, 3, 2) + _conv(96, 192, 3) + _conv(192, 192, 3)
              + _conv(192, 192, 3, 2) + _conv(192, 192, 3) + _conv(192, 192, 1))
    return nn.Sequential(*layers, nn.Conv2d(192, num_classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def nin(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Network in Network (Lin et al. 2014), one of Su et al.'s three CIFAR-10 networks: three mlpconv blocks
    (a 5x5 or 3x3 conv followed by two 1x1 convs), max- then average-pooling (3x3, stride 2) between them, dropout
    0.5 after each pooling, a last 1x1 conv to the classes and global average pooling; 0.97M parameters. Batch
    norm as in ``allconv``; no ReLU after the last conv (its outputs are the logits)."""
    return nn.Sequential(
        *_conv(in_channels, 192, 5), *_conv(192, 160, 1), *_conv(160, 96, 1), nn.MaxPool2d(3, 2, padding=1), nn.Dropout(0.5),
        *_conv(96, 192, 5), *_conv(192, 192, 1), *_conv(192, 192, 1), nn.AvgPool2d(3, 2, padding=1), nn.Dropout(0.5),
        *_conv(192, 192, 3), *_conv(192, 192, 1), nn.Conv2d(192, num_classes, 1), nn.AdaptiveAvgPool2d(1),
        nn.Flatten())


def survey_cnn(num_classes: int = 10, in_channels: int = 3, widths: tuple[int, int] = (32, 64),
               hidden: int = 128) -> nn.Module:
    """The survey's CNN (the WPI study of issue #13), as we read its description: two convolutional blocks, each a
    3x3 conv, batch norm, ReLU, 2x2 max-pool and dropout 0.25, then a fully connected head (``hidden`` units,
    ReLU, dropout 0.5) ending in log-softmax. The study gives neither widths nor kernel sizes; these are ours
    (about 0.4M parameters on 28 x 28 grey images). Any input size divisible by 4 and any channel count.

    The log-softmax output is kept because the survey has it: its values are logits shifted per image by one
    constant, so softmax, argmax, cross-entropy and the logit differences CW and DeepFool use are unchanged.
    """
    layers: list[nn.Module] = []
    cin = in_channels
    for w in widths:
        layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2), nn.Dropout(0.25)]
        cin = w
    return nn.Sequential(*layers, nn.Flatten(), nn.LazyLinear(hidden), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Linear(hidden, num_classes), nn.LogSoftmax(dim=1))


# -- bit-depth reduction (labkit.defences.BitDepth applies it; labkit.certify bounds it) ---------------------------

def quantise(x: Tensor, levels: int) -> Tensor:
    """Each value of ``x`` rounded to the nearest of ``levels`` + 1 evenly spaced values in [0, 1]:
    round(clamp(x, 0, 1) * levels) / levels, in ``x``'s dtype (``levels`` = 2**bits - 1 for ``bits`` bits)."""
    return (x.clamp(0, 1) * levels).round() / levels


# -- the median filter in front (labkit.train builds it from TrainConfig.median) ------------------------------------

def median_blur(x: Tensor, size: int = 3) -> Tensor:
    """Per-channel median of each ``size`` x ``size`` window of ``x`` (N, C, H, W), reflect padding; same shape.

    Odd ``size``: centred windows, the median itself. Even ``size``: no centre pixel; the window of output (i, j)
    spans rows i..i+size/2 and columns j..j+size/2 (the image shifts half a pixel to the top left) and the output
    is the mean of the two middle values. Reflection (row H-2 mirrors past the last), never replication, so a
    border pixel never appears twice in its own window. Differentiable: the gradient reaches the middle values.
    """
    h, w = x.shape[2:]
    before = (size - 1) // 2  # odd size: centred; even size: the extra row and column come after the pixel
    after = size - 1 - before
    if max(before, after) >= min(h, w):
        raise ValueError(f"a {size}x{size} median needs images larger than {max(before, after)} pixels, got {h}x{w}")
    return valid_median(nn.functional.pad(x, (before, after, before, after), mode="reflect"), size)


def valid_median(padded: Tensor, size: int) -> Tensor:
    """The median of every ``size`` x ``size`` window lying inside ``padded`` (N, C, H + size - 1, W + size - 1):
    (N, C, H, W); for an even ``size`` the mean of the two middle values."""
    n, c = padded.shape[:2]
    h, w = padded.shape[2] - size + 1, padded.shape[3] - size + 1
    window = padded.unfold(2, size, 1).unfold(3, size, 1).reshape(n, c, h, w, size * size)
    lower = window.median(dim=-1).values  # torch's median of an even count is the lower middle value
    if size % 2:
        return lower
    return (lower - (-window).median(dim=-1).values) / 2  # the upper middle value is -median(-window)


class MedianBlur(nn.Module):
    """``median_blur`` as a layer: a model's first layer (before ``Normalize``), so it filters [0, 1] pixels.

    In front of a network it makes one-pixel robustness provable: a median is non-decreasing in every input, and
    as a function of the one pixel's colour each output in the pixel's neighbourhood is clamp(colour, a, b), a
    and b its values at colour 0 and 1, so a bound over the whole colour cube is a box as narrow as the middle
    values of the neighbourhood (``labkit.certify``; ``labkit.defences.MedianFilter`` is the same filter as an
    input transformation in front of a model trained without it).
    """

    def __init__(self, size: int = 3):
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise ValueError(f"size must be an integer >= 2, got {size!r}")
        self.size = size

    @property
    def median_window(self) -> int:
        """The window's side: how ``labkit.certify`` recognises the filter (as ``labkit.defences.MedianFilter``)."""
        return self.size

    def extra_repr(self) -> str:
        return f"size={self.size}"

    def forward(self, x: Tensor) -> Tensor:
        return median_blur(x, self.size)


# -- the attention gate (APR's; labkit.train builds it from TrainConfig.gate) --------------------------------------

#: The gate's modes: one map for all colours, or one per colour.
GATE_MODES = ("pixel", "channel")


class AttentionGate(nn.Module):
    """A(x) * x with A(x) = sigmoid(conv(x)): a learnable, per-pixel gate on [0, 1] images (N, 3, H, W).

    ``mode="pixel"``: the convolution maps RGB to one channel, so A is a single map (N, 1, H, W) broadcast
    over the colours: the interpretable attention map of the paper. ``mode="channel"``: RGB to RGB, one map
    per colour (N, 3, H, W). ``kernel_size`` is odd so the map is centred on the pixel it gates ('same'
    padding, zeros outside the image). The gate sits before the model's ``Normalize``, so it sees pixels and
    its output stays in [0, x] (A is in (0, 1)): it can only dim a pixel, never brighten one.

    Initialisation: zero weights and bias logit(``initial``), so A starts as the constant ``initial``
    everywhere. With the default 0.5 the gate is transparent up to a global scale, which the first
    conv + batch-norm of every registered model absorbs (conv is linear, BN removes the scale), and the
    sigmoid sits at its steepest (slope 0.25), so the map moves as soon as training finds a use for it.
    Any map other than a constant is learnt, not inherited from a random initialisation.
    """

    def __init__(self, mode: str = "pixel", kernel_size: int = 3, initial: float = 0.5):
        super().__init__()
        if mode not in GATE_MODES:
            raise ValueError(f"mode must be one of {GATE_MODES}, not {mode!r}")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd integer >= 1 (the map is centred on its pixel), "
                             f"got {kernel_size!r}")
        initial = check_number("initial", initial, 0.0, 1.0)
        if not 0 < initial < 1:
            raise ValueError(f"initial must lie strictly between 0 and 1 (a sigmoid's value), got {initial}")
        self.mode, self.kernel_size, self.initial = mode, kernel_size, initial
        self.conv = nn.Conv2d(3, 1 if mode == "pixel" else 3, kernel_size, padding="same")
        nn.init.zeros_(self.conv.weight)
        nn.init.constant_(self.conv.bias, math.log(initial / (1 - initial)))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, kernel_size={self.kernel_size}"

    def attention(self, x: Tensor) -> Tensor:
        """The map A(x) in (0, 1): (N, 1, H, W) for ``"pixel"``, (N, 3, H, W) for ``"channel"``."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"AttentionGate expects RGB images (N, 3, H, W) in [0, 1], got shape {tuple(x.shape)}")
        return torch.sigmoid(self.conv(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.attention(x) * x


def gate_of(model: nn.Module) -> AttentionGate | None:
    """The model's ``AttentionGate`` (the first one found), or ``None`` for a model without one."""
    return next((m for m in model.modules() if isinstance(m, AttentionGate)), None)


#: Architectures by name; each builder takes ``num_classes`` and ``in_channels`` (``build_model`` passes the dataset's).
REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": small_cnn,
    "resnet18": resnet18,
    "vgg16": vgg16,
    "allconv": allconv,
    "nin": nin,
    "survey_cnn": survey_cnn,
}


def build_model(name: str, num_classes: int = 10, dataset: str = "cifar10") -> nn.Sequential:
    """``Normalize`` with ``dataset``'s statistics, then the registered architecture ``name`` for its channels;
    input (N, C, H, W) in [0, 1] (CIFAR-10: (N, 3, 32, 32)). ``dataset`` is a ``labkit.data.DATASETS`` name."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {sorted(REGISTRY)}")
    spec = dataset_spec(dataset)
    net = REGISTRY[name](num_classes, in_channels=spec.channels)
    if any(isinstance(m, nn.LazyLinear) for m in net.modules()):
        with torch.no_grad():  # materialise lazy layers at the dataset's image size, so the weights exist
            net.eval()(torch.zeros(1, spec.channels, spec.size, spec.size))
    return nn.Sequential(Normalize(spec.mean, spec.std), net)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` means CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work on ``device`` (no-op on CPU), so wall-clock timings measure the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: str | torch.device = "auto") -> str:
    """The machine the timings ran on, in words: GPU name, or CPU model and thread count."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (CUDA)"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {torch.get_num_threads()} PyTorch threads (CPU)"


# -- ImageNet models (torchvision's architectures, weights from a local file; never a download) --------------------

#: ImageNet channel statistics (training set, RGB, [0, 1] units): those torchvision's pretrained weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The ImageNet architectures: Su et al.'s AlexNet (they attacked BVLC's Caffe AlexNet; torchvision's is the
#: one-weird-trick variant, the nearest with PyTorch weights) and the APR paper's ResNet-50 and VGG-19. Each maps
#: to torchvision's builder and the name of its weights enum member. IMAGENET1K_V1 everywhere: the original
#: training recipes (ResNet-50 76.1% top-1), the ones papers of that era report against, not V2's newer recipe.
IMAGENET_ARCHITECTURES: dict[str, tuple[str, str]] = {
    "alexnet": ("alexnet", "AlexNet_Weights.IMAGENET1K_V1"),
    "resnet50": ("resnet50", "ResNet50_Weights.IMAGENET1K_V1"),
    "vgg19": ("vgg19", "VGG19_Weights.IMAGENET1K_V1"),
}


def _weights_url(name: str) -> str:
    """torchvision's download address of ``name``'s pretrained weights (only its file name is used offline)."""
    import torchvision.models as tvm

    enum_name, member = _imagenet_spec(name)[1].split(".")
    return str(getattr(getattr(tvm, enum_name), member).url)


def _imagenet_spec(name: str) -> tuple[str, str]:
    if name not in IMAGENET_ARCHITECTURES:
        raise ValueError(f"unknown ImageNet model {name!r}; available: {sorted(IMAGENET_ARCHITECTURES)}")
    return IMAGENET_ARCHITECTURES[name]


def imagenet_weights_file(name: str) -> Path:
    """Where the pretrained weights of ImageNet architecture ``name`` are looked for:
    ``$TORCH_HOME/hub/checkpoints/<torchvision's file name>`` (``~/.cache/torch/hub/checkpoints`` without
    ``TORCH_HOME``), the file torchvision itself would download, e.g. ``resnet50-0676ba61.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(_weights_url(name)).path).name


def find_imagenet_weights(name: str, weights_file: str | os.PathLike | None = None) -> Path:
    """The weights file of ``name``: ``weights_file`` if given, else ``imagenet_weights_file(name)``.

    Raises FileNotFoundError naming the missing file, where to put it and where it can be downloaded on a machine
    with internet: labkit never downloads weights while it runs.
    """
    path = Path(weights_file).expanduser() if weights_file is not None else imagenet_weights_file(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"no weights file for {name} at {path}. labkit does not download weights at run time: download "
            f"{_weights_url(name)} on a machine with internet and put it at {imagenet_weights_file(name)} (set "
            "TORCH_HOME to choose the folder above hub/checkpoints), or pass its path (weights_file=, or --weights "
            "on the command line).")
    return path


def imagenet_model(name: str, pretrained: bool = True, weights_file: str | os.PathLike | None = None,
                   gate: str = "none", gate_kernel: int = 3, num_classes: int = 1000) -> nn.Sequential:
    """An ImageNet classifier taking (N, 3, 224, 224) images in [0, 1]: ImageNet's ``Normalize``, then torchvision's
    architecture ``name`` (``IMAGENET_ARCHITECTURES``), in eval mode.

    Args:
        pretrained: load the pretrained weights from ``weights_file``, else from ``$TORCH_HOME/hub/checkpoints``
            (``find_imagenet_weights``; a missing file raises FileNotFoundError saying where to put it); False
            keeps torchvision's random initialisation (tests, timing).
        gate: ``"none"``, or APR's ``AttentionGate`` mode (``"pixel"``, ``"channel"``) in front, as
            ``labkit.train`` places it: ``Sequential(gate, Sequential(Normalize, net))``. Its start (A = 0.5)
            halves every pixel, which pretrained weights have never seen: a gated model is one to fine-tune.
        gate_kernel: the gate's kernel size (pixels, odd).
        num_classes: 1000 for ImageNet; another count needs ``pretrained=False`` (the head would not fit).
    """
    import torchvision.models as tvm

    builder, _ = _imagenet_spec(name)
    if gate not in ("none", *GATE_MODES):
        raise ValueError(f"gate must be 'none' or one of {GATE_MODES}, not {gate!r}")
    if pretrained and num_classes != 1000:
        raise ValueError(f"pretrained {name} has 1000 classes; num_classes={num_classes} needs pretrained=False")
    # Find the file before building: VGG-19's 143M parameters take seconds to initialise, only to be replaced.
    path = find_imagenet_weights(name, weights_file) if pretrained else None
    net = getattr(tvm, builder)(weights=None, num_classes=num_classes)
    if path is not None:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model = nn.Sequential(Normalize(IMAGENET_MEAN, IMAGENET_STD), net)
    if gate != "none":
        model = nn.Sequential(AttentionGate(mode=gate, kernel_size=gate_kernel), model)
    return model.eval()

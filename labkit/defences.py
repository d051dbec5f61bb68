"""Baseline defences against the one-pixel attack: input transformations, training objectives, gradient masking.

Input transformations (``BitDepth``, ``JPEG``, ``GaussianSmoothing``, ``MedianFilter``) are parameter-free
``nn.Module`` s on [0, 1] images (N, C, H, W). ``defended(model, transform)`` puts one in front of a model, so an
attack attacks the whole pipeline (the only honest evaluation of a preprocessing defence); ``defended_key`` gives
the pipeline its own cache key for attack records.

Training-time defences are objectives for ``labkit.train.TrainConfig(objective=...)``, trained and cached like
any model. Their budget per training image (measured seconds are in each history's ``seconds`` and
``seconds_inner_attack``):

* ``OnePixelAT``: one input-gradient pass and ``8 * positions`` fp32 forwards per training image (64 by
  default), then a step on the clean + adversarial batch (2x). The inner attack dominates.
* ``PGDAT``: ``steps`` forward+backward passes for the attack, then the step: about ``steps + 1`` x plain.
* ``Distillation``: a teacher trained at temperature T (one plain run), then one teacher forward per student
  step: about 2.3 x plain in all.
* ``MixedAT``: the survey's four attacks in turn, one per mini-batch, then a step on the clean + adversarial
  batch; the mix's cost is the mean of the four inner attacks'.

``GradientMasking`` (``NoisyGradient`` in front of a model) trains nothing: it adds noise to the input gradient only.
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit._checks import check_int, check_positive, is_number
from labkit.attacks import SURVEY_ATTACKS, GradientCorner, survey_attack
from labkit.cache import config_key
from labkit.models import median_blur, quantise, synchronize
from labkit.train import TrainConfig, TrainContext, get_or_train

__all__ = [
    "BitDepth", "JPEG", "GaussianSmoothing", "MedianFilter", "InputTransform", "standard_transforms",
    "defended", "defended_key", "OnePixelAT", "PGDAT", "SoftmaxTemperature", "Distillation",
    "distillation_config", "MixedAT", "NoisyGradient", "GradientMasking",
]


# -- input transformations -----------------------------------------------------------------------------------------

def _attach(x: Tensor, y: Tensor, straight_through: bool) -> Tensor:
    """``y``'s values with a gradient path to ``x``: the identity (straight-through, BPDA) or zero.

    Rounding and JPEG have no useful derivative (zero almost everywhere, or none at all). Straight-through
    (Athalye et al. 2018's BPDA with the identity) lets gradient attacks such as the inner attack of
    adversarial training or FGSM see through the transform; without it they get a zero gradient, which is
    gradient masking, not robustness.
    """
    # Both add an exact zero to y, so the forward values are y's bit for bit (x + (y - x) would round).
    if straight_through:
        return y.detach() + (x - x.detach())
    return y.detach() + 0.0 * x  # zero gradient, yet still connected, so autograd.grad(loss, x) works


class InputTransform(nn.Module):
    """A fixed, parameter-free map of [0, 1] images (N, C, H, W) to [0, 1] images of the same shape.

    ``spec()`` describes it as plain data (hashed into a pipeline's cache key); ``label`` is its name in tables.
    Subclasses list their constructor arguments in ``_fields`` and implement ``transform``.
    """

    _fields: tuple[str, ...] = ()

    def spec(self) -> dict[str, Any]:
        """``{"transform": class name, <argument>: value, ...}``: equal specs mean equal transforms."""
        return {"transform": type(self).__name__, **{f: getattr(self, f) for f in self._fields}}

    @property
    def label(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        return ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"{self.label} expects images (N, C, H, W), got shape {tuple(x.shape)}")
        return self.transform(x)

    def transform(self, x: Tensor) -> Tensor:
        raise NotImplementedError


class BitDepth(InputTransform):
    """Colour-depth reduction to ``bits`` bits per channel (Xu et al. 2018's feature squeezing).

    Each value becomes round(x * (2**bits - 1)) / (2**bits - 1); ``bits=8`` is the identity on 8-bit images.
    The gradient is straight-through by default (see ``_attach``).
    """

    _fields = ("bits", "straight_through")

    def __init__(self, bits: int, straight_through: bool = True):
        super().__init__()
        self.bits = check_int("bits", bits, 1, 8)
        self.straight_through = bool(straight_through)

    @property
    def label(self) -> str:
        return f"bit depth {self.bits}"

    @property
    def quantise_levels(self) -> int:
        """Levels above 0 per channel, 2**bits - 1: how ``labkit.certify`` recognises and bounds the rounding."""
        return 2 ** self.bits - 1

    def transform(self, x: Tensor) -> Tensor:
        return _attach(x, quantise(x, self.quantise_levels), self.straight_through)


class JPEG(InputTransform):
    """JPEG compression at ``quality`` (1..100) and back, with torchvision's codec, batched.

    Images are rounded to uint8 (as a saved image would be), encoded as a list and decoded as a list; on a
    CUDA device both run on the GPU (nvjpeg), elsewhere on the CPU (libjpeg). The two codecs differ in the
    last bit, so a pipeline's predictions may differ slightly between devices. Straight-through gradient by
    default (see ``_attach``). Note that the offline CIFAR-10 copy is already JPEG-compressed once (~q75).
    """

    _fields = ("quality", "straight_through")

    def __init__(self, quality: int, straight_through: bool = True):
        super().__init__()
        self.quality = check_int("quality", quality, 1, 100)
        self.straight_through = bool(straight_through)

    @property
    def label(self) -> str:
        return f"JPEG q{self.quality}"

    def transform(self, x: Tensor) -> Tensor:
        if x.shape[1] not in (1, 3):
            raise ValueError(f"JPEG needs 1 or 3 channels, got {x.shape[1]}")
        if len(x) == 0:
            return x.clone()
        from torchvision.io import decode_jpeg, encode_jpeg

        on_gpu = x.device.type == "cuda"
        pixels = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8)
        pixels = pixels if on_gpu else pixels.cpu()
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its codec in favour of TorchCodec, which this project does not install.
            warnings.simplefilter("ignore", DeprecationWarning)
            encoded = encode_jpeg(list(pixels.unbind(0)), quality=self.quality)
            decoded = decode_jpeg([e.cpu() for e in encoded], device=x.device if on_gpu else "cpu")
        y = torch.stack(decoded).to(device=x.device, dtype=x.dtype) / 255
        return _attach(x, y, self.straight_through)


class GaussianSmoothing(InputTransform):
    """Gaussian blur with an odd ``kernel_size`` and standard deviation ``sigma`` (pixels), reflect padding.

    torchvision's ``gaussian_blur``; differentiable, so gradient attacks see the true gradient.
    """

    _fields = ("kernel_size", "sigma")

    def __init__(self, kernel_size: int = 3, sigma: float = 1.0):
        super().__init__()
        self.kernel_size = check_int("kernel_size", kernel_size, 1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the kernel needs a centre pixel), got {kernel_size}")
        self.sigma = check_positive("sigma", sigma)

    @property
    def label(self) -> str:
        return f"Gaussian {self.kernel_size}x{self.kernel_size} s{self.sigma:g}"

    def transform(self, x: Tensor) -> Tensor:
        from torchvision.transforms.functional import gaussian_blur

        k = self.kernel_size
        return gaussian_blur(x, [k, k], [self.sigma, self.sigma])


class MedianFilter(InputTransform):
    """Per-channel median over a ``size`` x ``size`` window (Xu et al. 2018's median smoothing), batched.

    The window is gathered with ``unfold``; the output is the mean of the two middle values of each window,
    which for odd windows is the median itself. For an even window there is no centre pixel: the window of output
    (i, j) spans rows i..i+size/2 and columns j..j+size/2 (for 2x2: the pixel and its right, lower and
    lower-right neighbours), so the image shifts by half a pixel towards the top left. Borders are padded by
    reflection (row/column H-2 mirrors past the last one), never by replication, so a border pixel never
    appears twice in its own window (its neighbour does: reflection repeats the row and column next to the
    border in a 3x3 border window, a diagonal neighbour four times at a corner; 2x2 windows never repeat one).

    What it does to a one-pixel change: changing one value of a window moves each of its order statistics by
    at most one rank (per copy of the pixel in the window), so every output whose window holds the changed
    pixel once stays between the neighbouring order statistics of the unchanged window (for 3x3: between its
    4th and 6th smallest values; for 2x2: between the mean of its two smallest and the mean of its two
    largest), and outputs whose window does not hold it do not change at all. The change that survives the
    filter is therefore bounded by the spread of the middle values of the pixel's neighbourhood, whatever
    colour the attacker writes. It is removed *exactly* only where those middle values are equal, i.e. on
    locally flat regions; on texture the median moves (a 3x3 window holding 0.1, 0.2, ..., 0.9 has median
    0.5; write 0.55 over its 0.1 and the median becomes 0.55).
    Differentiable: the gradient flows to the middle values.
    """

    _fields = ("size",)

    def __init__(self, size: int = 3):
        super().__init__()
        self.size = check_int("size", size, 2)

    @property
    def label(self) -> str:
        return f"median {self.size}x{self.size}"

    @property
    def median_window(self) -> int:
        """The window's side: how ``labkit.certify`` recognises the filter and bounds it (odd windows only)."""
        return self.size

    def transform(self, x: Tensor) -> Tensor:
        return median_blur(x, self.size)


def standard_transforms() -> list[InputTransform]:
    """The sweep of Lab 03: bit depth, JPEG quality, Gaussian smoothing and the 2x2 / 3x3 median filter.

    Bit depths 2-5 (Xu et al. 2018 keep 5 bits on CIFAR-10; 1 bit leaves a colour image barely recognisable,
    and attacking only the images every pipeline still classifies would then select the easiest images),
    JPEG qualities from 90 down to 10 (the data's own compression is about 75; Guo et al. 2018 use 75), two
    Gaussian widths and the two smallest median windows.
    """
    return [*(BitDepth(b) for b in (2, 3, 4, 5)), *(JPEG(q) for q in (90, 75, 50, 25, 10)),
            GaussianSmoothing(3, 0.5), GaussianSmoothing(3, 1.0), MedianFilter(2), MedianFilter(3)]


def defended(model: nn.Module, transform: nn.Module) -> nn.Sequential:
    """``transform`` followed by ``model``, in eval mode: the pipeline an attack must attack.

    The model is shared, not copied (its mode is set to eval).
    """
    return nn.Sequential(transform, model).eval()


def defended_key(model_key: str, defence: Any) -> str:
    """The cache key of a defended pipeline: the model's key and the defence's ``spec()``.

    Attack records of a pipeline are then cached apart from the bare model's and from other pipelines'.
    ``defence`` is an ``InputTransform`` (``NoisyGradient`` included) or a ``GradientMasking`` wrapper.
    """
    return config_key("defended", model_key, defence.spec())


# -- training-time defences ----------------------------------------------------------------------------------------


@contextmanager
def _inner_attack(model: nn.Module, ctx: TrainContext, autocast: bool) -> Iterator[None]:
    """Run an adversarial-training inner attack: model in eval mode, timed into ``ctx.timers["inner_attack"]``.

    Eval mode keeps batch-norm statistics from being updated by (and computed over) half-made adversarial
    images; ``autocast=False`` runs the attack in fp32 even inside the training loop's bf16 autocast.
    """
    was_training = model.training
    model.eval()
    synchronize(ctx.device)
    start = time.perf_counter()
    try:
        with nullcontext() if autocast else torch.autocast(ctx.device.type, enabled=False):
            yield
    finally:
        synchronize(ctx.device)
        ctx.timers["inner_attack"] = ctx.timers.get("inner_attack", 0.0) + time.perf_counter() - start
        model.train(was_training)


@dataclass(frozen=True)
class OnePixelAT:
    """One-pixel adversarial training: each mini-batch, clean images and their one-pixel adversarial versions.

    The inner attack is ``labkit.attacks.GradientCorner`` on the current model (eval mode, fp32, no autograd
    graph kept): one input-gradient pass ranks the pixels, then the 8 corner colours are tried at the top
    ``positions`` of them (``8 * positions`` queries per image; 64 by default). Where it finds no success,
    its best candidate (lowest true-class probability) is trained on anyway. Loss: (1 - alpha) CE(clean) +
    alpha CE(adversarial), both halves in one forward pass so batch norm sees the mixed batch (as Kurakin et
    al. 2017 mix their batches; ``labkit.apr.APRObjective`` does the same with its own weights).

    Cost per training image: one gradient pass and ``8 * positions`` fp32 forwards for the attack, then a
    step on twice the batch. The attack dominates (64 fp32 forwards against about 3 bf16
    forward-equivalents for a plain step); ``history[i]["seconds_inner_attack"]`` measures it.
    """

    alpha: float = 0.5  # weight of the adversarial half of the loss (Goodfellow et al. 2015 use 0.5)
    positions: int = 8  # pixels the inner attack tries, by input-gradient rank (x 8 corner colours = queries)

    def __post_init__(self) -> None:
        if not is_number(self.alpha) or not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be a fraction in [0, 1], got {self.alpha!r}")
        check_int("positions", self.positions, 1)

    def setup(self, ctx: TrainContext) -> None:
        """Nothing to prepare: the inner attack uses the model being trained."""

    def adversarial(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: TrainContext) -> Tensor:
        """One-pixel adversarial versions of ``images`` (best candidates where the attack fails)."""
        with _inner_attack(model, ctx, autocast=False), torch.no_grad():
            result = GradientCorner(model, positions=self.positions)(images.detach().float(), labels)
        return result.adv_images.to(images.device, images.dtype)

    def loss(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: TrainContext) -> Tensor:
        adv = self.adversarial(model, images, labels, ctx)
        ce = F.cross_entropy(model(torch.cat([images, adv])).float(), labels.repeat(2), reduction="none")
        n = len(labels)
        return (1 - self.alpha) * ce[:n].mean() + self.alpha * ce[n:].mean()


@dataclass(frozen=True)
class PGDAT:
    """Madry et al. (2018) adversarial training: minimise the loss at a PGD-L-infinity adversary.

    Random start uniform in the eps-ball, ``steps`` signed-gradient steps of size ``step``, projected onto the
    ball and [0, 1]; the whole batch at once. The inner attack runs in eval mode under the loop's autocast
    (bf16 on CPU: the sign of the gradient survives the precision) and its random start draws from
    ``ctx.generator``, so a resumed run replays it. Cost: about ``steps + 1`` times plain training.
    """

    eps: float = 8 / 255  # L-infinity radius in [0, 1] pixel units (Madry et al.'s CIFAR-10 value)
    step: float = 2 / 255  # step size per iteration (pixel units)
    steps: int = 7  # PGD iterations per mini-batch (Madry et al. train with 7)

    def __post_init__(self) -> None:
        check_positive("eps", self.eps)
        check_positive("step", self.step)
        check_int("steps", self.steps, 1)

    def setup(self, ctx: TrainContext) -> None:
        """Nothing to prepare."""

    def adversarial(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: TrainContext) -> Tensor:
        """PGD adversarial versions of ``images`` (within ``eps`` in L-infinity, in [0, 1])."""
        x = images.detach()
        noise = torch.rand(x.shape, generator=ctx.generator).to(x.device, x.dtype)
        delta = ((x + (2 * noise - 1) * self.eps).clamp(0, 1) - x)
        with _inner_attack(model, ctx, autocast=True), torch.enable_grad():
            for _ in range(self.steps):
                delta.requires_grad_(True)
                loss = F.cross_entropy(model(x + delta).float(), labels)
                (grad,) = torch.autograd.grad(loss, delta)
                delta = (delta.detach() + self.step * grad.sign()).clamp(-self.eps, self.eps)
                delta = (x + delta).clamp(0, 1) - x
        return (x + delta).detach()

    def loss(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: TrainContext) -> Tensor:
        return F.cross_entropy(model(self.adversarial(model, images, labels, ctx)).float(), labels)


@dataclass(frozen=True)
class MixedAT:
    """The survey's adversarial training on a mix of its four attacks: mini-batch ``i`` is attacked by
    ``attacks[i % 4]`` (MI-FGSM, DeepFool, CW-L2, the pixel swap) on the current model (eval mode, fp32), and the
    loss is (1 - alpha) CE(clean) + alpha CE(adversarial) in one forward pass, as ``OnePixelAT``. Where an attack
    fails, its last iterate is trained on anyway. The inner budgets are small (a training step cannot afford the
    evaluation's): the fields below. ``history[i]["seconds_inner_attack"]`` measures their share of the time.
    """

    alpha: float = 0.5  # weight of the adversarial half of the loss
    eps: float = 8 / 255  # MI-FGSM's L-infinity radius ([0, 1] units)
    steps: int = 10  # MI-FGSM iterations
    deepfool_steps: int = 10  # DeepFool iterations
    cw_steps: int = 10  # CW-L2 Adam steps
    swaps: int = 20  # pixel-swap budget (pairs)
    attacks: tuple[str, ...] = SURVEY_ATTACKS  # the rotation, in order

    def __post_init__(self) -> None:
        if not is_number(self.alpha) or not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be a fraction in [0, 1], got {self.alpha!r}")
        for name in ("steps", "deepfool_steps", "cw_steps", "swaps"):
            check_int(name, getattr(self, name), 1)
        if not self.attacks or set(self.attacks) - set(SURVEY_ATTACKS):
            raise ValueError(f"attacks must be a non-empty tuple of {SURVEY_ATTACKS}, got {self.attacks!r}")

    def setup(self, ctx: TrainContext) -> None:
        """Nothing to prepare: the inner attacks use the model being trained."""

    def attack(self, name: str, model: nn.Module) -> Any:
        """The inner attack ``name`` on ``model`` at this objective's budgets."""
        return survey_attack(name, model, eps=self.eps, steps=self.steps, deepfool_steps=self.deepfool_steps,
                             cw_steps=self.cw_steps, swaps=self.swaps)

    def loss(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: TrainContext) -> Tensor:
        name = self.attacks[ctx.step % len(self.attacks)]
        with _inner_attack(model, ctx, autocast=False), torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.config.seed * 1_000_003 + ctx.step)  # a resumed run replays the same attacks
            adv = self.attack(name, model)(images.detach().float(), labels).adv_images
        adv = adv.to(images.device, images.dtype)
        ce = F.cross_entropy(model(torch.cat([images, adv])).float(), labels.repeat(2), reduction="none")
        n = len(labels)
        return (1 - self.alpha) * ce[:n].mean() + self.alpha * ce[n:].mean()


@dataclass(frozen=True)
class SoftmaxTemperature:
    """Cross-entropy of softmax(logits / T): how a distillation teacher is trained (Papernot et al. 2016)."""

    temperature: float = 20.0  # T; logits are divided by it before the softmax of the loss

    def __post_init__(self) -> None:
        check_positive("temperature", self.temperature)

    def setup(self, ctx: TrainContext) -> None:
        """Nothing to prepare."""

    def loss(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: TrainContext) -> Tensor:
        return F.cross_entropy(model(images).float() / self.temperature, labels)


@dataclass(frozen=True)
class Distillation:
    """Defensive distillation (Papernot et al. 2016): a student trained on a teacher's soft labels at T.

    The teacher is the model of ``teacher`` (a ``TrainConfig`` whose objective is
    ``SoftmaxTemperature(temperature)``), loaded or trained through the cache in ``setup``. The student
    minimises the cross-entropy between softmax(student / T) and softmax(teacher / T) on each training
    batch. Both are deployed at T = 1, i.e. as the plain network: the temperature lives only in the loss,
    so the trained logits come out about T times larger and the softmax saturates. Cost: the teacher's
    training (one plain run) plus one teacher forward per student step: about 2.3 x plain training.
    Use ``distillation_config`` to build teacher and student from one base config.
    """

    teacher: TrainConfig  # the teacher's config; its objective must be SoftmaxTemperature(temperature)
    temperature: float = 20.0  # T of the teacher's training and of the soft labels (the literature: 20-100)

    def __post_init__(self) -> None:
        check_positive("temperature", self.temperature)
        if self.teacher.objective != SoftmaxTemperature(self.temperature):
            raise ValueError(f"the teacher must be trained at the distillation temperature: its objective is "
                             f"{self.teacher.objective!r}, expected SoftmaxTemperature({self.temperature!r}); "
                             "build both with labkit.defences.distillation_config")

    def setup(self, ctx: TrainContext) -> None:
        """Load (or train) the teacher on the training device; frozen, eval mode."""
        teacher = get_or_train(self.teacher, ctx.device).model.eval()
        ctx.state["teacher"] = teacher.requires_grad_(False)

    def loss(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: TrainContext) -> Tensor:
        with torch.no_grad():
            soft = F.softmax(ctx.state["teacher"](images).float() / self.temperature, dim=1)
        return F.cross_entropy(model(images).float() / self.temperature, soft)


def distillation_config(base: TrainConfig, temperature: float = 20.0) -> TrainConfig:
    """The student config of defensive distillation from ``base``: same run, teacher trained at T."""
    teacher = replace(base, objective=SoftmaxTemperature(temperature))
    return replace(base, objective=Distillation(teacher, temperature))


# -- gradient masking ----------------------------------------------------------------------------------------------

class _NoisyGradient(torch.autograd.Function):
    """Identity forward; backward adds eps * N(0, 1) to the incoming gradient (torch's global RNG)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, eps: float) -> Tensor:
        ctx.eps = eps
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad + ctx.eps * torch.randn_like(grad), None


class NoisyGradient(InputTransform):
    """The identity on images whose backward pass adds ``eps`` * N(0, 1) to the input gradient.

    In front of a model (``defended(model, NoisyGradient(eps))``, or ``GradientMasking(model, eps)``) it is the
    survey's gradient masking: outputs are exactly the model's, so black-box attacks (DE, corner search) see
    no change, while a gradient attack such as FGSM gets a gradient whose sign is mostly noise once ``eps``
    dwarfs the true input gradient (typically 1e-4..1e-2 per pixel for a mean cross-entropy). Not robustness,
    only a broken gradient. The noise draws from torch's global generator.
    """

    _fields = ("eps",)

    def __init__(self, eps: float = 1.0):
        super().__init__()
        self.eps = check_positive("eps", eps, or_zero=True)

    @property
    def label(self) -> str:
        return f"gradient noise {self.eps:g}"

    def transform(self, x: Tensor) -> Tensor:
        return _NoisyGradient.apply(x, self.eps) if torch.is_grad_enabled() and x.requires_grad else x


class GradientMasking(nn.Sequential):
    """``model`` behind ``NoisyGradient(eps)``: forward unchanged, input gradient + eps * N(0, 1), eval mode."""

    def __init__(self, model: nn.Module, eps: float = 1.0):
        super().__init__(NoisyGradient(eps), model)
        self.eval()

    @property
    def model(self) -> nn.Module:
        return self[1]

    def spec(self) -> dict[str, Any]:
        """The ``NoisyGradient``'s spec: ``defended_key`` treats both spellings alike."""
        return self[0].spec()

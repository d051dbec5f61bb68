"""The verifier's view of a model: a flat chain of layers in float64, and where one pixel's change can reach.

``parse`` turns an ``nn.Sequential``-like model (nested Sequentials flattened; eval-mode Dropout and Identity
dropped) into a list of :class:`Layer` records holding float64 copies of the parameters. Four kinds cover every
supported module, because each has one sound rule per bound method (``labkit.certify.bounds``):

- ``"scale"``: per-channel x * a + b (the model's ``Normalize``, eval-mode ``BatchNorm1d/2d``); pointwise.
- ``"conv"``: a 2-D convolution with zero padding (``Conv2d``, and ``AvgPool2d`` / ``AdaptiveAvgPool2d`` as a
  depthwise convolution of weight 1/k^2, which is what they compute with ``count_include_pad``).
- ``"relu"``, ``"maxpool"`` (``MaxPool2d`` / ``AdaptiveMaxPool2d``; padding cells are -inf), ``"flatten"``,
  ``"linear"``, and ``"gate"``: APR's ``AttentionGate`` sigmoid(conv(x)) * x, only as the first layer, and
  ``"median"``: a per-channel median with reflect padding over an odd window, only as the first layer: a module with
  an integer ``median_window`` (``labkit.models.MedianBlur``, ``labkit.defences.MedianFilter``), and
  ``"quantise"``: a module with an integer ``quantise_levels`` that computes round(clamp(x, 0, 1) * levels) /
  levels per channel (``labkit.defences.BitDepth``), only as the first layer.
- ``"add"``: a residual block's sum, main branch (the layers before it) plus the shortcut from the block's input.

:func:`geometry` says, for each activation, which window of the map a change of the pixel at (row, col) can
reach: outside it the clean activation holds, so bounds are computed on the window alone (the clean values enter
as constants). Windows have one size per activation (the largest over positions), placed inside the map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.models import AttentionGate, BasicBlock, Normalize, median_blur, quantise


class NotCertifiable(TypeError):
    """The model holds a layer the verifier has no sound rule for (the message names it)."""


@dataclass
class Layer:
    """One step of the chain, parameters in the verifier's dtype.

    kind: "scale", "conv", "relu", "maxpool", "flatten", "linear", "gate", "median", "quantise" or "add".
    weight/bias: scale: a, b (C,); conv: (C', C/groups, kh, kw), (C',); linear: (D', D), (D',).
    kernel, stride, padding: (h, w) pairs for conv and maxpool.
    """

    kind: str
    name: str
    weight: Tensor | None = None
    bias: Tensor | None = None
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    source: int = -1  # "add": the activation its shortcut starts from (the residual block's input)
    branch: list["Layer"] = field(default_factory=list)  # "add": the shortcut's layers (conv 1x1, scale), or none
    levels: int = 0  # "quantise": the levels above 0 per channel (2**bits - 1): x -> round(x * levels) / levels

    @property
    def spatial(self) -> bool:
        """Whether the layer maps a window of the input to a window of the output through a patch."""
        return self.kind in ("conv", "maxpool", "gate", "median")

    def forward(self, x: Tensor) -> Tensor:
        """The clean forward pass on whole maps (N, C, H, W) or vectors (N, D)."""
        if self.kind == "scale":
            shape = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
            return x * self.weight.view(shape) + self.bias.view(shape)
        if self.kind == "conv":
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, groups=self.groups)
        if self.kind == "relu":
            return x.clamp_min(0)
        if self.kind == "gate":
            return torch.sigmoid(F.conv2d(x, self.weight, self.bias, 1, self.padding)) * x
        if self.kind == "median":
            return median_blur(x, self.kernel[0])
        if self.kind == "quantise":
            return quantise(x, self.levels)
        if self.kind == "maxpool":
            return F.max_pool2d(x, self.kernel, self.stride, self.padding)
        if self.kind == "flatten":
            return x.flatten(1)
        return F.linear(x, self.weight, self.bias)

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Output shape (without batch) for an input of ``shape``."""
        if self.kind in ("scale", "relu", "add"):
            return shape
        if self.kind == "flatten":
            return (int(torch.tensor(shape).prod()),)
        if self.kind == "linear":
            return (self.weight.shape[0],)
        if self.kind in ("gate", "median", "quantise"):
            return shape
        c = self.weight.shape[0] if self.kind == "conv" else shape[0]
        return (c, *(_out_len(n, k, s, p) for n, k, s, p in zip(shape[1:], self.kernel, self.stride, self.padding)))


def _out_len(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _leaves(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        return [leaf for m in model for leaf in _leaves(m)]
    return [model]


def _conv_layer(m: nn.Conv2d, dtype: torch.dtype, device: torch.device) -> Layer:
    if m.padding_mode != "zeros" or _pair(m.dilation) != (1, 1):
        raise NotCertifiable(f"{m!r}: only zero padding and dilation 1 are supported")
    k, s = _pair(m.kernel_size), _pair(m.stride)
    if m.padding == "same":
        if k[0] % 2 == 0 or k[1] % 2 == 0 or s != (1, 1):
            raise NotCertifiable(f"{m!r}: padding='same' needs odd kernels and stride 1")
        pad = (k[0] // 2, k[1] // 2)
    elif m.padding == "valid":
        pad = (0, 0)
    else:
        pad = _pair(m.padding)
    w = m.weight.detach().to(device, dtype)
    b = m.bias.detach().to(device, dtype) if m.bias is not None else torch.zeros(w.shape[0], dtype=dtype, device=device)
    return Layer("conv", type(m).__name__, w, b, k, s, pad, m.groups)


def _avg_layer(channels: int, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int], name: str,
               dtype: torch.dtype, device: torch.device) -> Layer:
    # Average pooling with zero padding counted in the divisor is a depthwise convolution of weight 1/k^2.
    w = torch.full((channels, 1, *k), 1.0 / (k[0] * k[1]), dtype=dtype, device=device)
    return Layer("conv", name, w, torch.zeros(channels, dtype=dtype, device=device), k, s, p, channels)


def _adaptive(m: nn.Module, shape: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
    out = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
    ks = []
    for n, o in zip(shape[1:], out):
        o = n if o is None else o
        if n % o:
            raise NotCertifiable(f"{m!r} on a {n}-wide map: only output sizes that divide the input are supported")
        ks.append(n // o)
    return (ks[0], ks[1]), (ks[0], ks[1])


def _scale_layer(m: nn.Module, dtype: torch.dtype, device: torch.device) -> Layer:
    if isinstance(m, Normalize):
        a = 1 / m.std.detach().flatten().double()
        b = -m.mean.detach().flatten().double() * a
    else:
        if not m.track_running_stats or m.running_mean is None:
            raise NotCertifiable(f"{m!r}: batch norm without running statistics depends on the batch")
        inv = 1 / torch.sqrt(m.running_var.detach().double() + m.eps)
        g = m.weight.detach().double() if m.weight is not None else torch.ones_like(inv)
        beta = m.bias.detach().double() if m.bias is not None else torch.zeros_like(inv)
        a, b = g * inv, beta - g * inv * m.running_mean.detach().double()
    return Layer("scale", type(m).__name__, a.to(device, dtype), b.to(device, dtype))


def _block(m: BasicBlock, source: int, dtype: torch.dtype, device: torch.device) -> list[Layer]:
    """ResNet's basic block as a chain: conv-BN-ReLU-conv-BN, then "add" (the shortcut from activation
    ``source``, through its 1x1 conv and BN if it has them), then the ReLU."""
    short = [_conv_layer(c, dtype, device) if isinstance(c, nn.Conv2d) else _scale_layer(c, dtype, device)
             for c in m.shortcut]
    if any(type(c) not in (nn.Conv2d, nn.BatchNorm2d) for c in m.shortcut) or (short and short[0].kind != "conv"):
        raise NotCertifiable(f"{m!r}: only identity or conv (+ batch norm) shortcuts are supported")
    return [_conv_layer(m.conv1, dtype, device), _scale_layer(m.bn1, dtype, device), Layer("relu", "ReLU"),
            _conv_layer(m.conv2, dtype, device), _scale_layer(m.bn2, dtype, device),
            Layer("add", "BasicBlock shortcut", source=source, branch=short), Layer("relu", "ReLU")]


def run_branch(branch: list[Layer], x: Tensor) -> Tensor:
    """A shortcut's clean forward pass (the identity when it has no layers)."""
    for layer in branch:
        x = layer.forward(x)
    return x


def parse(model: nn.Module, in_shape: tuple[int, int, int], dtype: torch.dtype = torch.float64,
          device: torch.device | str = "cpu") -> list[Layer]:
    """The chain of ``model`` for inputs of ``in_shape`` (C, H, W), parameters copied to ``dtype`` on ``device``.

    Raises NotCertifiable naming the first module without a rule. A trailing Softmax / LogSoftmax is dropped:
    it keeps the arg-max and (LogSoftmax) every logit difference, which is all a verdict needs.
    """
    leaves = [m for m in _leaves(model) if not isinstance(m, (nn.Dropout, nn.Identity))]
    while leaves and isinstance(leaves[-1], (nn.Softmax, nn.LogSoftmax)):
        leaves.pop()
    layers: list[Layer] = []
    shape: tuple[int, ...] = in_shape
    for i, m in enumerate(leaves):
        if isinstance(m, BasicBlock) and len(shape) == 3:
            for layer in _block(m, len(layers), dtype, device):
                layers.append(layer)
                shape = layer.out_shape(shape)
            continue
        if isinstance(m, AttentionGate) and i == 0:
            # APR's gate sigmoid(conv(x)) * x, as the first layer: its input is the image, the pixel the only variable.
            k = m.kernel_size
            layer = Layer("gate", "AttentionGate", m.conv.weight.detach().to(device, dtype),
                          m.conv.bias.detach().to(device, dtype), (k, k), (1, 1), (k // 2, k // 2))
        elif isinstance(getattr(m, "median_window", None), int) and i == 0:
            # A median filter on the image (labkit.models.median_blur; recognised by its attribute, as the bit-depth
            # reduction is: labkit.defences holds MedianFilter): as a function of the pixel's colour each output
            # near it is a clamp (bounds.Chain._median_ends). Reflection reaches no output farther than size // 2
            # from the pixel, so the window is a zero-padded kernel's; an even window has no centre, so no
            # symmetric one.
            size = m.median_window
            if size % 2 == 0:
                raise NotCertifiable(f"{m!r}: only odd median windows are supported (an even one is off-centre)")
            layer = Layer("median", type(m).__name__, kernel=(size, size), padding=(size // 2, size // 2))
        elif isinstance(getattr(m, "quantise_levels", None), int) and i == 0:
            # Bit-depth reduction of the image (feature squeezing): non-decreasing per channel, and the network
            # behind it sees only the rounded colour, so the chain bounds the rounded box (bounds.Chain.rounded).
            # Recognised by its attribute: labkit.defences (a higher layer) holds BitDepth.
            layer = Layer("quantise", type(m).__name__, levels=m.quantise_levels)
        elif isinstance(m, (Normalize, nn.BatchNorm2d, nn.BatchNorm1d)):
            layer = _scale_layer(m, dtype, device)
        elif isinstance(m, nn.Conv2d):
            layer = _conv_layer(m, dtype, device)
        elif isinstance(m, nn.ReLU):
            layer = Layer("relu", "ReLU")
        elif isinstance(m, nn.MaxPool2d):
            if m.ceil_mode or _pair(m.dilation) != (1, 1):
                raise NotCertifiable(f"{m!r}: ceil_mode and dilation are not supported")
            layer = Layer("maxpool", "MaxPool2d", kernel=_pair(m.kernel_size),
                          stride=_pair(m.stride if m.stride is not None else m.kernel_size), padding=_pair(m.padding))
        elif isinstance(m, nn.AdaptiveMaxPool2d) and len(shape) == 3:
            k, s = _adaptive(m, shape)
            layer = Layer("maxpool", "AdaptiveMaxPool2d", kernel=k, stride=s)
        elif isinstance(m, nn.AdaptiveAvgPool2d) and len(shape) == 3:
            k, s = _adaptive(m, shape)
            layer = _avg_layer(shape[0], k, s, (0, 0), "AdaptiveAvgPool2d", dtype, device)
        elif isinstance(m, nn.AvgPool2d) and len(shape) == 3:
            k, s, p = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
            if m.ceil_mode or m.divisor_override is not None or (not m.count_include_pad and p != (0, 0)):
                raise NotCertifiable(f"{m!r}: ceil_mode, divisor_override and count_include_pad=False with "
                                     "padding are not supported")
            layer = _avg_layer(shape[0], k, s, p, "AvgPool2d", dtype, device)
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise NotCertifiable(f"{m!r}: only Flatten(1, -1) is supported")
            layer = Layer("flatten", "Flatten")
        elif isinstance(m, nn.Linear) and len(shape) == 1:
            w = m.weight.detach().to(device, dtype)
            b = m.bias.detach().to(device, dtype) if m.bias is not None else torch.zeros(w.shape[0], dtype=dtype,
                                                                                        device=device)
            layer = Layer("linear", "Linear", w, b)
        else:
            raise NotCertifiable(f"labkit.certify has no sound bound rule for {type(m).__name__} ({m!r}) on an input "
                                 f"of shape {shape}; supported: Normalize, Conv2d, BatchNorm, ReLU, MaxPool2d, "
                                 "AvgPool2d, adaptive max/avg pooling, Flatten, Linear, Dropout (eval), "
                                 "AttentionGate, BitDepth or an odd MedianBlur / MedianFilter (as the first layer), "
                                 "BasicBlock")
        layers.append(layer)
        shape = layer.out_shape(shape)
    if len(shape) != 1:
        raise NotCertifiable(f"the model's output has shape {shape}; the verifier needs logits (N, classes)")
    return layers


@dataclass
class Geometry:
    """Where one activation's window lies, for every pixel position of the input.

    shape: the activation's shape without batch, (C, H, W) or (D,).
    size: the window's (h, w) for a map; None for a vector (the window is all of it).
    rows, cols: (H0,), (W0,) int64, the window's top row for a pixel in input row r (rows[r]) and left column
    for a pixel in input column c (cols[c]); the window always lies inside the map.
    """

    shape: tuple[int, ...]
    size: tuple[int, int] | None = None
    rows: Tensor | None = field(default=None, repr=False)
    cols: Tensor | None = field(default=None, repr=False)


def _reach(ranges: list[tuple[int, int]], k: int, s: int, p: int, n_out: int) -> list[tuple[int, int]]:
    """Output index ranges [a, b) a layer (kernel k, stride s, padding p) reaches from input ranges [a, b)."""
    out = []
    for a, b in ranges:
        lo = max(0, -((k - 1 - a - p) // s))  # ceil((a + p - k + 1) / s)
        hi = min(n_out, (b - 1 + p) // s + 1)
        out.append((lo, max(hi, lo + 1)))
    return out


def _place(ranges: list[tuple[int, int]], n: int, full: bool, device: torch.device) -> tuple[int, Tensor]:
    if full:
        return n, torch.zeros(len(ranges), dtype=torch.long, device=device)
    size = max(b - a for a, b in ranges)
    return size, torch.tensor([min(a, n - size) for a, _ in ranges], dtype=torch.long, device=device)


def geometry(layers: list[Layer], in_shape: tuple[int, int, int], full: bool = False,
             device: torch.device | str = "cpu") -> list[Geometry]:
    """The window of every activation (input first, logits last) for a one-pixel change.

    ``full=True`` makes every window the whole map: the reference the windowed bounds must equal.
    """
    dev = torch.device(device)
    _, h0, w0 = in_shape
    rr = [(r, r + 1) for r in range(h0)]
    cc = [(c, c + 1) for c in range(w0)]
    shape: tuple[int, ...] = in_shape

    def make(shape: tuple[int, ...]) -> Geometry:
        (hs, rows), (ws, cols) = _place(rr, shape[1], full, dev), _place(cc, shape[2], full, dev)
        return Geometry(shape, (hs, ws), rows, cols)

    geos = [make(shape)]
    for layer in layers:
        new = layer.out_shape(shape)
        if len(new) == 1:
            geos.append(Geometry(new))
        else:
            if layer.spatial:
                rr = _reach(rr, layer.kernel[0], layer.stride[0], layer.padding[0], new[1])
                cc = _reach(cc, layer.kernel[1], layer.stride[1], layer.padding[1], new[2])
            geos.append(make(new))
        shape = new
    return geos


def clean_activations(layers: list[Layer], images: Tensor) -> list[Tensor]:
    """Every activation of the chain on ``images`` (N, C, H, W) (in the layers' dtype), input first."""
    acts = [images]
    for layer in layers:
        if layer.kind == "add":
            acts.append(acts[-1] + run_branch(layer.branch, acts[layer.source]))
        else:
            acts.append(layer.forward(acts[-1]))
    return acts

"""Bounds on a network's margins over boxes of one pixel's colour, computed on the pixel's window.

A *box* is (image, row, col, colour low (C,), colour high (C,)): the set of images equal to the clean image but
for the pixel at (row, col), whose colour ranges over the box. Every activation is computed only on the window
of the map that pixel reaches (``layers.geometry``); cells outside it are the clean activations, constants.

Three propagations, each sound for any input in the box:

- interval: [lo, hi] per neuron (centre-radius form through affine layers);
- forward linear: a lower and an upper affine function of the C colour variables per neuron
  (S = C + 1 slots: C coefficients, then the constant), ReLU and max-pool relaxed with those functions' ranges;
- backward linear (CROWN / DeepPoly back-substitution): a margin's lower bound as one affine function of the
  colour, relaxations chosen by the sign of the coefficient reaching each neuron; ``alpha`` gives each unstable
  ReLU's lower slope per box and margin (alpha-CROWN optimises them by projected gradient ascent).

Relaxations: ReLU with pre-activation bounds l < 0 < u: upper u (x - l) / (u - l), lower a x, a in [0, 1].
Max-pool: lower x_i* (i* = the cell of largest lower bound); upper x_i* when l_i* >= every other cell's upper
bound (exact), else the constant max u. APR's gate (first layer only): sigmoid between tangent and chord lines,
its product with x by McCormick's inequalities. A median filter (first layer only): each output near the pixel is
clamp(colour, a, b) of one colour channel (a, b: its values at colour 0 and 1), exact in intervals, and in forms
exact, constant, or a chord and a tangent where the box straddles one kink (constants where it straddles both). All in the chain's dtype (float64 by default); the shared pieces
live in ``labkit.certify.relax``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from labkit.certify.layers import Layer, clean_activations, geometry
from labkit.models import valid_median
from labkit.certify.relax import chan, crop, relu_slopes, sigmoid_lines, unfold

INF = float("inf")
#: Layer kinds that are not affine: where intervals lose precision and back-substitution needs relaxations.
NONLINEAR = ("relu", "maxpool", "gate", "median")
IDENTITY = Layer("conv", "identity shortcut")  # kernel 1, stride 1: a patch that is the window itself


def _reflected(n: int, pad: int, device: torch.device) -> Tensor:
    """(n + 2 pad,) int64: the row (column) of an n-long map that each row of its reflect padding copies."""
    i = torch.arange(-pad, n + pad, device=device).abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


@dataclass
class Boxes:
    """B boxes. img, row, col: (B,) int64; lo, hi: (B, C) colours in [0, 1], lo <= hi."""

    img: Tensor
    row: Tensor
    col: Tensor
    lo: Tensor
    hi: Tensor

    def __len__(self) -> int:
        return len(self.img)


@dataclass
class Pass:
    """What a forward pass leaves for the backward one: per activation t its interval bounds (B, *window),
    the forward linear forms where computed ((B, S, *window) lower and upper), and per max-pool layer its
    relaxation (argmax index, exactness, constant upper bound, each (B, C, cells out))."""

    bounds: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    forms: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    pools: dict[int, tuple[Tensor, Tensor, Tensor]] = field(default_factory=dict)


class Chain:
    """A parsed model on a set of clean images: the windows, the clean activations and the bound passes.

    layers: from ``layers.parse``; images: (N, C, H, W) in [0, 1]; full: whole-map windows (the reference).
    """

    def __init__(self, layers: list[Layer], images: Tensor, dtype: torch.dtype = torch.float64, full: bool = False):
        # A leading bit-depth reduction ("quantise") is not bounded as a layer: the network behind it sees the
        # rounded image and, at the pixel, a rounded colour, which lies in the rounded box (``rounded``). The chain
        # starts behind it; ``quantise`` keeps it.
        self.quantise = layers[0] if layers and layers[0].kind == "quantise" else None
        if self.quantise is not None:
            layers = layers[1:]
        images = self.inputs(images)
        self.layers, self.dtype = layers, dtype
        self.cin = images.shape[1]
        self.geos = geometry(layers, tuple(images.shape[1:]), full, images.device)
        self.acts = clean_activations(layers, images.to(dtype))
        nonlinear = [t for t, layer in enumerate(layers) if layer.kind in NONLINEAR]
        self.last_map = max(nonlinear, default=-1) + 1
        # Back-substitution ends at the colour, or behind a leading gate or median filter at its output, through
        # its forward forms.
        self.base = 1 if layers and layers[0].kind in ("gate", "median") else 0
        if layers and layers[0].kind == "median":
            # The reflect-padded images and, per padded row / column, the image row / column it copies.
            p = layers[0].kernel[0] // 2
            H, W = images.shape[2:]
            self._median_last: tuple[Boxes | None, tuple[Tensor, Tensor]] = (None, ())  # type: ignore[assignment]
            self._median_padded = (F.pad(self.acts[0], (p, p, p, p), mode="reflect"), _reflected(H, p, images.device),
                                   _reflected(W, p, images.device))

    def inputs(self, images: Tensor) -> Tensor:
        """The chain's input for images (N, C, H, W): rounded where a bit-depth reduction leads (in the images'
        own dtype, as the model rounds them), else the images."""
        return images if self.quantise is None else self.quantise.forward(images)

    def rounded(self, boxes: Boxes) -> Boxes:
        """``boxes`` as the chain's first layer sees them. Behind a bit-depth reduction q (non-decreasing) a colour
        in [lo, hi] reaches the network as q(colour) in [q(lo), q(hi)]; the ends move out by 1e-6 first, so that a
        colour the model rounds in float32 on the other side of a tie is still inside (8-bit colours lie at least
        6e-5 from any tie of 1-7 bits). Idempotent (rounded ends are 1/(2 levels) from a tie), so every entry point
        (``forward``, ``margins.margin_bounds``) applies it; without a bit-depth reduction, ``boxes`` itself."""
        if self.quantise is None:
            return boxes
        q = self.quantise.forward
        return Boxes(boxes.img, boxes.row, boxes.col, q(boxes.lo - 1e-6), q(boxes.hi + 1e-6))

    # -- windows and patches --------------------------------------------------------------------------------
    def origin(self, t: int, boxes: Boxes) -> tuple[Tensor, Tensor]:
        g = self.geos[t]
        return g.rows[boxes.row], g.cols[boxes.col]

    def _patch_place(self, t: int, boxes: Boxes, layer: Layer | None = None,
                     out: int | None = None) -> tuple[Tensor, Tensor, int, int]:
        """Top-left (B,), (B,) and size of the input patch layer t reads to compute its output window (``layer``
        reading activation t to write activation ``out``'s window: a residual shortcut)."""
        out = t + 1 if out is None else out
        layer, g_in, g_out = layer or self.layers[t], self.geos[t], self.geos[out]
        if layer.kind == "flatten":
            zero = torch.zeros_like(boxes.row)
            return zero, zero, g_in.shape[1], g_in.shape[2]
        ro, co = self.origin(out, boxes)
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
        return sh * ro - ph, sw * co - pw, (g_out.size[0] - 1) * sh + kh, (g_out.size[1] - 1) * sw + kw

    def patch(self, t: int, boxes: Boxes, win: Tensor, fill: float, slots: bool = False, layer: Layer | None = None,
              out: int | None = None) -> Tensor:
        """Layer t's input patch: the window ``win`` (B, C, h, w), or forms (B, S, C, h, w) with ``slots``,
        pasted into the clean activation (cells outside the map: ``fill``; forms there are constants)."""
        pr, pc, hp, wp = self._patch_place(t, boxes, layer, out)
        ri, ci = self.origin(t, boxes)
        g = self.geos[t]
        part, _ = crop(win, torch.arange(len(boxes), device=win.device), pr - ri, pc - ci, hp, wp, 0.0)
        inside = self._window_mask(pr, pc, ri, ci, hp, wp, g.size)
        clean, _ = crop(self.acts[t], boxes.img, pr, pc, hp, wp, fill)
        if slots:
            base = torch.zeros_like(part)
            base[:, -1] = clean
            return torch.where(inside[:, None, None], part, base)
        return torch.where(inside[:, None], part, clean)

    @staticmethod
    def _window_mask(pr: Tensor, pc: Tensor, ri: Tensor, ci: Tensor, hp: int, wp: int,
                     size: tuple[int, int]) -> Tensor:
        """(B, hp, wp): which patch cells lie in the window (origin ri, ci; ``size``)."""
        ar_h, ar_w = torch.arange(hp, device=pr.device), torch.arange(wp, device=pr.device)
        rr, cc = pr[:, None] + ar_h - ri[:, None], pc[:, None] + ar_w - ci[:, None]
        return ((rr >= 0) & (rr < size[0]))[:, :, None] & ((cc >= 0) & (cc < size[1]))[:, None, :]

    def unpatch(self, t: int, boxes: Boxes, lam: Tensor, const: Tensor, layer: Layer | None = None,
                out: int | None = None) -> tuple[Tensor, Tensor]:
        """Coefficients ``lam`` (B, K, C, hp, wp) on layer t's input patch -> on its window (B, K, C, h, w);
        the clean cells' share goes into ``const`` (B, K)."""
        pr, pc, hp, wp = self._patch_place(t, boxes, layer, out)
        ri, ci = self.origin(t, boxes)
        g = self.geos[t]
        win, _ = crop(lam, torch.arange(len(boxes), device=lam.device), ri - pr, ci - pc, g.size[0], g.size[1], 0.0)
        inside = self._window_mask(pr, pc, ri, ci, hp, wp, g.size)
        clean, _ = crop(self.acts[t], boxes.img, pr, pc, hp, wp, 0.0)
        fixed = clean * (~inside)[:, None]
        return win, const + (lam * fixed[:, None]).flatten(2).sum(2)

    # -- the input window ---------------------------------------------------------------------------------------
    def _pixel(self, boxes: Boxes) -> tuple[Tensor, Tensor, Tensor]:
        ri, ci = self.origin(0, boxes)
        return torch.arange(len(boxes), device=ri.device), boxes.row - ri, boxes.col - ci

    def input_window(self, boxes: Boxes) -> tuple[Tensor, Tensor]:
        """Interval bounds (B, C, h, w) of the input window: clean, but the pixel ranges over its box."""
        ri, ci = self.origin(0, boxes)
        h, w = self.geos[0].size
        clean, _ = crop(self.acts[0], boxes.img, ri, ci, h, w, 0.0)
        b, pr, pc = self._pixel(boxes)
        lo, hi = clean.clone(), clean.clone()
        lo[b, :, pr, pc], hi[b, :, pr, pc] = boxes.lo, boxes.hi
        return lo, hi

    def input_forms(self, boxes: Boxes) -> Tensor:
        """Forms (B, S, C, h, w) of the input window: the pixel's channel c is colour variable c, exactly."""
        ri, ci = self.origin(0, boxes)
        h, w = self.geos[0].size
        clean, _ = crop(self.acts[0], boxes.img, ri, ci, h, w, 0.0)
        b, pr, pc = self._pixel(boxes)
        forms = torch.zeros(len(boxes), self.cin + 1, self.cin, h, w, dtype=self.dtype, device=clean.device)
        forms[:, -1] = clean
        forms[b, -1, :, pr, pc] = 0
        for c in range(self.cin):
            forms[b, c, c, pr, pc] = 1
        return forms

    # -- forward passes -------------------------------------------------------------------------------------
    def interval_step(self, t: int, boxes: Boxes, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        """Interval bounds of activation t + 1 from those of activation t (windows)."""
        layer = self.layers[t]
        if layer.kind == "median":  # non-decreasing in the colour: the box's ends map to the outputs' ends
            a, b = self._median_ends(boxes)
            return torch.clamp(boxes.lo[:, :, None, None], a, b), torch.clamp(boxes.hi[:, :, None, None], a, b)
        if layer.kind == "relu":
            return lo.clamp_min(0), hi.clamp_min(0)
        if layer.kind == "scale":
            a, b = chan(layer.weight, lo.dim(), 1), chan(layer.bias, lo.dim(), 1)
            return torch.minimum(a * lo, a * hi) + b, torch.maximum(a * lo, a * hi) + b
        if layer.kind == "linear":
            mid, rad = F.linear((lo + hi) / 2, layer.weight, layer.bias), F.linear((hi - lo) / 2, layer.weight.abs())
            return mid - rad, mid + rad
        fill = -INF if layer.kind == "maxpool" else 0.0
        lp, hp = self.patch(t, boxes, lo, fill), self.patch(t, boxes, hi, fill)
        if layer.kind == "flatten":
            return lp.flatten(1), hp.flatten(1)
        if layer.kind == "gate":  # sigmoid is increasing and x >= 0: the product's range is the ends' products
            (sl, su), (xl, xu) = self._gate_parts(lp, hp)
            return sl * xl, su * xu
        if layer.kind == "maxpool":
            return F.max_pool2d(lp, layer.kernel, layer.stride), F.max_pool2d(hp, layer.kernel, layer.stride)
        mid = F.conv2d((lp + hp) / 2, layer.weight, layer.bias, layer.stride, groups=layer.groups)
        rad = F.conv2d((hp - lp) / 2, layer.weight.abs(), None, layer.stride, groups=layer.groups)
        return mid - rad, mid + rad

    def concretize(self, forms: Tensor, boxes: Boxes, upper: bool) -> Tensor:
        """The minimum (maximum with ``upper``) over the box of each form (B, S, *shape) -> (B, *shape)."""
        shape = [len(boxes), self.cin] + [1] * (forms.dim() - 2)
        lo, hi = boxes.lo.view(shape), boxes.hi.view(shape)
        coef = forms[:, :-1]
        pick = torch.where((coef > 0) == upper, hi, lo)
        return (coef * pick).sum(1) + forms[:, -1]

    def forms_step(self, t: int, boxes: Boxes, L: Tensor, U: Tensor, lo: Tensor, hi: Tensor,
                   pool_info: dict[int, tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """Forward linear forms (B, S, *window) of activation t + 1 from those of activation t (bounds lo, hi)."""
        layer = self.layers[t]
        if layer.kind == "median":
            return self._median_forms(boxes)
        if layer.kind == "relu":
            active, unstable, up, low = relu_slopes(lo, hi)
            U2 = U * up[:, None]
            U2[:, -1] -= torch.where(unstable, up * lo, torch.zeros_like(lo))
            return L * low[:, None], U2
        if layer.kind == "scale":
            a, b = chan(layer.weight, L.dim(), 2), chan(layer.bias, L.dim() - 1, 1)
            L2, U2 = a.clamp_min(0) * L + a.clamp_max(0) * U, a.clamp_min(0) * U + a.clamp_max(0) * L
            L2[:, -1] += b
            U2[:, -1] += b
            return L2, U2
        if layer.kind == "linear":
            mid, rad = ((L + U) / 2) @ layer.weight.T, ((U - L) / 2) @ layer.weight.abs().T
            L2, U2 = mid - rad, mid + rad
            L2[:, -1] += layer.bias
            U2[:, -1] += layer.bias
            return L2, U2
        fill = -INF if layer.kind == "maxpool" else 0.0
        Lp, Up = self.patch(t, boxes, L, fill, slots=True), self.patch(t, boxes, U, fill, slots=True)
        if layer.kind == "flatten":
            return Lp.flatten(2), Up.flatten(2)
        B, S, C, hp, wp_ = Lp.shape
        if layer.kind == "gate":
            return self._gate_forms(t, boxes, Lp, lo, hi)
        if layer.kind == "conv":
            # W+ L + W- U = W M - |W| D with M, D the forms' mean and half-difference: two convolutions, not four.
            def conv(x: Tensor, w: Tensor) -> Tensor:
                y = F.conv2d(x.reshape(B * S, C, hp, wp_), w, None, layer.stride, groups=layer.groups)
                return y.view(B, S, *y.shape[1:])

            mid, rad = conv((Lp + Up) / 2, layer.weight), conv((Up - Lp) / 2, layer.weight.abs())
            L2, U2 = mid - rad, mid + rad
            bias = chan(layer.bias, L2.dim() - 1, 1)
            L2[:, -1] += bias
            U2[:, -1] += bias
            return L2, U2
        idx, exact, umax = self.pool_relaxation(t, boxes, lo, hi)
        pool_info[t] = (idx, exact, umax)
        oh, ow = self.geos[t + 1].size

        def pick(x: Tensor) -> Tensor:
            cols = unfold(x.reshape(B * S * C, 1, hp, wp_), layer.kernel, layer.stride)
            cols = cols.view(B, S, C, cols.shape[1], -1)
            return cols.gather(3, idx[:, None, :, None].expand(B, S, C, 1, -1))[:, :, :, 0]

        L2 = pick(Lp).view(B, S, C, oh, ow)
        U2 = torch.where(exact[:, None], pick(Up), torch.zeros((), dtype=L.dtype, device=L.device))
        U2[:, -1] = torch.where(exact, U2[:, -1], umax)
        return L2, U2.view(B, S, C, oh, ow)

    def _gate_parts(self, lp: Tensor, hp: Tensor) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """The gate's map bounds [sigmoid(a_lo), sigmoid(a_hi)] and its input's bounds on the output window, from
        the input patch bounds (B, C, hp, wp)."""
        layer = self.layers[0]
        mid = F.conv2d((lp + hp) / 2, layer.weight, layer.bias)
        rad = F.conv2d((hp - lp) / 2, layer.weight.abs())
        p = layer.padding
        crop = (slice(None), slice(None), slice(p[0], lp.shape[2] - p[0]), slice(p[1], lp.shape[3] - p[1]))
        return (torch.sigmoid(mid - rad), torch.sigmoid(mid + rad)), (lp[crop], hp[crop])

    def _gate_forms(self, t: int, boxes: Boxes, Xp: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        """Forms of sigmoid(conv(x)) * x on the gate's output window from the input forms' patch Xp (exact, the
        input is affine in the colour): sigmoid relaxed linearly, the product by McCormick's inequalities."""
        layer = self.layers[t]
        B, S, C, hp, wp = Xp.shape
        a = F.conv2d(Xp.reshape(B * S, C, hp, wp), layer.weight, None).view(B, S, -1, hp - 2 * layer.padding[0],
                                                                           wp - 2 * layer.padding[1])
        a[:, -1] += chan(layer.bias, a.dim() - 1, 1)
        al, au = self.concretize(a, boxes, False), self.concretize(a, boxes, True)
        (kl, bl), (ku, bu) = sigmoid_lines(al, au)
        SL, SU = a * kl[:, None], a * ku[:, None]
        SL[:, -1] += bl
        SU[:, -1] += bu
        sl, su = torch.sigmoid(al)[:, None], torch.sigmoid(au)[:, None]
        p = layer.padding
        X = Xp[:, :, :, p[0]:hp - p[0], p[1]:wp - p[1]]
        xl, xu = self.concretize(X, boxes, False)[:, None], self.concretize(X, boxes, True)[:, None]
        one = torch.zeros_like(X)
        one[:, -1] = 1.0

        # (s - sl)(x - xl) >= 0 etc.: s x >= sl x + xl s - sl xl, >= su x + xu s - su xu; the coefficient of s is
        # x's bound, >= 0, so s is replaced by its lower form (upper form in the upper bounds).
        def pick(f1: Tensor, f2: Tensor, upper: bool) -> Tensor:
            c1, c2 = self.concretize(f1, boxes, upper), self.concretize(f2, boxes, upper)
            better = (c1 <= c2) if upper else (c1 >= c2)
            return torch.where(better[:, None], f1, f2)

        low = pick(sl * X + xl * SL - sl * xl * one, su * X + xu * SL - su * xu * one, False)
        up = pick(su * X + xl * SU - su * xl * one, sl * X + xu * SU - sl * xu * one, True)
        return low, up

    def _median_ends(self, boxes: Boxes) -> tuple[Tensor, Tensor]:
        """The median filter's outputs on its output window (B, C, h, w) with the pixel's colour at 0 and at 1.

        A median is non-decreasing in each input, and with the pixel's value x appearing m >= 1 times in a window
        (reflection repeats it near a border) the output is clamp(x, w[5-m], w[5]) of the other values sorted: a
        clamp whose ends are its values at x = 0 and x = 1 (colours lie in [0, 1]). Computed on the window's own
        block of the reflect-padded image, every copy of the pixel set (40x less work than whole images)."""
        if self._median_last[0] is boxes:  # a forward pass with forms asks twice: for its forms and its intervals
            return self._median_last[1]
        k = self.layers[0].kernel[0]
        padded, refl_r, refl_c = self._median_padded
        ri, ci = self.origin(1, boxes)
        h, w = self.geos[1].size
        block, _ = crop(padded, boxes.img, ri, ci, h + k - 1, w + k - 1, 0.0)  # padded coords = image coords + k // 2
        rows = refl_r[ri[:, None] + torch.arange(h + k - 1, device=ri.device)] == boxes.row[:, None]
        cols = refl_c[ci[:, None] + torch.arange(w + k - 1, device=ci.device)] == boxes.col[:, None]
        copies = (rows[:, :, None] & cols[:, None, :])[:, None]  # (B, 1, h + k - 1, w + k - 1)
        ends = valid_median(block.masked_fill(copies, 0.0), k), valid_median(block.masked_fill(copies, 1.0), k)
        self._median_last = (boxes, ends)
        return ends

    def _median_forms(self, boxes: Boxes) -> tuple[Tensor, Tensor]:
        """Lower and upper forms (B, S, C, h, w) of clamp(x_c, a, b) on the median's output window, x_c in [l, u]:
        exact where the box lies between the kinks, constant where it lies beyond one; across one kink a chord on
        the bent side and the better of the two lines on the other; across both the interval's ends."""
        a, bb = self._median_ends(boxes)
        l, u = boxes.lo[:, :, None, None].expand_as(a), boxes.hi[:, :, None, None].expand_as(a)
        flo, fhi = torch.clamp(l, a, bb), torch.clamp(u, a, bb)
        zero, one = torch.zeros_like(a), torch.ones_like(a)
        span = (u - l).clamp_min(1e-300)  # only divides where l < a < u or l < b < u, so u > l there
        ident = (l >= a) & (u <= bb)
        convex = (l < a) & (u > a) & (u <= bb)  # max(x, a) on [l, u]
        concave = (l >= a) & (l < bb) & (u > bb)  # min(x, b) on [l, u]
        # Lower: x itself where exact, a chord under min(x, b), x or a under max(x, a) (the smaller gap), else flo.
        low_x = ident | (convex & (a - l < u - a))
        low_k = torch.where(low_x, one, torch.where(concave, (bb - l) / span, zero))
        low_c = torch.where(low_x, zero, torch.where(concave, l - low_k * l, flo))
        # Upper: x where exact, a chord over max(x, a), x or b over min(x, b) (the smaller gap), else fhi.
        up_x = ident | (concave & (u - bb < bb - l))
        up_k = torch.where(up_x, one, torch.where(convex, (u - a) / span, zero))
        up_c = torch.where(up_x, zero, torch.where(convex, a - up_k * l, fhi))
        B, C, h, w = a.shape
        L = torch.zeros(B, C + 1, C, h, w, dtype=a.dtype, device=a.device)
        U = torch.zeros_like(L)
        for c in range(C):  # output channel c depends on colour variable c only
            L[:, c, c], U[:, c, c] = low_k[:, c], up_k[:, c]
        L[:, -1], U[:, -1] = low_c, up_c
        return L, U

    def pool_relaxation(self, t: int, boxes: Boxes, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Max-pool layer t's relaxation: per output cell (B, C, cells) the index in its region of the cell with
        the largest lower bound, whether that cell is the max for sure, and the region's largest upper bound."""
        layer = self.layers[t]
        lp, hp = self.patch(t, boxes, lo, -INF), self.patch(t, boxes, hi, -INF)
        B, C, h, w = lp.shape
        lcol = unfold(lp.reshape(B * C, 1, h, w), layer.kernel, layer.stride)
        ucol = unfold(hp.reshape(B * C, 1, h, w), layer.kernel, layer.stride)
        lmax, idx = lcol.max(1)
        other = ucol.scatter(1, idx[:, None], -INF).max(1).values
        return idx.view(B, C, -1), (lmax >= other).view(B, C, -1), ucol.max(1).values.view(B, C, -1)

    def forward(self, boxes: Boxes, forms: bool, upto: int | None = None, crown_neurons: int = 0,
                crown_depth: int = 0) -> Pass:
        """Interval bounds of every activation up to ``upto`` (default: all), tightened by forward linear forms
        (``forms``) and, at ReLU inputs behind another non-linearity where at most ``crown_neurons`` window neurons
        are unstable, by back-substitution to the colour (CROWN), kept for the backward pass."""
        out = Pass()
        boxes = self.rounded(boxes)
        lo, hi = self.input_window(boxes)
        L = U = self.input_forms(boxes) if forms else None
        upto = len(self.layers) if upto is None else upto
        first = min((t for t, layer in enumerate(self.layers) if layer.kind in NONLINEAR),
                    default=upto)
        for t in range(upto + 1):
            if forms:
                lo = torch.maximum(lo, self.concretize(L, boxes, False))
                hi = torch.minimum(hi, self.concretize(U, boxes, True))
                out.forms[t] = (L, U)
            if crown_neurons and t > first and t < upto and self.layers[t].kind == "relu":
                lo, hi = self.crown_bounds(boxes, t, lo, hi, out, crown_neurons, crown_depth)
            out.bounds.append((lo, hi))
            if t == upto:
                break
            if self.layers[t].kind == "add":  # the residual sum: the shortcut's bounds from the block's input
                if forms:
                    SL, SU = self.shortcut(t, boxes, *out.forms[self.layers[t].source], slots=True)
                    L, U = L + SL, U + SU
                slo, shi = self.shortcut(t, boxes, *out.bounds[self.layers[t].source])
                lo, hi = lo + slo, hi + shi
                continue
            if forms:
                L, U = self.forms_step(t, boxes, L, U, lo, hi, out.pools)
            elif self.layers[t].kind == "maxpool":
                out.pools[t] = self.pool_relaxation(t, boxes, lo, hi)
            lo, hi = self.interval_step(t, boxes, lo, hi)
        return out

    def crown_bounds(self, boxes: Boxes, t: int, lo: Tensor, hi: Tensor, info: Pass, limit: int, depth: int = 0,
                     budget: int = 20_000_000) -> tuple[Tensor, Tensor]:
        """``lo``, ``hi`` (B, *window of t) tightened by back-substituting each box's unstable neurons to the colour
        (boxes with more than ``limit`` keep theirs), or through ``depth`` ReLU layers only, then through the forward
        forms there (0: all the way); ``budget`` caps the coefficients held at once."""
        B = len(boxes)
        g = self.geos[t]
        shape = (B, *g.shape) if g.size is None else (B, g.shape[0], *g.size)
        relus = [r for r in range(t) if self.layers[r].kind == "relu"]
        # Back-substitute through ``depth`` ReLU layers, then use the forward forms there (0: to the colour).
        residual = any(layer.kind == "add" for layer in self.layers)  # partial depth could cut a block in two
        stop = relus[-depth] if depth and len(relus) > depth and not residual else self.base
        lo, hi = lo.flatten(1).clone(), hi.flatten(1).clone()
        unstable = (lo < 0) & (hi > 0)
        counts = unstable.sum(1)
        unstable &= (counts <= limit)[:, None]
        m_max = int(unstable.sum(1).max()) if B else 0
        if m_max == 0:
            return lo.view(shape), hi.view(shape)
        # Per box, its unstable neurons first (stable ones pad the list and are masked out): spec k of box b is
        # neuron order[b, k], so a batch pays for its most unstable box, not for the union of all.
        order = torch.argsort((~unstable).to(torch.int8), dim=1, stable=True)[:, :m_max]
        live = unstable.gather(1, order)
        widest = max(g.shape[0] * (g.size[0] + 2) * (g.size[1] + 2) if g.size else g.shape[0] for g in self.geos[:t])
        step = max(1, budget // (2 * B * widest))
        ar_b = torch.arange(B, device=lo.device)[:, None]
        for s in range(0, m_max, step):
            idx, ok = order[:, s:s + step], live[:, s:s + step]
            m = idx.shape[1]
            lam = torch.zeros(B, 2 * m, lo.shape[1], dtype=lo.dtype, device=lo.device)
            ar = torch.arange(m, device=lo.device)[None]
            lam[ar_b, ar, idx], lam[ar_b, m + ar, idx] = ok.to(lo.dtype), -ok.to(lo.dtype)
            lam, const = self.backward(boxes, lam.view(B, 2 * m, *shape[1:]), t, stop, info)
            bound = colour_bound(boxes, *self.colour_form(boxes, lam, const, info, stop))
            new_lo = torch.where(ok, torch.maximum(lo.gather(1, idx), bound[:, :m]), lo.gather(1, idx))
            new_hi = torch.where(ok, torch.minimum(hi.gather(1, idx), -bound[:, m:]), hi.gather(1, idx))
            lo.scatter_(1, idx, new_lo)
            hi.scatter_(1, idx, new_hi)
        return lo.view(shape), hi.view(shape)

    @staticmethod
    def through_forms(lam: Tensor, const: Tensor, forms: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Coefficients ``lam`` (B, K, *window) on an activation with forward forms (L, U) (B, S, *window) ->
        (colour coefficients (B, K, C), constant (B, K)) of a lower bound."""
        L, U = forms
        f = (lam.clamp_min(0).flatten(2) @ L.flatten(2).transpose(1, 2)
             + lam.clamp_max(0).flatten(2) @ U.flatten(2).transpose(1, 2))
        return f[:, :, :-1], const + f[:, :, -1]

    # -- the backward pass ----------------------------------------------------------------------------------
    def backward(self, boxes: Boxes, lam: Tensor, start: int, stop: int, info: Pass,
                 alphas: dict[int, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Back-substitute lower-bound coefficients ``lam`` (B, K, *window of activation ``start``) to activation
        ``stop``: returns (coefficients (B, K, *window of stop), constant (B, K)). ``alphas``: per ReLU layer index,
        lower slopes (B, K, *window) for its unstable neurons (default: CROWN's)."""
        B, K = lam.shape[:2]
        const = torch.zeros(B, K, dtype=lam.dtype, device=lam.device)
        pending: dict[int, Tensor] = {}  # residual shortcuts' coefficients, waiting at their block's input
        for t in range(start - 1, stop - 1, -1):
            layer = self.layers[t]
            if layer.kind == "add":
                lam_s, const = self.shortcut_back(t, boxes, lam, const)
                pending[layer.source] = pending.get(layer.source, 0) + lam_s
            elif layer.kind == "linear":
                const = const + lam @ layer.bias
                lam = lam @ layer.weight
            elif layer.kind == "scale":
                const = const + (lam * chan(layer.bias, lam.dim(), 2)).flatten(2).sum(2)
                lam = lam * chan(layer.weight, lam.dim(), 2)
            elif layer.kind == "relu":
                lo, hi = info.bounds[t]
                _, unstable, up, low = relu_slopes(lo, hi)
                if alphas is not None and t in alphas:
                    low = torch.where(unstable[:, None], alphas[t], low[:, None])
                else:
                    low = low[:, None]
                neg = lam.clamp_max(0)
                const = const + (neg * torch.where(unstable, -up * lo, torch.zeros_like(lo))[:, None]).flatten(2).sum(2)
                lam = lam.clamp_min(0) * low + neg * up[:, None]
            elif layer.kind == "flatten":
                C, H, W = self.geos[t].shape
                lam, const = self.unpatch(t, boxes, lam.view(B, K, C, H, W), const)
            elif layer.kind == "conv":
                C2, h2, w2 = lam.shape[2:]
                const = const + (lam * chan(layer.bias, lam.dim(), 2)).flatten(2).sum(2)
                lam_p = F.conv_transpose2d(lam.reshape(B * K, C2, h2, w2), layer.weight, None, layer.stride,
                                           groups=layer.groups)
                lam, const = self.unpatch(t, boxes, lam_p.view(B, K, *lam_p.shape[1:]), const)
            else:
                lam, const = self._pool_back(t, boxes, lam, const, info)
            if t in pending:
                lam = lam + pending.pop(t)
        if pending:
            raise ValueError("back-substitution stopped inside a residual block")
        return lam, const

    def shortcut(self, t: int, boxes: Boxes, lo: Tensor, hi: Tensor, slots: bool = False) -> tuple[Tensor, Tensor]:
        """Bounds (or forms, ``slots``) of residual layer t's shortcut on its output window, from those of the
        block's input window."""
        layer = self.layers[t]
        first = layer.branch[0] if layer.branch else IDENTITY
        lo = self.patch(layer.source, boxes, lo, 0.0, slots, layer=first, out=t + 1)
        hi = self.patch(layer.source, boxes, hi, 0.0, slots, layer=first, out=t + 1)
        for lay in layer.branch:
            if lay.kind == "conv":
                lead = lo.shape[:-3]

                def conv(x: Tensor, w: Tensor) -> Tensor:
                    y = F.conv2d(x.reshape(-1, *x.shape[-3:]), w, None, lay.stride, groups=lay.groups)
                    return y.view(*lead, *y.shape[1:])

                mid, rad = conv((lo + hi) / 2, lay.weight), conv((hi - lo) / 2, lay.weight.abs())
                lo, hi = mid - rad, mid + rad
            else:
                a = chan(lay.weight, lo.dim(), lo.dim() - 3)
                lo, hi = a.clamp_min(0) * lo + a.clamp_max(0) * hi, a.clamp_min(0) * hi + a.clamp_max(0) * lo
            bias = chan(lay.bias, lo.dim() - 1 if slots else lo.dim(), lo.dim() - 4 if slots else lo.dim() - 3)
            if slots:
                lo[:, -1] += bias
                hi[:, -1] += bias
            else:
                lo, hi = lo + bias, hi + bias
        return lo, hi

    def shortcut_back(self, t: int, boxes: Boxes, lam: Tensor, const: Tensor) -> tuple[Tensor, Tensor]:
        """Coefficients ``lam`` (B, K, *window of t + 1) through residual layer t's shortcut to the block's
        input window."""
        layer = self.layers[t]
        B, K = lam.shape[:2]
        for lay in reversed(layer.branch):
            const = const + (lam * chan(lay.bias, lam.dim(), 2)).flatten(2).sum(2)
            if lay.kind == "conv":
                lp = F.conv_transpose2d(lam.reshape(B * K, *lam.shape[2:]), lay.weight, None, lay.stride,
                                        groups=lay.groups)
                lam = lp.view(B, K, *lp.shape[1:])
            else:
                lam = lam * chan(lay.weight, lam.dim(), 2)
        first = layer.branch[0] if layer.branch else IDENTITY
        return self.unpatch(layer.source, boxes, lam, const, layer=first, out=t + 1)

    def _pool_back(self, t: int, boxes: Boxes, lam: Tensor, const: Tensor, info: Pass) -> tuple[Tensor, Tensor]:
        layer = self.layers[t]
        idx, exact, umax = info.pools[t]
        B, K, C = lam.shape[:3]
        lam = lam.flatten(3)
        coef = torch.where(exact[:, None], lam, lam.clamp_min(0))
        const = const + (lam.clamp_max(0) * torch.where(exact, torch.zeros_like(umax), umax)[:, None]).flatten(2).sum(2)
        pr, pc, hp, wp = self._patch_place(t, boxes)
        cols = lam.new_zeros(B, K, C, layer.kernel[0] * layer.kernel[1], lam.shape[-1])
        cols.scatter_(3, idx[:, None, :, None].expand(B, K, C, 1, -1), coef[:, :, :, None])
        lam_p = F.fold(cols.view(B * K * C, -1, lam.shape[-1]), (hp, wp), layer.kernel, stride=layer.stride)
        return self.unpatch(t, boxes, lam_p.view(B, K, C, hp, wp), const)

    def colour_form(self, boxes: Boxes, lam: Tensor, const: Tensor, info: Pass, stop: int) -> tuple[Tensor, Tensor]:
        """Coefficients on activation ``stop``'s window -> (colour coefficients (B, K, C), constant (B, K)):
        exactly at the input, else through the forward forms kept there."""
        return self.to_colour(boxes, lam, const) if stop == 0 else self.through_forms(lam, const, info.forms[stop])

    def to_colour(self, boxes: Boxes, lam: Tensor, const: Tensor) -> tuple[Tensor, Tensor]:
        """Coefficients on the input window (B, K, C, h, w) -> (colour coefficients (B, K, C), constant (B, K))."""
        b, pr, pc = self._pixel(boxes)
        clean, _ = crop(self.acts[0], boxes.img, *self.origin(0, boxes), *self.geos[0].size, 0.0)
        clean = clean.clone()
        clean[b, :, pr, pc] = 0
        const = const + (lam * clean[:, None]).flatten(2).sum(2)
        return lam[b, :, :, pr, pc], const


def colour_bound(boxes: Boxes, coef: Tensor, const: Tensor) -> Tensor:
    """min over the box of coef . colour + const: (B, K) from coef (B, K, C), const (B, K)."""
    pick = torch.where(coef > 0, boxes.lo[:, None], boxes.hi[:, None])
    return (coef * pick).sum(2) + const

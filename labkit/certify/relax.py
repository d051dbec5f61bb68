"""The pieces every bound rule shares: per-box crops of maps, and the linear relaxations of ReLU and sigmoid."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def crop(src: Tensor, b: Tensor, r0: Tensor, c0: Tensor, h: int, w: int, fill: float) -> tuple[Tensor, Tensor]:
    """Per box, the h x w block of ``src[b]`` (M, *mid, H, W) whose top-left is (r0, c0) (B,), cells outside
    the map set to ``fill``: (B, *mid, h, w), and the mask (B, h, w) of cells inside the map."""
    H, W = src.shape[-2:]
    rr = r0[:, None] + torch.arange(h, device=src.device)
    cc = c0[:, None] + torch.arange(w, device=src.device)
    mask = ((rr >= 0) & (rr < H))[:, :, None] & ((cc >= 0) & (cc < W))[:, None, :]
    out = src[b[:, None, None], ..., rr.clamp(0, H - 1)[:, :, None], cc.clamp(0, W - 1)[:, None, :]]
    out = out.movedim((1, 2), (-2, -1))
    if not bool(mask.all()):
        out = out.masked_fill(~mask.view(len(b), *[1] * (out.dim() - 3), h, w), fill)
    return out, mask


def unfold(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int]) -> Tensor:
    """``F.unfold`` of single-channel maps x (N, 1, h, w): (N, kh * kw, cells), cells in row-major order.

    Non-overlapping windows that tile the map (stride = kernel, the pools of every registered model) are a
    reshape: ``F.unfold`` (im2col) on float64 took 76% of an interval proof's time on a 2-core CPU (2026-12-07)."""
    (kh, kw), (sh, sw) = kernel, stride
    n, _, h, w = x.shape
    if (kh, kw) != (sh, sw) or h % kh or w % kw:
        return F.unfold(x, kernel, stride=stride)
    return x.reshape(n, h // kh, kh, w // kw, kw).permute(0, 2, 4, 1, 3).reshape(n, kh * kw, (h // kh) * (w // kw))


def chan(v: Tensor, ndim: int, dim: int) -> Tensor:
    """``v`` (C,) shaped to broadcast along dimension ``dim`` of an ``ndim``-dimensional tensor."""
    shape = [1] * ndim
    shape[dim] = -1
    return v.view(shape)


def sigmoid_lines(lo: Tensor, hi: Tensor) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Lines (slope, intercept) below and above the sigmoid on [lo, hi]: on its convex part (hi <= 0) the tangent
    at the middle below, the chord above; on its concave part (lo >= 0) the reverse; across 0 the constant values
    at the ends (the sigmoid is increasing)."""
    sig = torch.sigmoid
    mid = (lo + hi) / 2
    width = (hi - lo).clamp_min(1e-12)
    chord = (sig(hi) - sig(lo)) / width
    tangent = sig(mid) * (1 - sig(mid))
    zero = torch.zeros_like(lo)
    convex, concave = hi <= 0, lo >= 0
    k_low = torch.where(convex, tangent, torch.where(concave, chord, zero))
    b_low = torch.where(convex, sig(mid) - tangent * mid, torch.where(concave, sig(lo) - chord * lo, sig(lo)))
    k_up = torch.where(convex, chord, torch.where(concave, tangent, zero))
    b_up = torch.where(convex, sig(lo) - chord * lo, torch.where(concave, sig(mid) - tangent * mid, sig(hi)))
    return (k_low, b_low), (k_up, b_up)


def relu_slopes(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(active, unstable, upper slope, default lower slope) of ReLUs with pre-activation bounds lo, hi."""
    active, unstable = lo >= 0, (lo < 0) & (hi > 0)
    up = torch.where(unstable, hi / (hi - lo).clamp_min(1e-300), active.to(lo.dtype))
    # CROWN's adaptive choice: slope 1 where the upper side dominates, else 0 (the smaller triangle).
    low = torch.where(unstable, (hi > -lo).to(lo.dtype), active.to(lo.dtype))
    return active, unstable, up, low

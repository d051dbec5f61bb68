"""Lower bounds on every margin f_y - f_j over a batch of boxes, by each method, and alpha-CROWN's slope search."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from labkit.certify.bounds import Boxes, Chain, Pass, colour_bound
from labkit.certify.relax import relu_slopes


def _select(x: object, idx: Tensor) -> object:
    if isinstance(x, Tensor):
        return x[idx]
    if isinstance(x, tuple):
        return tuple(_select(v, idx) for v in x)
    return x


def select_boxes(boxes: Boxes, idx: Tensor) -> Boxes:
    """The boxes ``idx`` (indices or mask)."""
    return Boxes(boxes.img[idx], boxes.row[idx], boxes.col[idx], boxes.lo[idx], boxes.hi[idx])


def select_pass(info: Pass, idx: Tensor) -> Pass:
    """The forward pass of the boxes ``idx`` only."""
    return Pass([_select(b, idx) for b in info.bounds], {t: _select(f, idx) for t, f in info.forms.items()},
                {t: _select(p, idx) for t, p in info.pools.items()})


def margin_spec(labels: Tensor, classes: int, dtype: torch.dtype) -> Tensor:
    """(B, classes - 1, classes): row k is e_y - e_j for the k-th class j != y (the margins f_y - f_j)."""
    eye = torch.eye(classes, dtype=dtype, device=labels.device)
    others = torch.arange(classes, device=labels.device).expand(len(labels), -1)
    others = others[others != labels[:, None]].view(len(labels), classes - 1)
    return eye[labels][:, None, :] - eye[others]


@dataclass
class MarginBounds:
    """Lower bounds (B, K) on the margins f_y - f_j over each box, and, for the linear methods, the affine
    function of the colour they come from (coef (B, K, C), const (B, K); None for interval bounds)."""

    lower: Tensor
    coef: Tensor | None
    const: Tensor | None
    evals: Tensor  # (B,) bound passes spent per box (1, or 1 + the alpha steps it took)

    def minimiser(self, boxes: Boxes) -> Tensor | None:
        """(B, C): the box corner minimising the worst margin's affine lower bound."""
        if self.coef is None:
            return None
        k = self.lower.argmin(1)
        g = self.coef[torch.arange(len(k), device=k.device), k]
        return torch.where(g > 0, boxes.lo, boxes.hi)


def margin_bounds(chain: Chain, boxes: Boxes, labels: Tensor, method: str, intermediate: str = "forward",
                  alpha_steps: int = 10, alpha_lr: float = 0.25, crown_neurons: int = 4096,
                  crown_depth: int = 0) -> MarginBounds:
    """Lower bounds on every margin f_y - f_j (j != y = ``labels`` (B,)) over each box, by ``method``:
    "interval", "forward" (linear forms propagated forward), "backward" (CROWN: back-substitution to the colour,
    intermediate bounds from ``intermediate``: "interval", "forward", or "backward": forward, then CROWN for the
    ReLU inputs with at most ``crown_neurons`` unstable window neurons, through ``crown_depth`` ReLU layers (0: all))
    or "alpha" (backward with the lower
    ReLU slopes optimised by ``alpha_steps`` steps of Adam at ``alpha_lr`` on the boxes not yet proven)."""
    boxes = chain.rounded(boxes)  # behind a bit-depth reduction, the rounded colours (the same boxes otherwise)
    classes = chain.geos[-1].shape[0]
    spec = margin_spec(labels, classes, chain.dtype)
    stop = chain.last_map
    n_layers = len(chain.layers)
    with torch.no_grad():
        forms = method == "forward" or (method in ("backward", "alpha") and (intermediate != "interval" or chain.base))
        crown = crown_neurons if method in ("backward", "alpha") and intermediate == "backward" else 0
        info = chain.forward(boxes, forms, upto=stop, crown_neurons=crown, crown_depth=crown_depth)
        # The cheaper bounds come almost free from the same pass (back-substitution through the affine tail only);
        # neither interval nor back-substituted bounds are always the tighter, so each method keeps the best.
        lam, const = chain.backward(boxes, spec, n_layers, stop, info)
        lo, hi = info.bounds[stop]
        lower = const + (lam.clamp_min(0) * lo[:, None] + lam.clamp_max(0) * hi[:, None]).flatten(2).sum(2)
        coef = None
        if forms:
            coef, const = chain.through_forms(lam, const, info.forms[stop])
            lower = torch.maximum(lower, colour_bound(boxes, coef, const))
        if method in ("interval", "forward"):
            return MarginBounds(lower, coef, const if forms else None, torch.ones(len(boxes), dtype=torch.long))
        lam, const = chain.backward(boxes, spec, n_layers, chain.base, info)
        coef, const = chain.colour_form(boxes, lam, const, info, chain.base)
        lower = torch.maximum(lower, colour_bound(boxes, coef, const))
    out = MarginBounds(lower, coef, const, torch.ones(len(boxes), dtype=torch.long))
    if method == "alpha" and alpha_steps > 0:
        todo = (lower.min(1).values <= 0).nonzero().squeeze(1)
        if len(todo):
            sub = optimise_alpha(chain, select_boxes(boxes, todo), spec[todo], select_pass(info, todo),
                                 MarginBounds(lower[todo], coef[todo], const[todo], out.evals[todo.cpu()]), alpha_steps,
                                 alpha_lr)
            out.lower[todo], out.coef[todo], out.const[todo] = sub.lower, sub.coef, sub.const
            out.evals[todo.cpu()] += sub.evals
    return out


def optimise_alpha(chain: Chain, boxes: Boxes, spec: Tensor, info: Pass, start: MarginBounds, steps: int,
                   lr: float) -> MarginBounds:
    """alpha-CROWN: projected Adam ascent on each unstable ReLU's lower slope (per box and margin) in [0, 1];
    every iterate is a sound bound, so the best per box and margin is kept."""
    alphas = {}
    for t, layer in enumerate(chain.layers[:chain.last_map]):
        if layer.kind == "relu":
            lo, hi = info.bounds[t]
            _, unstable, _, low = relu_slopes(lo, hi)
            if bool(unstable.any()):
                alphas[t] = low[:, None].expand(-1, spec.shape[1], *low.shape[1:]).clone().requires_grad_(True)
    best, coef, const = start.lower.clone(), start.coef.clone(), start.const.clone()
    if not alphas:
        return MarginBounds(best, coef, const, torch.zeros(len(boxes), dtype=torch.long))
    # Adam by hand: torch.optim's first use imports torch._dynamo (~10 s on these CPUs) for a few lines of arithmetic.
    moments = {t: (torch.zeros_like(a), torch.zeros_like(a)) for t, a in alphas.items()}
    done = 0
    for _ in range(steps):
        lam, c = chain.backward(boxes, spec, len(chain.layers), chain.base, info, alphas)
        g, c = chain.colour_form(boxes, lam, c, info, chain.base)
        lower = colour_bound(boxes, g, c)
        done += 1
        with torch.no_grad():
            better = lower > best
            best = torch.where(better, lower, best)
            coef = torch.where(better[..., None], g, coef)
            const = torch.where(better, c, const)
            if bool((best.min(1).values > 0).all()):
                break
        # Margins already proven stop pulling: the slopes serve the ones still open.
        grads = torch.autograd.grad(lower.clamp_max(0).sum(), list(alphas.values()))
        with torch.no_grad():
            for (t, a), g in zip(alphas.items(), grads):
                m, v = moments[t]
                m.mul_(0.9).add_(g, alpha=0.1)
                v.mul_(0.999).addcmul_(g, g, value=0.001)
                m_hat, v_hat = m / (1 - 0.9 ** done), v / (1 - 0.999 ** done)
                a.add_(lr * m_hat / (v_hat.sqrt() + 1e-12)).clamp_(0, 1)  # ascent: the bound is maximised
    return MarginBounds(best, coef, const, torch.full((len(boxes),), done, dtype=torch.long))

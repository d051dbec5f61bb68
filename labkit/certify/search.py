"""Branch and bound over every pixel position's colour cube: the verdicts of ``labkit.certify.certify``.

Per image: the corner search first (2^C corners per position, plain forwards; a flip settles the image), then one
box per position (the whole cube), bounded, probed and split worst-first, batched across positions and images.
Colours are counted in 8-bit levels (0..255, colour = level / 255): under the "8bit" threat a box is a set of
integer levels and one holding few colours is enumerated, which makes the search complete; under "continuous"
boxes are real intervals of levels and only bounds can close them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from labkit.attacks.corner import cube_corners
from labkit.certify.bounds import Boxes, Chain
from labkit.certify.margins import margin_bounds

ROBUST, VULNERABLE, UNKNOWN = 1, 0, -1
LEVELS = 255  # 8-bit colour levels above 0: colour = level / LEVELS


@dataclass
class Queue:
    """Open boxes: image (Q,) (index in the group), position (Q,) (row * W + col), lo, hi (Q, C) in levels,
    prio (Q,) the parent's worst margin bound (-inf for a fresh box): the lowest is split first."""

    img: Tensor
    pos: Tensor
    lo: Tensor
    hi: Tensor
    prio: Tensor

    def take(self, idx: Tensor) -> "Queue":
        return Queue(self.img[idx], self.pos[idx], self.lo[idx], self.hi[idx], self.prio[idx])

    @staticmethod
    def cat(parts: list["Queue"]) -> "Queue":
        return Queue(*(torch.cat([getattr(p, f) for p in parts]) for f in ("img", "pos", "lo", "hi", "prio")))

    def __len__(self) -> int:
        return len(self.img)


class Group:
    """The search state of a group of images: the model, its chain, the per-position verdicts and the costs."""

    def __init__(self, model: nn.Module, chain: Chain, images: Tensor, labels: Tensor, cfg: object):
        self.model, self.chain, self.cfg = model, chain, cfg
        self.images, self.labels = images, labels
        self.n, self.c, self.h, self.w = images.shape
        self.dev = images.device
        self.mdev = next((p.device for p in model.parameters()), self.dev)
        self.state = torch.full((self.n, self.h * self.w), UNKNOWN, dtype=torch.int8, device=self.dev)
        self.colours = torch.full((self.n, self.h * self.w, self.c), float("nan"), device=self.dev)
        self.open = torch.zeros(self.n, self.h * self.w, dtype=torch.long, device=self.dev)
        self.dropped = torch.zeros(self.n, self.h * self.w, dtype=torch.bool, device=self.dev)
        self.boxes = torch.zeros(self.n, dtype=torch.long)
        self.position_boxes = torch.zeros(self.n, self.h * self.w, dtype=torch.long, device=self.dev)
        self.evals = torch.zeros(self.n, dtype=torch.long)
        self.seconds = torch.zeros(self.n, dtype=torch.float64)

    # -- forwards ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def flips(self, img: Tensor, pos: Tensor, levels: Tensor) -> Tensor:
        """(R,) whether writing colour ``levels`` / 255 (R, C) at ``pos`` of image ``img`` changes the fp32
        prediction away from the label: the ground truth every counterexample is checked against."""
        out = torch.zeros(len(img), dtype=torch.bool, device=self.dev)
        step = self.cfg.chunk_size
        for s in range(0, len(img), step):
            sl = slice(s, s + step)
            x = self.images[img[sl]].float().clone()
            ar = torch.arange(len(x), device=self.dev)
            x[ar, :, pos[sl] // self.w, pos[sl] % self.w] = levels[sl].float() / LEVELS
            with torch.autocast(self.mdev.type, enabled=False):
                pred = self.model(x.to(self.mdev)).argmax(1).to(self.dev)
            out[sl] = pred != self.labels[img[sl]]
        return out

    @torch.no_grad()
    def clean_correct(self) -> Tensor:
        """(n,) whether the model's fp32 prediction on each unchanged image is its label."""
        with torch.autocast(self.mdev.type, enabled=False):
            pred = self.model(self.images.float().to(self.mdev)).argmax(1).to(self.dev)
        return pred == self.labels

    def mark_vulnerable(self, img: Tensor, pos: Tensor, levels: Tensor) -> None:
        """Record flipping colours (first one kept per position)."""
        fresh = self.state[img, pos] != VULNERABLE
        img, pos, levels = img[fresh], pos[fresh], levels[fresh]
        self.state[img, pos] = VULNERABLE
        self.colours[img, pos] = levels.float() / LEVELS

    def active(self, boxes: bool = True) -> Tensor:
        """(n,) images still worth work: undecided (or all positions asked for) and within budget (the box
        budget only with ``boxes``: the corner search spends none)."""
        cfg = self.cfg
        within = (self.seconds < cfg.max_seconds) & ((self.boxes < cfg.max_boxes) | (not boxes))
        vuln = (self.state == VULNERABLE).any(1).cpu()
        return (within & (~vuln | cfg.all_positions)).to(self.dev)

    def charge(self, img: Tensor, seconds: float, boxes: bool = True) -> None:
        """Share ``seconds`` among the images of ``img`` (one entry per box or candidate) by their counts."""
        counts = torch.bincount(img.cpu(), minlength=self.n)
        if boxes:
            self.boxes += counts
        if len(img):
            self.seconds += seconds * counts.double() / len(img)

    # -- the corner search ------------------------------------------------------------------------------------
    def corner_search(self, order: Tensor) -> None:
        """All 2^C corners at every position, positions in ``order`` (n, H*W), a block at a time; an image stops at
        its first flip unless all positions are asked for."""
        corners = cube_corners(self.c).long().to(self.dev) * LEVELS
        m = len(corners)
        block = max(1, self.cfg.chunk_size // m)
        for start in range(0, order.shape[1], block):
            act = self.active(boxes=False).nonzero().squeeze(1)
            if not len(act):
                break
            t0 = time.perf_counter()
            pos = order[act, start:start + block]  # (A, b)
            img = act[:, None, None].expand(-1, pos.shape[1], m).reshape(-1)
            pp = pos[:, :, None].expand(-1, -1, m).reshape(-1)
            levels = corners.repeat(len(act) * pos.shape[1], 1)
            hit = self.flips(img, pp, levels)
            self.mark_vulnerable(img[hit], pp[hit], levels[hit])
            self.charge(img, time.perf_counter() - t0, boxes=False)

    # -- branch and bound -------------------------------------------------------------------------------------
    def initial_queue(self, order: Tensor) -> Queue:
        """One whole-cube box per position not yet found vulnerable, images still active, in ``order``."""
        act = self.active()
        img = torch.arange(self.n, device=self.dev)[:, None].expand(-1, order.shape[1]).reshape(-1)
        pos = order.reshape(-1)
        keep = act[img] & (self.state[img, pos] != VULNERABLE)
        img, pos = img[keep], pos[keep]
        lo = torch.zeros(len(img), self.c, dtype=torch.float64, device=self.dev)
        q = Queue(img, pos, lo, torch.full_like(lo, LEVELS), torch.full((len(img),), -float("inf"),
                                                                         dtype=torch.float64, device=self.dev))
        self.open.index_put_((img, pos), torch.ones_like(img), accumulate=True)
        return q

    def prune(self, q: Queue) -> Queue:
        """Drop the boxes of inactive images and of positions already found vulnerable."""
        keep = self.active()[q.img] & (self.state[q.img, q.pos] != VULNERABLE)
        if self.cfg.position_budget is not None:
            keep &= self.position_boxes[q.img, q.pos] < self.cfg.position_budget
        gone = ~keep
        self.dropped[q.img[gone], q.pos[gone]] = True
        self.open.index_put_((q.img[gone], q.pos[gone]), -torch.ones_like(q.img[gone]), accumulate=True)
        return q.take(keep)

    def pick(self, q: Queue) -> tuple[Queue, Queue]:
        """(batch, rest): up to chunk_size boxes, worst first within each image, the images sharing the batch."""
        order = torch.argsort(q.prio, stable=True)
        order = order[torch.argsort(q.img[order], stable=True)]
        imgs = q.img[order]
        first = torch.searchsorted(imgs, imgs)
        rank = torch.arange(len(q), device=self.dev) - first
        quota = -(-self.cfg.chunk_size // len(torch.unique(imgs)))
        chosen = torch.zeros(len(q), dtype=torch.bool, device=self.dev)
        chosen[order[rank < quota]] = True
        return q.take(chosen), q.take(~chosen)

    def step(self, batch: Queue) -> Queue:
        """Enumerate, bound, probe and split one batch; returns the children to queue."""
        cfg = self.cfg
        self.open.index_put_((batch.img, batch.pos), -torch.ones_like(batch.img), accumulate=True)
        if cfg.threat == "8bit":
            small = (batch.hi - batch.lo + 1).prod(1) <= cfg.enumerate_below
            self.enumerate(batch.take(small))
            batch = batch.take(~small)
        if not len(batch):
            return batch
        if cfg.interval_first and cfg.method != "interval":
            # The cheap pass first: what interval bounds already prove never pays for the tight ones.
            ib = margin_bounds(self.chain, self.boxes_of(batch), self.labels[batch.img], "interval")
            self.evals += torch.bincount(batch.img.cpu(), minlength=self.n)
            batch = batch.take(ib.lower.min(1).values <= 0)
            if not len(batch):
                return batch
        boxes = self.boxes_of(batch)
        mb = margin_bounds(self.chain, boxes, self.labels[batch.img], cfg.method, cfg.intermediate, cfg.alpha_steps,
                           cfg.alpha_lr, cfg.crown_neurons, cfg.crown_depth)
        self.evals += torch.bincount(batch.img.cpu(), weights=mb.evals.double(), minlength=self.n).long()
        worst = mb.lower.min(1).values.to(torch.float64)
        open_ = worst <= 0
        self.probe(batch.take(open_), mb.minimiser(boxes)[open_] * LEVELS if mb.coef is not None else None)
        children = self.split(batch.take(open_), worst[open_])
        self.open.index_put_((children.img, children.pos), torch.ones_like(children.img), accumulate=True)
        return children

    def boxes_of(self, batch: Queue) -> Boxes:
        """The bound module's view of queued boxes: colours in [0, 1] in the chain's dtype (``Chain.rounded``:
        rounded behind a bit-depth reduction)."""
        return self.chain.rounded(Boxes(batch.img, batch.pos // self.w, batch.pos % self.w,
                                        (batch.lo / LEVELS).to(self.chain.dtype),
                                        (batch.hi / LEVELS).to(self.chain.dtype)))

    def enumerate(self, batch: Queue) -> None:
        """Check every 8-bit colour of small boxes with plain forwards."""
        if not len(batch):
            return
        size = (batch.hi - batch.lo + 1).long()  # (B, C)
        count = size.prod(1)
        q = torch.arange(int(count.max()), device=self.dev)
        box = torch.arange(len(batch), device=self.dev)[:, None].expand(-1, len(q))
        valid = q[None] < count[:, None]
        box, qq = box[valid], q[None].expand(len(batch), -1)[valid]
        digits, rest = [], qq.clone()
        for c in range(self.c - 1, -1, -1):  # mixed radix: the last channel varies fastest
            digits.append(rest % size[box, c])
            rest = rest // size[box, c]
        levels = batch.lo[box] + torch.stack(digits[::-1], 1).to(batch.lo.dtype)
        hit = self.flips(batch.img[box], batch.pos[box], levels)
        self.mark_vulnerable(batch.img[box][hit], batch.pos[box][hit], levels[hit])

    def probe(self, batch: Queue, minimiser: Tensor | None) -> None:
        """Try each open box's centre and its bound's minimising corner (rounded to 8-bit levels)."""
        cands = [torch.floor((batch.lo + batch.hi) / 2)]
        if minimiser is not None:
            cands.append(minimiser.to(batch.lo.dtype))
        levels = torch.cat(cands).round().clamp(0, LEVELS)
        img, pos = batch.img.repeat(len(cands)), batch.pos.repeat(len(cands))
        hit = self.flips(img, pos, levels)
        self.mark_vulnerable(img[hit], pos[hit], levels[hit])

    def split(self, batch: Queue, worst: Tensor) -> Queue:
        """Halve each box along its widest channel (8-bit: [lo, m] and [m + 1, hi], disjoint)."""
        width = batch.hi - batch.lo
        dim = width.argmax(1)
        ar = torch.arange(len(batch), device=self.dev)
        lo, hi = batch.lo[ar, dim], batch.hi[ar, dim]
        mid = torch.floor((lo + hi) / 2) if self.cfg.threat == "8bit" else (lo + hi) / 2
        left_hi, right_lo = batch.hi.clone(), batch.lo.clone()
        left_hi[ar, dim] = mid
        right_lo[ar, dim] = mid + 1 if self.cfg.threat == "8bit" else mid
        return Queue(batch.img.repeat(2), batch.pos.repeat(2), torch.cat([batch.lo, right_lo]),
                     torch.cat([left_hi, batch.hi]), worst.repeat(2))

    def run(self, order: Tensor) -> None:
        """The whole search: corners, then branch and bound until every image is decided or out of budget."""
        if self.cfg.corners:
            self.corner_search(order)
        q = self.initial_queue(order)
        started = self.open > 0
        while True:
            q = self.prune(q)
            if not len(q):
                break
            t0 = time.perf_counter()
            batch, q = self.pick(q)
            q = Queue.cat([q, self.step(batch)])
            self.charge(batch.img, time.perf_counter() - t0)
            self.position_boxes.index_put_((batch.img, batch.pos), torch.ones_like(batch.img), accumulate=True)
            proven = started & (self.open == 0) & ~self.dropped & (self.state == UNKNOWN)
            self.state[proven] = ROBUST
        proven = started & (self.open == 0) & ~self.dropped & (self.state == UNKNOWN)
        self.state[proven] = ROBUST

    def image_status(self) -> Tensor:
        """(n,) int8: VULNERABLE if any position is, ROBUST if all are, else UNKNOWN."""
        status = torch.full((self.n,), UNKNOWN, dtype=torch.int8, device=self.dev)
        status[(self.state == ROBUST).all(1)] = ROBUST
        status[(self.state == VULNERABLE).any(1)] = VULNERABLE
        return status

"""Tests of labkit.apr: the attention gate, the APR objective and its ablation switches."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit import apr, suites
from labkit.apr import APRObjective, AttentionGate, apr_config, gate_of, input_gradient_penalty, jacobian_penalty
from labkit.defences import OnePixelAT
from labkit.labs import apr_tables
from labkit.profiles import get_profile, lab_sizes
from labkit.train import TrainConfig, TrainContext, build_for_config



def ctx_for(model: nn.Module) -> TrainContext:
    return TrainContext(config=TrainConfig(), device=torch.device("cpu"))


def images(n: int = 4, size: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def smooth_cnn(seed: int = 0) -> nn.Module:
    """A tiny CNN with smooth activations (finite differences need no kinks), fp64."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 10)).double()


# -- the gate (it lives in labkit.models; tests/test_models.py) ----------------------------------------------------

def test_apr_reexports_the_gate_of_labkit_models() -> None:
    from labkit import models

    assert apr.AttentionGate is models.AttentionGate and apr.gate_of is models.gate_of
    assert apr.GATE_MODES == models.GATE_MODES


# -- the penalty ---------------------------------------------------------------------------------------------------

def test_penalty_matches_finite_differences() -> None:
    """The penalty is mean_i ||d l_i / d x_i||^2, checked against central differences in fp64."""
    model = smooth_cnn()
    x = images(3, 4, dtype=torch.float64)
    y = torch.tensor([1, 4, 7])

    def per_image_loss(xs: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(xs), y, reduction="none")

    eps = 1e-6
    fd = torch.zeros_like(x)
    flat = fd.view(len(x), -1)
    for j in range(flat.shape[1]):
        step = torch.zeros_like(x).view(len(x), -1)
        step[:, j] = eps
        step = step.view_as(x)
        flat[:, j] = (per_image_loss(x + step) - per_image_loss(x - step)) / (2 * eps)
    expected = fd.pow(2).flatten(1).sum(1).mean()

    xg = x.clone().requires_grad_(True)
    got = input_gradient_penalty(per_image_loss(xg), xg)
    assert torch.allclose(got, expected, rtol=1e-6), (got.item(), expected.item())


def assert_weight_gradient_matches_finite_difference(penalty, w: torch.Tensor, direction: torch.Tensor) -> None:
    """d(penalty)/d(w) along ``direction`` (autograd, double backpropagation) equals a central difference."""
    (grad,) = torch.autograd.grad(penalty(), w)
    eps = 1e-6
    with torch.no_grad():
        w += eps * direction
    up = penalty().detach()
    with torch.no_grad():
        w -= 2 * eps * direction
    down = penalty().detach()
    assert torch.allclose((grad * direction).sum(), (up - down) / (2 * eps), rtol=1e-5)


def test_penalty_gradient_wrt_weights_matches_finite_differences() -> None:
    """Double backpropagation: d(penalty)/d(theta) agrees with a directional finite difference."""
    model = smooth_cnn(1)
    x, y = images(3, 4, dtype=torch.float64), torch.tensor([0, 3, 9])
    w = model[0].weight
    direction = torch.randn(w.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def penalty() -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        return input_gradient_penalty(F.cross_entropy(model(xg), y, reduction="none"), xg)

    assert_weight_gradient_matches_finite_difference(penalty, w, direction)


def test_penalty_needs_autograd(batch) -> None:
    model, x, y = batch
    with torch.no_grad(), pytest.raises(RuntimeError, match="autograd"):
        APRObjective(adversarial=False).loss(model, x, y, ctx_for(model))


def test_penalty_does_not_scale_with_batch_size() -> None:
    model = smooth_cnn()
    x, y = images(2, 4, dtype=torch.float64), torch.tensor([2, 5])

    def pen(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        xs = xs.clone().requires_grad_(True)
        return input_gradient_penalty(F.cross_entropy(model(xs), ys, reduction="none"), xs)

    assert torch.allclose(pen(x, y), pen(x.repeat(3, 1, 1, 1), y.repeat(3)))


def exact_jacobian_sq(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mean_i ||d model(x)_i / d x_i||_F^2, one backward pass per class."""
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    total = torch.zeros(len(x), dtype=x.dtype)
    for k in range(logits.shape[1]):
        (g,) = torch.autograd.grad(logits[:, k].sum(), xg, retain_graph=True)
        total += g.pow(2).flatten(1).sum(1)
    return total.mean()


def test_jacobian_penalty_estimates_the_frobenius_norm() -> None:
    model = smooth_cnn(3)
    x = images(3, 4, dtype=torch.float64)
    exact = exact_jacobian_sq(model, x)
    xg = x.clone().requires_grad_(True)
    estimate = jacobian_penalty(model(xg), xg, 4000, torch.Generator().manual_seed(0))
    # Unbiased; with 3 images x 4000 projections its relative spread is below sqrt(2 / 12000) = 1.3%.
    assert abs(estimate.item() / exact.item() - 1) < 0.05, (estimate.item(), exact.item())
    one = jacobian_penalty(model(xg), xg, 1, torch.Generator().manual_seed(0))
    assert one.item() != pytest.approx(exact.item(), rel=1e-3)  # a single draw is an estimate, not the norm


def test_jacobian_penalty_is_differentiable_in_the_weights() -> None:
    model = smooth_cnn(1)
    x = images(2, 4, dtype=torch.float64)
    w = model[0].weight
    direction = torch.randn(w.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def penalty() -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        return jacobian_penalty(model(xg), xg, 2, torch.Generator().manual_seed(7))  # the same draws each time

    assert_weight_gradient_matches_finite_difference(penalty, w, direction)


# -- the objective and its switches --------------------------------------------------------------------------------

@pytest.fixture
def batch(tiny_cnn: nn.Module) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = nn.Sequential(AttentionGate(), tiny_cnn).train()
    x = images(6, 8, seed=3)
    with torch.no_grad():
        y = model.eval()(x).argmax(1)  # correctly classified, so the inner attack has something to do
    return model.train(), x, y


def test_objective_rejects_bad_parameters() -> None:
    for kwargs, match in [({"alpha": 1.5}, "alpha"), ({"alpha": -0.1}, "alpha"), ({"beta": -1}, "beta"),
                          ({"beta": float("inf")}, "beta"), ({"positions": 0}, "positions"),
                          ({"positions": 2.5}, "positions"), ({"adversarial": "yes"}, "adversarial"),
                          ({"penalty": "jacobian"}, "penalty"), ({"projections": 0}, "projections"),
                          ({"projections": 1.0}, "projections")]:
        with pytest.raises(ValueError, match=match):
            APRObjective(**kwargs)


def test_no_adversarial_no_penalty_is_plain_cross_entropy(batch, monkeypatch) -> None:
    model, x, y = batch
    monkeypatch.setattr(OnePixelAT, "adversarial", lambda *a, **k: pytest.fail("the inner attack ran"))
    ctx = ctx_for(model)
    terms = APRObjective(adversarial=False, beta=0.0).terms(model, x, y, ctx)
    assert set(terms) == {"clean", "total"}
    assert torch.allclose(terms["total"], F.cross_entropy(model(x), y))
    assert "inner_attack" not in ctx.timers


def test_logits_penalty_is_seeded_by_the_training_context(batch) -> None:
    from dataclasses import replace

    model, x, y = batch
    model.eval()
    objective = APRObjective(adversarial=False, beta=0.01, penalty="logits", projections=2)
    ctx = ctx_for(model)
    before = ctx.generator.get_state()
    first = objective.terms(model, x, y, ctx)
    assert torch.equal(ctx.generator.get_state(), before)  # augmentation and shuffling draws are not shifted
    assert torch.equal(objective.terms(model, x, y, ctx_for(model))["penalty"], first["penalty"])  # reproducible
    assert not torch.equal(objective.terms(model, x, y, ctx)["penalty"], first["penalty"])  # a new step, new draws
    later = ctx_for(model)
    later.epoch = 1
    assert not torch.equal(objective.terms(model, x, y, later)["penalty"], first["penalty"])
    other_seed = TrainContext(config=replace(TrainConfig(), seed=1), device=torch.device("cpu"))
    assert not torch.equal(objective.terms(model, x, y, other_seed)["penalty"], first["penalty"])
    # What is added is beta times the estimate of those draws, on top of the plain loss.
    gen = apr._projection_generator(ctx_for(model))
    xg = x.clone().requires_grad_(True)
    expected = 0.01 * jacobian_penalty(model(xg).float(), xg, 2, gen)
    assert torch.allclose(first["penalty"], expected)
    assert torch.allclose(first["total"], first["clean"] + first["penalty"])


def test_logits_and_ce_penalties_differ_as_documented(batch) -> None:
    # grad_x CE = J^T (softmax - onehot), so ||grad CE|| <= ||J||_2 ||softmax - onehot|| <= sqrt(2) ||J||_F.
    model, x, y = batch
    model.eval()
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    ce = input_gradient_penalty(F.cross_entropy(logits, y, reduction="none"), xg)
    assert ce.item() <= 2 * exact_jacobian_sq(model, x).item() + 1e-9


def test_penalty_switch_adds_exactly_beta_times_the_penalty(batch) -> None:
    model, x, y = batch
    model.eval()  # no batch-norm coupling here anyway; eval keeps the two forwards identical
    with_r = APRObjective(adversarial=False, beta=0.01).terms(model, x, y, ctx_for(model))
    without = APRObjective(adversarial=False, beta=0.0).terms(model, x, y, ctx_for(model))
    xg = x.clone().requires_grad_(True)
    expected = input_gradient_penalty(F.cross_entropy(model(xg), y, reduction="none"), xg)
    assert with_r["penalty"] > 0
    assert torch.allclose(with_r["penalty"], 0.01 * expected)
    assert torch.allclose(with_r["total"], without["total"] + with_r["penalty"])
    assert "penalty" not in without


def test_adversarial_switch_mixes_with_alpha_and_restores_train_mode(batch) -> None:
    model, x, y = batch
    ctx = ctx_for(model)
    terms = APRObjective(alpha=0.7, beta=0.0, positions=2).terms(model, x, y, ctx)
    assert model.training  # back in train mode after the (eval-mode) inner attack
    assert ctx.timers["inner_attack"] > 0
    adv = OnePixelAT(positions=2).adversarial(model, x, y, ctx)
    assert ((adv != x).any(1).flatten(1).sum(1) <= 1).all()  # one pixel changed per image
    ce = F.cross_entropy(model(torch.cat([x, adv])), y.repeat(2), reduction="none")
    assert torch.allclose(terms["adversarial"], ce[6:].mean())
    assert torch.allclose(terms["clean"], ce[:6].mean())
    assert torch.allclose(terms["total"], 0.7 * ce[:6].mean() + 0.3 * ce[6:].mean())
    assert terms["adversarial"] > terms["clean"]  # the inner attack did raise the loss


@pytest.mark.parametrize("penalty", ["ce", "logits"])
def test_full_objective_trains_end_to_end_under_bf16_autocast(batch, penalty: str) -> None:
    """The training loop runs objectives in bf16 autocast: double backprop must work there on CPU."""
    model, x, y = batch
    ctx = ctx_for(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = APRObjective(positions=1, penalty=penalty).terms(model, x, y, ctx)
    terms["total"].backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert gate_of(model).conv.weight.grad.abs().sum() > 0
    assert terms["penalty"].dtype == torch.float32 and terms["penalty"] > 0
    with torch.no_grad():
        fp32 = APRObjective(positions=1, adversarial=False, beta=0).terms(model, x, y, ctx_for(model))["clean"]
    assert abs(terms["clean"].item() - fp32.item()) < 0.05 * fp32.item() + 0.02  # bf16 is close to fp32


# -- configs -------------------------------------------------------------------------------------------------------

def test_variants_switch_off_exactly_one_component() -> None:
    smoke = get_profile("smoke")
    cfgs = {v: apr_config(smoke, v) for v in apr.VARIANTS}
    full = cfgs["full"]
    assert full.gate == "pixel" and full.objective == APRObjective(0.7, 0.01, True, apr.inner_positions(smoke))
    assert gate_of(build_for_config(full)) is not None
    assert cfgs["no_attention"].gate == "none" and gate_of(build_for_config(cfgs["no_attention"])) is None
    assert cfgs["no_attention"].objective == full.objective
    assert cfgs["no_adversarial"].objective.adversarial is False and cfgs["no_adversarial"].gate == "pixel"
    assert cfgs["no_regularisation"].objective.beta == 0 and cfgs["no_regularisation"].objective.adversarial
    for name, cfg in cfgs.items():  # nothing else differs
        assert (cfg.model, cfg.epochs, cfg.seed, cfg.lr) == (full.model, full.epochs, full.seed, full.lr), name
    assert len({c for c in cfgs.values()}) == 4  # four distinct cache keys


def test_apr_config_arguments() -> None:
    cfg = apr_config(get_profile("cpu"), model="resnet18", seed=3, positions=5)
    assert (cfg.model, cfg.seed, cfg.objective.positions) == ("resnet18", 3, 5)
    with pytest.raises(ValueError, match="variant"):
        apr_config(get_profile("smoke"), "no_gate")
    # Without ``positions``, the profile's ``apr`` section says (OnePixelAT's default where it has none).
    three = replace(get_profile("cpu"), labs=lab_sizes(apr=dict(inner_positions=3)))
    assert apr_config(three).objective.positions == apr.inner_positions(three) == 3
    assert apr_config(replace(three, labs=())).objective.positions == apr.DEFAULT_INNER_POSITIONS


def test_training_through_the_cache(tiny_folder, monkeypatch) -> None:
    """A real (tiny) APR run through labkit.train: bf16 autocast, the inner attack timed, the gate trained, cached."""
    from labkit import models
    from labkit.train import get_or_train

    # A registered stand-in for small_cnn with batch norm (the train-mode coupling) at a fraction of its cost.
    def tiny(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.MaxPool2d(4), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))

    monkeypatch.setitem(models.REGISTRY, "tiny_test", tiny)
    cfg = TrainConfig(model="tiny_test", gate="pixel", epochs=1, batch_size=30, train_size=60, eval_size=20,
                      objective=APRObjective(positions=1))
    trained = get_or_train(cfg, device="cpu", progress=False)
    assert trained.history[0]["seconds_inner_attack"] > 0
    assert gate_of(trained.model).conv.weight.abs().sum() > 0  # the gate moved away from its constant start
    again = get_or_train(cfg, device="cpu", progress=False)  # loaded from the cache, gate included
    assert torch.equal(gate_of(again.model).conv.weight, gate_of(trained.model).conv.weight)


# -- the protocol on an APR suite ----------------------------------------------------------------------------------



def test_lab_pipeline_end_to_end_on_tiny_data(tiny_folder, monkeypatch) -> None:
    """train_suite -> evaluate_suite (the adaptive suite) -> seed_table -> verdict, on a tiny model and budget."""
    from labkit import models

    monkeypatch.setitem(models.REGISTRY, "colour_mlp", lambda num_classes=10, in_channels=3: nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, num_classes)))
    p = replace(get_profile("smoke"), name="test", models=("colour_mlp",), epochs=15, train_size=120, batch_size=40,
                optimizer="adam", lr=0.05, schedule="constant", eval_size=40, n_attack=3, population=4,
                generations=1, seeds=(0,), corner=False)
    suite = [suites.Entry("No defence", p.train_config(augment=False), paper="No defence"),
             suites.Entry("APR", replace(apr_config(p, positions=1), augment=False), paper="APR")]
    trained = suites.train_suite(suite, device="cpu", progress=False)
    attacked = suites.attacked_indices(trained, p)
    assert list(attacked) == [("colour_mlp", 0)] and len(attacked[("colour_mlp", 0)]) == 3
    rows = suites.evaluate_suite(trained, p, attacked, progress=False)
    suite = (*suites.SUITE, suites.WORST_CASE)
    assert [(r["defence"], r["attack"]) for r in rows] == [(d, a) for d in ("No defence", "APR") for a in suite]
    worst = next(r for r in rows if r["defence"] == "APR" and r["attack"] == suites.WORST_CASE)
    assert worst["asr"] >= max(r["asr"] for r in rows if r["defence"] == "APR")
    text = apr_tables.table1_verdict(apr_tables.seed_table(rows, apr_tables.TABLE1_CLAIMS), p)
    assert "APR lowers the one-pixel ASR (worst case)" in text and "n = 3" in text


def test_apr_figures_render() -> None:
    from matplotlib.figure import Figure

    from labkit import plotting

    figs = [plotting.attention_maps(images(3, 8), torch.rand(3, 1, 8, 8), titles=["a", "b", "c"]),
            plotting.attention_maps(images(2, 8), torch.full((2, 3, 8, 8), 0.5)),  # a flat map must not crash
            plotting.paper_comparison(["APR", "none"], [20.0, 60.0], [10.0, float("nan")], [30.0, float("nan")],
                                      [21.43, None], "ASR (%)", "t"),
            plotting.time_split({"inner attack": 100.0, "gate": -3.0}, 95.0, title="t")]
    for fig in figs:
        assert isinstance(fig, Figure) and fig._repr_png_().startswith(b"\x89PNG")

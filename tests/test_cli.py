"""labkit.cli (``python -m labkit evaluate`` / ``certify``): your own model, attacked or certified, and recorded;
one clear message per bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from labkit import cli, records

USER_MODEL = textwrap.dedent('''
    """A user's model file: the fixture's classes are mean colours; a near-white pixel anywhere means class 9."""
    import torch
    from torch import nn

    PALETTE = torch.tensor([[0, 0, 0], [150, 0, 0], [0, 150, 0], [0, 0, 150], [150, 150, 0], [150, 0, 150],
                            [0, 150, 150], [150, 150, 150], [75, 0, 0], [0, 0, 75]]) / 255 + 20 / 255


    class Palette(nn.Module):
        def __init__(self, scale=1.0):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(200.0))
            self.input_scale = scale

        def forward(self, x):
            x = x / self.input_scale
            mean = x.mean((2, 3))
            logits = -self.scale * ((mean[:, None, :] - PALETTE[None]) ** 2).sum(-1)
            white = (x.amin(1) > 0.95).flatten(1).any(1)
            return logits + 1000.0 * torch.nn.functional.one_hot(torch.full_like(white, 9, dtype=torch.long),
                                                                  10) * white[:, None]


    def build():
        return Palette().eval()


    def training():
        return Palette()


    def wants_255():
        return Palette(scale=255.0).eval()


    def three_classes():
        return nn.Sequential(Palette(), nn.Linear(10, 3)).eval()


    def certifiable(activation=nn.ReLU):
        """Palette's classes as a chain labkit.certify has rules for: the logits are linear in the mean colour
        (-s |mean - p_k|^2 up to a term common to every class), and a 1x1 conv detects a near-white pixel
        (channel sum above 2.85; the fixture's pixels stay below 0.75) and adds to class 9."""
        conv, head = nn.Conv2d(3, 4, 1), nn.Linear(4, 10)
        with torch.no_grad():
            conv.weight.zero_(), conv.bias.zero_()
            conv.weight[:3, :, 0, 0] = torch.eye(3)
            conv.weight[3], conv.bias[3] = 1000.0, -2850.0
            head.weight.zero_()
            head.weight[:, :3] = 2 * 200.0 * PALETTE
            head.bias.copy_(-200.0 * (PALETTE ** 2).sum(1))
            head.weight[9, 3] = 2000.0  # one white pixel: +0.146 mean detector, +293 to class 9's logit
        return nn.Sequential(conv, activation(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()


    def with_gelu():
        return certifiable(nn.GELU)


    def ceil_pool():
        return nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), *certifiable()).eval()
''')


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "user_nets.py").write_text(USER_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "user_nets"


def _run(*argv: str) -> int:
    return cli.main(["evaluate", *argv])


def test_a_user_model_is_attacked_verified_and_recorded(tiny_folder, user_module, tmp_path, capsys):
    out = tmp_path / "results"
    assert _run("--model", f"{user_module}:build", "--attacks", "corner", "--n", "6", "--profile", "smoke",
                "--results", str(out)) == 0
    printed = capsys.readouterr().out
    assert "corner" in printed and "record:" in printed
    stored = records.load("evaluate_user_nets_build", "smoke", root=out)
    (row,) = stored["tables"]["table"]
    labels = torch.tensor(stored["arrays"]["table/corner/labels"])
    # A white pixel means class 9: every image of another class breaks, verified; class 9's cannot move there.
    assert row["unverified"] == 0 and row["outcomes"] == [int(v) for v in (labels != 9).tolist()]
    assert stored["settings"]["attacks"] == ["corner"] and stored["settings"]["n"] == 6
    assert "/" not in stored["settings"]["dataset"]  # the dataset in words, no local path
    import user_nets  # written by the fixture

    assert stored["settings"]["weights_key"] == cli.weights_key(user_nets.build())  # its weights name it


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch 2.14 deprecates TorchScript; it still loads
def test_an_image_folder_and_a_torchscript_file(tiny_folder, user_module, tmp_path):
    import user_nets  # written by the fixture

    scripted = tmp_path / "net.ts"
    torch.jit.trace(user_nets.build(), torch.rand(2, 3, 16, 16)).save(str(scripted))
    args = cli.build_parser().parse_args(["evaluate", "--model", str(scripted), "--dataset", str(tiny_folder / "test"),
                                          "--size", "16", "--attacks", "de", "--n", "3", "--profile", "smoke",
                                          "--results", str(tmp_path / "r")])
    rows, path = cli.evaluate(args, progress=False)
    assert [r["attack"] for r in rows] == ["DE k=1"] and rows[0]["attacked"] == 3
    assert json.loads(path.read_text())["settings"]["dataset"] == "test, local ImageFolder copy 'test'"


@pytest.mark.parametrize("argv, message", [
    (["--model", "user_nets:training"], "training mode"),
    (["--model", "user_nets:wants_255"], "[0, 255]"),
    (["--model", "user_nets:three_classes"], "shape (N, 10)"),
    (["--model", "user_nets:build", "--dataset", "/no/such/folder"], "neither a registered dataset"),
    (["--model", "small_cnn"], "--weights"),
    (["--model", "no_such_module:build"], "cannot load"),
    (["--model", "user_nets:build", "--attacks", "de,fgsm"], "choose from"),
])
def test_bad_input_gets_one_clear_message(tiny_folder, user_module, tmp_path, capsys, argv, message):
    assert _run(*argv, "--n", "2", "--profile", "smoke", "--results", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_the_weights_key_follows_the_weights(user_module):
    import user_nets

    a, b = user_nets.build(), user_nets.build()
    assert cli.weights_key(a) == cli.weights_key(b)
    with torch.no_grad():
        b.scale.add_(1)
    assert cli.weights_key(a) != cli.weights_key(b)


def test_python_dash_m_labkit_shows_its_help():
    done = subprocess.run([sys.executable, "-m", "labkit", "evaluate", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "--model" in done.stdout and "Examples" in done.stdout


def test_an_imagenet_architecture_on_imagenet_is_attacked_and_recorded(tmp_path, tmp_cache, monkeypatch, capsys):
    from conftest import write_imagenet_folder
    from labkit.models import imagenet_model

    monkeypatch.setenv("LABKIT_IMAGENET", str(write_imagenet_folder(tmp_path / "imagenet")))
    torch.manual_seed(0)
    weights = tmp_path / "alexnet-3-classes.pt"  # a random head for the folder's 3 classes (no ImageNet weights here)
    torch.save(imagenet_model("alexnet", pretrained=False, num_classes=3)[1].state_dict(), weights)
    assert _run("--model", "alexnet", "--weights", str(weights), "--dataset", "imagenet", "--per-class", "2",
                "--attacks", "de", "--n", "1", "--profile", "smoke", "--results", str(tmp_path / "r")) == 0
    assert "DE k=1" in capsys.readouterr().out
    stored = records.load("evaluate_alexnet", "smoke", root=tmp_path / "r")
    (row,) = stored["tables"]["table"]
    assert row["attacked"] == 1 and row["unverified"] == 0  # every reported success re-checked and held
    assert stored["settings"]["dataset"].startswith("ImageNet") and "/" not in stored["settings"]["dataset"]


def test_imagenet_usage_errors_say_what_to_fix(tmp_path, tmp_cache, monkeypatch, capsys):
    from conftest import write_imagenet_folder

    monkeypatch.setenv("LABKIT_IMAGENET", str(write_imagenet_folder(tmp_path / "imagenet", per_class=1)))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert _run("--model", "resnet50", "--dataset", "imagenet", "--size", "32") == 2
    assert "ImageNet is prepared at 224 x 224" in capsys.readouterr().err
    assert _run("--model", "resnet50", "--dataset", "cifar10", "--per-class", "1") == 2
    assert "--per-class applies to --dataset imagenet" in capsys.readouterr().err
    # A 3-class folder and no weights: torchvision's 1000-class weights cannot fit.
    assert _run("--model", "resnet50", "--dataset", "imagenet") == 2
    assert "give weights for this head" in capsys.readouterr().err
    monkeypatch.delenv("LABKIT_IMAGENET")
    assert _run("--model", "resnet50", "--dataset", "imagenet") == 2
    assert "LABKIT_IMAGENET is not set" in capsys.readouterr().err


def test_a_labkit_architecture_on_a_registered_grey_dataset(tmp_path, tmp_cache, monkeypatch, capsys):
    from conftest import write_idx
    from labkit.models import build_model

    from labkit.train import TrainConfig, get_or_train

    write_idx(tmp_path / "fm", n_train=200, n_test=20)
    monkeypatch.setenv("LABKIT_FASHION_MNIST", str(tmp_path / "fm"))
    trained = get_or_train(TrainConfig(model="survey_cnn", dataset="fashion-mnist", epochs=4, batch_size=20,
                                       eval_size=20, augment=False, optimizer="adam", lr=1e-2, precision="fp32"),
                           "cpu", progress=False)
    weights = tmp_path / "survey.pt"  # 1 input channel, Fashion-MNIST's statistics: built for the dataset
    torch.save(trained.model.state_dict(), weights)
    assert set(trained.model.state_dict()) == set(build_model("survey_cnn", 10, "fashion-mnist").state_dict())
    assert _run("--model", "survey_cnn", "--weights", str(weights), "--dataset", "fashion-mnist", "--attacks", "de",
                "--n", "2", "--profile", "smoke", "--results", str(tmp_path / "r")) == 0
    (row,) = records.load("evaluate_survey_cnn", "smoke", root=tmp_path / "r")["tables"]["table"]
    assert row["attacked"] == 2 and row["unverified"] == 0
    assert _run("--model", "survey_cnn", "--weights", str(weights), "--dataset", "fashion-mnist", "--size", "32") == 2
    assert "Fashion-MNIST is 28 x 28" in capsys.readouterr().err


# -- certify --------------------------------------------------------------------------------------------------------

def _certify(folder: Path, model: str, *argv: str) -> int:
    """``certify`` on the fixture's test images shrunk to 8 x 8 (64 positions: a proof takes milliseconds)."""
    return cli.main(["certify", "--model", model, "--dataset", str(folder / "test"), "--size", "8", *argv])


def _printed_row(printed: str) -> dict[str, float]:
    """The one row of the table ``certify`` prints (its header line and the line under it)."""
    header, values = printed.splitlines()[:2]
    return dict(zip(header.split(), map(float, values.split())))


def test_certify_proves_decides_and_records_each_image(tiny_folder, user_module, tmp_path, capsys):
    from labkit import data
    from labkit.certify import ROBUST, UNKNOWN, VULNERABLE

    out = tmp_path / "results"
    assert _certify(tiny_folder, f"{user_module}:certifiable", "--n", "12", "--seconds", "30", "--max-boxes", "2000",
                    "--profile", "smoke", "--results", str(out)) == 0
    printed = capsys.readouterr().out
    stored = records.load("certify_user_nets_certifiable", "smoke", root=out)
    arrays = {k.removeprefix("arrays/certify/"): torch.from_numpy(v) for k, v in stored["arrays"].items()}
    assert arrays["index"].shape == (12,) and arrays["status"].shape == (12,)
    assert arrays["seconds"].shape == arrays["boxes"].shape == arrays["clean_correct"].shape == (12,)
    assert arrays["position_status"].shape == (12, 8, 8)
    labels = data.load_folder(str(tiny_folder / "test"), 8).labels[arrays["index"]]
    # A white pixel means class 9: every other image has a flipping colour; class 9's has none, and 64 boxes prove it.
    assert arrays["status"].tolist() == [ROBUST if y == 9 else VULNERABLE for y in labels.tolist()]
    assert (labels == 9).any() and (labels != 9).any() and bool(arrays["clean_correct"].all())
    assert (arrays["boxes"][labels == 9] >= 64).all()  # every position of a robust image was bounded
    (row,) = stored["tables"]["table"]
    row_printed = _printed_row(printed)
    assert row_printed["n"] == row["n"] == 12
    for column in ("robust", "vulnerable", "unknown"):
        assert row_printed[column] == pytest.approx(row[column], abs=1e-3)
    assert row["robust"] == pytest.approx((labels == 9).float().mean().item()) and row["unknown"] == 0
    assert row["robust_lo"] <= row["robust"] <= row["robust_hi"]
    assert "asr" not in row_printed and "bracket_lo" not in row_printed  # no attacks asked for
    settings = stored["settings"]
    assert settings["n"] == 12 and settings["attacks"] == "none" and settings["config"]["max_boxes"] == 2000
    assert settings["config"]["max_seconds"] == 30 and settings["config"]["method"] == "alpha"
    assert UNKNOWN not in arrays["status"].tolist()


def test_certify_statuses_agree_with_labkit_certify(tiny_folder, user_module, tmp_path, capsys):
    """The CLI's verdicts are those of ``labkit.certify.certify`` called directly on the same images; an image
    the budget leaves undecided is printed as unknown, never as robust."""
    import user_nets
    from labkit import data
    from labkit.certify import ROBUST, UNKNOWN, VULNERABLE, CertifyConfig, certify

    split = data.load_folder(str(tiny_folder / "test"), 8)
    for boxes in ("2000", "0"):  # enough to prove class 9's images; none at all (only flips can be found)
        out = tmp_path / f"r{boxes}"
        assert _certify(tiny_folder, f"{user_module}:certifiable", "--n", "20", "--seconds", "30", "--max-boxes",
                        boxes, "--method", "interval", "--profile", "smoke", "--results", str(out)) == 0
        printed = _printed_row(capsys.readouterr().out)
        stored = records.load("certify_user_nets_certifiable", "smoke", root=out)
        assert stored["settings"]["config"] == {**stored["settings"]["config"], "method": "interval",
                                                "max_boxes": int(boxes), "max_seconds": 30, "threat": "8bit"}
        idx = torch.from_numpy(stored["arrays"]["arrays/certify/index"])
        assert idx.tolist() == data.correctly_classified(user_nets.certifiable(), split, 20).tolist()
        direct = certify(user_nets.certifiable(), split.floats(idx), split.labels[idx],
                         CertifyConfig(max_boxes=int(boxes), max_seconds=30, method="interval"))
        assert torch.from_numpy(stored["arrays"]["arrays/certify/status"]).tolist() == direct.status.tolist()
        for column, verdict in (("robust", ROBUST), ("vulnerable", VULNERABLE), ("unknown", UNKNOWN)):
            assert printed[column] == pytest.approx(direct.share(verdict), abs=1e-3)
        nines = (split.labels[idx] == 9).float().mean().item()
        assert nines > 0
        assert printed["robust" if boxes != "0" else "unknown"] == pytest.approx(nines, abs=1e-3)
        assert printed["unknown" if boxes != "0" else "robust"] == 0


def test_certify_with_the_suite_brackets_the_attack_success_rate(tiny_folder, user_module, tmp_path, capsys):
    out = tmp_path / "results"
    assert _certify(tiny_folder, f"{user_module}:certifiable", "--n", "12", "--seconds", "30", "--attacks", "suite",
                    "--profile", "smoke", "--results", str(out)) == 0
    printed = capsys.readouterr().out
    row_printed = _printed_row(printed)
    assert {"asr", "asr_lo", "asr_hi", "bracket_lo", "bracket_hi"} <= set(row_printed)
    stored = records.load("certify_user_nets_certifiable", "smoke", root=out)
    (row,) = stored["tables"]["table"]
    assert row["asr_lo"] <= row["asr"] <= row["asr_hi"]
    assert row["asr"] <= row["bracket_lo"] <= row["bracket_hi"] == pytest.approx(1 - row["robust"])
    assert row["conflicts"] == 0 and "warning" not in printed and "lies in [" in printed
    # Every image is decided here (class 9's proven, the others broken): the bracket closes on the true rate.
    assert row["bracket_lo"] == pytest.approx(row["bracket_hi"]) and row["unknown"] == 0
    attacked = torch.from_numpy(stored["arrays"]["arrays/certify/attacked"])
    status = torch.from_numpy(stored["arrays"]["arrays/certify/status"])
    assert attacked.shape == status.shape == (12,)
    assert not (attacked & (status == 1)).any()  # no attack broke an image proven robust
    assert any(name.startswith("attacks/") for name in stored["attacks"])  # the suite's results, per image


@pytest.mark.parametrize("model, argv, message", [
    ("with_gelu", [], "cannot be certified: labkit.certify has no sound bound rule for GELU"),
    ("build", [], "cannot be certified: labkit.certify has no sound bound rule for Palette"),  # its own forward
    ("ceil_pool", [], "ceil_mode and dilation are not supported"),  # a known layer with a setting it lacks
    ("training", [], "training mode"),
    ("three_classes", [], "shape (N, 10)"),
    ("certifiable", ["--max-boxes", "-1"], "--max-boxes"),
    ("certifiable", ["--seconds", "-1"], "--seconds"),
    ("certifiable", ["--n", "0"], "--n must be at least 1"),
])
def test_certify_bad_input_gets_one_clear_message(tiny_folder, user_module, tmp_path, capsys, model, argv, message):
    assert _certify(tiny_folder, f"{user_module}:{model}", *argv, "--results", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    if "cannot be certified" in err:  # what is supported, so the user knows what to change
        assert all(layer in err for layer in ("Conv2d", "ReLU", "Linear", "BasicBlock", "AttentionGate"))
    assert not list(tmp_path.rglob("*.json"))  # nothing recorded


def test_certify_shows_its_help(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["certify", "--help"])
    printed = capsys.readouterr().out
    assert done.value.code == 0 and "--max-boxes" in printed and "--threat {8bit,continuous}" in printed
    assert "python -m labkit certify --model" in printed  # the examples

"""labkit.cli (``python -m labkit evaluate``): your own model, attacked and recorded; one clear message per bad input."""

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


def test_the_model_key_follows_the_weights(user_module):
    import user_nets

    a, b = user_nets.build(), user_nets.build()
    assert cli.model_key(a) == cli.model_key(b)
    with torch.no_grad():
        b.scale.add_(1)
    assert cli.model_key(a) != cli.model_key(b)


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

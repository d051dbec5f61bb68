"""Numbers the papers report, quoted (never used in place of ours).

Each entry says where it comes from. The labs print them beside the numbers
they measure, labelled as the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Su, Vargas & Sakurai, "One pixel attack for fooling deep neural networks", two versions whose numbers measure
#: different things (issue #14): quote each with its version.
#: Journal version (IEEE TEVC 2019), CIFAR-10 (Kaggle test images), DE population 400, 100 generations, F = 0.5,
#: 1 pixel: the non-targeted success rate per network.
SU2019_CIFAR10 = {
    "AllConv": {"untargeted": 0.6871},
    "NiN": {"untargeted": 0.7166},
    "VGG16": {"untargeted": 0.6353},
}
#: The journal abstract's CIFAR-10 figure, 67.97%: the mean of the three non-targeted rates above (not a targeted
#: rate, and not AllConv's alone).
SU2019_CIFAR10_MEAN_UNTARGETED = 0.6797
#: arXiv v1 (1710.08864) abstract: the share of images that "can be perturbed to at least one target class by
#: modifying just one pixel", and the mean confidence of the adversarial class. Which CIFAR-10 network(s) the v1
#: figure pools is not checked here.
SU2017_ARXIV_ANY_TARGET = {"CIFAR-10": 0.6836, "ImageNet": 0.4122}
SU2017_ARXIV_CONFIDENCE = {"CIFAR-10": 0.7322, "ImageNet": 0.0552}
SU2019_IMAGENET_UNTARGETED = 0.1604  # BVLC AlexNet, 1 pixel (about 16%)

#: The APR paper (2024; no public code), CIFAR-10, in percent. Table 1: (clean accuracy, ASR) per defence
#: (AT = adversarial training, IT = input transformation, DD = defensive distillation).
APR2024_TABLE1: dict[str, tuple[float, float]] = {
    "No defence": (93.2, 70.97), "AT": (87.3, 45.32), "IT": (89.1, 38.76), "DD": (86.5, 41.89), "APR": (90.8, 21.43),
}
#: Table 3, the ablation: (clean accuracy, ASR) with one component removed.
APR2024_TABLE3: dict[str, tuple[float, float]] = {
    "full": (90.8, 21.43), "no_attention": (89.5, 28.76), "no_adversarial": (91.7, 35.21),
    "no_regularisation": (90.2, 24.89),
}
#: Table 4: (training-time increase, inference-time increase) of APR over the undefended model.
APR2024_TABLE4: dict[str, tuple[float, float]] = {"resnet18": (27.3, 8.6), "vgg16": (31.5, 9.2)}


# -- Every claim of the four source papers, one registry (the claims-vs-measured chapter lists them all) ------------

#: The JPEG paper (Cucu et al., ICSTCC 2023), Table I: misclassification rate (%) of a VGG16 (10 epochs of Adam,
#: 86.58% test accuracy) on 1,000 CIFAR-10 test images, FGSM at eps = 0.02: after FGSM, then after JPEG at
#: quality q, then after the targeted one-pixel "recovery" attack toward the true class.
JPEG2023_FGSM = 89.3
JPEG2023_TABLE1: dict[int, tuple[float, float]] = {20: (48.5, 12.5), 40: (52.0, 16.8)}  # q -> (JPEG, recovery)
#: The earlier JPEG defence the paper compares with (misclassification, %).
JPEG2023_EARLIER = 20.43
#: The network the paper measured.
JPEG2023_ARCHITECTURE = "VGG16"

#: The survey (a WPI study, "Enhancing the Robustness of Deep Neural Networks"; issue #13): macro-F1 of its small CNN
#: after each attack, per dataset (its Tables 2-10, as issue #13 quotes them). Its attack budgets are not stated.
SURVEY_F1_AFTER_ATTACK: dict[str, dict[str, float]] = {
    "MI-FGSM": {"MNIST": 0.08, "CIFAR-10": 0.01, "GTSRB": 0.11},
    "DeepFool": {"MNIST": 0.01, "CIFAR-10": 0.13, "GTSRB": 0.02},
    "CW-L2": {"MNIST": 0.07, "CIFAR-10": 0.16, "GTSRB": 0.46},
    "pixel swap": {"MNIST": 0.11, "CIFAR-10": 0.20, "GTSRB": 0.22},
}
#: The survey's defences (its Tables 11-12 and defence figures; their numbers are not filed here yet).
SURVEY_DEFENCES = ("adversarial training (mixed)", "Gaussian smoothing", "gradient masking", "distillation")
#: labkit's registry name of each survey dataset (Fashion-MNIST stands in for MNIST where no MNIST copy is set).
SURVEY_DATASETS = {"MNIST": "mnist", "CIFAR-10": "cifar10", "GTSRB": "gtsrb"}


@dataclass(frozen=True)
class Claim:
    """One claim of a source paper, as the claims chapter lists it (``labkit.claims`` measures it)."""

    paper: str  # the paper, short: "Su et al. 2019", "APR 2024", "JPEG + recovery", "Survey"
    where: str  # where in the paper: "Table 1", "Sec. 4.2", ...
    what: str  # the claim in words
    value: float | None  # the paper's number, in ``unit``; None where labkit does not quote it yet
    unit: str  # "%" or "points", or "" for a qualitative claim
    lab: str | None  # the lab that measures it (a notebook stem), None: no lab yet
    pending: str = ""  # why it is not measured yet (the issue that will), where ``lab`` is None
    measure: str = ""  # how ``labkit.claims`` measures it: "<kind>" or "<kind>:<argument>" (see ``claims.MEASURES``)


SU = "Su et al. 2019"
#: Why the ImageNet claims have no lab: the path exists (the ImageNet chapter, ``python -m labkit evaluate --dataset
#: imagenet``), but the machines that build the book have neither ILSVRC2012 nor the pretrained weights.
IMAGENET_PENDING = ("not measured here: no ImageNet validation set or pretrained weights on the machines that build "
                    "the book; the ImageNet chapter's path (issue #14) measures it where LABKIT_IMAGENET is set")
#: The lab that measures Su et al.'s CIFAR-10 claims on their three networks.
SU_LAB = "02b_su_networks"
APR = "APR 2024"
JPEG_PAPER = "JPEG + targeted recovery"
SURVEY = "Survey of attacks and defences"

CLAIMS: tuple[Claim, ...] = (
    *(Claim(SU, "journal (TEVC 2019), CIFAR-10, Kaggle test set", f"{m}: the non-targeted 1-pixel attack succeeds "
            f"on {v['untargeted']:.2%} of the images", round(100 * v["untargeted"], 2), "%", SU_LAB,
            measure=f"su_untargeted:{m}") for m, v in SU2019_CIFAR10.items()),
    Claim(SU, "arXiv v1 abstract (CIFAR-10; networks pooled, not checked)", "targeted 1-pixel attacks push an image "
          f"to at least one other class for {SU2017_ARXIV_ANY_TARGET['CIFAR-10']:.2%} of the images",
          round(100 * SU2017_ARXIV_ANY_TARGET["CIFAR-10"], 2), "%", SU_LAB, measure="su_any_target"),
    Claim(SU, "CIFAR-10, 3 and 5 pixels", "more pixels raise the non-targeted success rate (the paper's 3- and "
          "5-pixel rates are not quoted in labkit.papers)", None, "%", SU_LAB, measure="su_pixels"),
    Claim(SU, "arXiv v1 abstract (CIFAR-10; networks pooled, not checked)", "the adversarial class is reached with a "
          f"mean confidence of {SU2017_ARXIV_CONFIDENCE['CIFAR-10']:.2%}",
          round(100 * SU2017_ARXIV_CONFIDENCE["CIFAR-10"], 2), "%", SU_LAB, measure="su_confidence"),
    Claim(SU, "ImageNet", f"BVLC AlexNet: the untargeted 1-pixel attack succeeds on {SU2019_IMAGENET_UNTARGETED:.2%} "
          "of the images", round(100 * SU2019_IMAGENET_UNTARGETED, 2), "%", None, IMAGENET_PENDING),
    *(Claim(APR, "Table 1 (CIFAR-10)", f"{d}: clean accuracy {acc:g}%", acc, "%", "05_apr",
            measure=f"clean:{d}") for d, (acc, _) in APR2024_TABLE1.items()),
    Claim(APR, "Table 1 (CIFAR-10)", f"No defence: one-pixel ASR {APR2024_TABLE1['No defence'][1]:g}%",
          APR2024_TABLE1["No defence"][1], "%", "05_apr", measure="undefended_asr"),
    *(Claim(APR, "Table 1 (CIFAR-10)", f"{d} lowers the one-pixel ASR from "
            f"{APR2024_TABLE1['No defence'][1]:g}% to {asr:g}%", asr, "%", lab, measure=f"defence:{d}")
      for d, (_, asr) in APR2024_TABLE1.items() if d != "No defence"
      for lab in {"IT": ("03_input_transformations", "05_apr"), "AT": ("04_training_defences", "05_apr"),
                  "DD": ("04_training_defences", "05_apr")}.get(d, ("05_apr",))),
    Claim(APR, "Table 1 (ImageNet, ResNet-50 / VGG-19)", "the same defences on ImageNet (numbers not quoted in "
          "labkit.papers yet)", None, "%", None, IMAGENET_PENDING),
    *(Claim(APR, "Table 3 (ablation)", f"without {part}: ASR {APR2024_TABLE3[v][1]:g}% (full APR "
            f"{APR2024_TABLE3['full'][1]:g}%)", APR2024_TABLE3[v][1], "%", "06_apr_ablation", measure=f"ablation:{v}")
      for v, part in (("no_attention", "the attention gate"), ("no_adversarial", "adversarial training"),
                      ("no_regularisation", "the gradient regulariser"))),
    *(Claim(APR, f"Table 4 ({m})", f"APR's {kind} time is {v:g}% above the undefended model's", v, "%",
            "07_apr_overhead", measure=f"overhead:{kind}") for m, (tr, inf) in APR2024_TABLE4.items() for kind, v in (("training", tr),
                                                                                            ("inference", inf))),
    Claim(APR, "Sec. attention maps", "attacks succeed where attention is low", None, "", "08_attention_maps",
          measure="attention"),
    Claim(JPEG_PAPER, "Table I", f"FGSM (eps = 0.02) misclassifies {JPEG2023_FGSM:g}% of the images (VGG16)",
          JPEG2023_FGSM, "%", "09_jpeg_recovery", measure="jpeg_fgsm"),
    *(Claim(JPEG_PAPER, "Table I", f"JPEG at q = {q} lowers the misclassification from {JPEG2023_FGSM:g}% to "
            f"{jpeg:g}%", jpeg, "%", "09_jpeg_recovery", measure=f"jpeg:{q}")
      for q, (jpeg, _) in JPEG2023_TABLE1.items()),
    *(Claim(JPEG_PAPER, "Table I", f"the targeted one-pixel recovery after JPEG at q = {q} lowers it from {jpeg:g}% "
            f"to {rec:g}%", rec, "%", "09_jpeg_recovery", measure=f"jpeg_recovery:{q}")
      for q, (jpeg, rec) in JPEG2023_TABLE1.items()),
    Claim(JPEG_PAPER, "Sec. recovery", "the recovery pixel restores the true class (not merely some other class)",
          None, "", "09_jpeg_recovery", measure="jpeg_specific"),
    *(Claim(SURVEY, "Tables 2-10", f"{attack} lowers the CNN's macro-F1 on {d} to {v:g}", v, "F1",
            "10_survey_attacks", measure=f"survey_f1:{attack}|{d}")
      for attack, per in SURVEY_F1_AFTER_ATTACK.items() for d, v in per.items()),
    *(Claim(SURVEY, "Tables 11-12", f"{defence} makes the CNN harder to fool than no defence (the four attacks, "
            "each image counted as fooled when any attack fools it)", None, "", "11_survey_defences",
            measure=f"survey_defence:{defence}") for defence in SURVEY_DEFENCES),
)

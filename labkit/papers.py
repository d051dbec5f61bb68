"""Numbers the papers report, quoted (never used in place of ours), each with its source.

Every constant names its document (``SOURCES``) and the table, section or figure it stands in (``QUOTED``), and
every claim of the claims-vs-measured chapter (``CLAIMS``) does the same (``Claim.source``, ``Claim.where``).
``tests/test_papers.py`` checks each number against the text of its document in ``shared/papers`` where one is
filed. The labs print these numbers beside the ones they measure, labelled as the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# -- The documents ----------------------------------------------------------------------------------------------------

#: The file names of the texts in ``shared/papers`` (its README says what each is).
APR_FILE = "apr-srivastava-ijraset-2024.txt"
JPEG_FILE = "cucu-jpeg-one-pixel-recovery-2023.txt"
SURVEY_FILE = "campbell-lasselle-wpi-mqp-2024.txt"
SU_SUMMARY_FILE = "su-one-pixel-attack-summary.txt"

#: Short name -> (file name in ``shared/papers``, "" where no text of it is filed there; full citation, with the
#: DOI where the text gives one). Su et al.'s paper has three entries: the numbers of its versions differ.
SOURCES: dict[str, tuple[str, str]] = {
    "APR": (APR_FILE, "Smit Srivastava and Muskaan, \"Adaptive Pixel Resilience: A Novel Defence Mechanism Against "
                      "One-Pixel Adversarial Attacks on Deep Neural Networks\", International Journal for Research in "
                      "Applied Science & Engineering Technology (IJRASET) 12(VII), July 2024. "
                      "DOI 10.22214/ijraset.2024.63614"),
    "JPEG": (JPEG_FILE, "Adelina-Valentina Cucu, Giuseppe Valenzise, Daniela Stanescu, Ioana Ghergulescu, Lucian Ionel "
                        "Gaina and Bianca Gusita, \"Defense Method against Adversarial Attacks Using JPEG Compression "
                        "and One-Pixel Attack for Improved Dataset Security\", 27th International Conference on System "
                        "Theory, Control and Computing (ICSTCC), Timisoara, October 2023, pp. 523-527. "
                        "DOI 10.1109/ICSTCC59206.2023.10308520 (HAL hal-04476986)"),
    "Survey": (SURVEY_FILE, "Alasdair Campbell and Jared Lasselle (advisor Yanhua Li), \"Enhancing the Robustness of "
                            "Deep Neural Networks\", Major Qualifying Project, Worcester Polytechnic Institute, "
                            "25 April 2024 (no DOI in the text)"),
    "Su, arXiv (summary)": (SU_SUMMARY_FILE, "Jiawei Su, Danilo Vasconcellos Vargas and Kouichi Sakurai, \"One pixel "
                                             "attack for fooling deep neural networks\", arXiv:1710.08864, as a "
                                             "third-party summary quotes its abstract; which arXiv version is not "
                                             "stated"),
    "Su, IEEE TEVC 2019": ("", "Jiawei Su, Danilo Vasconcellos Vargas and Kouichi Sakurai, \"One Pixel Attack for "
                               "Fooling Deep Neural Networks\", IEEE Transactions on Evolutionary Computation 23(5), "
                               "828-841, October 2019. DOI 10.1109/TEVC.2019.2890858 (as the JPEG paper's ref. [6] "
                               "gives it). No text of this version is filed in shared/papers"),
    "Su, arXiv v1 (quoted)": ("", "The same paper's arXiv v1 (1710.08864v1, October 2017), its abstract as a "
                                  "third-party review page quotes it. No text of it is filed in shared/papers"),
}


@dataclass(frozen=True)
class Quoted:
    """Where a constant's numbers stand in their source, and how the source prints them."""

    source: str  # a key of ``SOURCES``
    where: str  # the table, section or figure, numbered as the source numbers it
    printed: str  # "%": a percentage, stored as printed ("70.97"); "fraction": stored as a fraction of 1, printed
    #              as a percentage (0.6836 -> "68.36%"); "plain": a bare number ("0.13", "400")


# -- Su, Vargas & Sakurai: three versions, three sets of numbers (issue #14) ----------------------------------------

#: Journal version (IEEE TEVC 2019), CIFAR-10 (Kaggle test images), DE population 400, 100 generations, F = 0.5,
#: 1 pixel: the non-targeted success rate per network (its per-network results; the table number is not checked
#: here, as no text of the journal is filed).
SU2019_CIFAR10 = {
    "AllConv": {"untargeted": 0.6871},
    "NiN": {"untargeted": 0.7166},
    "VGG16": {"untargeted": 0.6353},
}
#: The journal abstract's CIFAR-10 figure, 67.97%: the mean of the three non-targeted rates above (not a targeted
#: rate, and not AllConv's alone).
SU2019_CIFAR10_MEAN_UNTARGETED = 0.6797
#: The journal abstract's ImageNet figure (BVLC AlexNet, 1 pixel, about 16%).
SU2019_IMAGENET_UNTARGETED = 0.1604
#: The journal abstract's mean confidence of the adversarial class, per dataset.
SU2019_CONFIDENCE = {"CIFAR-10": 0.7403, "ImageNet": 0.2291}

#: The abstract as the summary in shared/papers quotes it (arXiv 1710.08864; the version is NOT stated, so these
#: are not labelled v1): the share of images "perturbed to at least one target class" by one pixel, and the mean
#: confidence of the adversarial class. Which CIFAR-10 network(s) the figure pools is not stated either.
SU_ARXIV_SUMMARY_ANY_TARGET = {"CIFAR-10": 0.6836, "ImageNet": 0.4122}
SU_ARXIV_SUMMARY_CONFIDENCE = {"CIFAR-10": 0.7322, "ImageNet": 0.0552}
#: Old names (issue #14) of the two above, kept for ``labkit.labs.su`` and book/imagenet.md: they said "arXiv v1",
#: which the summary does not establish.
SU2017_ARXIV_ANY_TARGET = SU_ARXIV_SUMMARY_ANY_TARGET
SU2017_ARXIV_CONFIDENCE = SU_ARXIV_SUMMARY_CONFIDENCE

#: arXiv v1's abstract as a third-party review page quotes it (no text filed here): the share of CIFAR-10 images
#: perturbed to at least one target class by one pixel, at this mean confidence. It states no ImageNet figure.
SU_ARXIV_V1_QUOTED_ANY_TARGET = {"CIFAR-10": 0.7097}
SU_ARXIV_V1_QUOTED_CONFIDENCE = {"CIFAR-10": 0.9747}

# -- APR (Srivastava & Muskaan, IJRASET 2024; no public code) ------------------------------------------------------

#: Table 1 (Sec. V.B, CIFAR-10 only), in percent: (clean accuracy, ASR) per defence (AT = adversarial training,
#: IT = input transformation, DD = defensive distillation). The table does not say which of the two CIFAR-10
#: models (Sec. V.A.2: ResNet-18, VGG-16) its rows are.
APR2024_TABLE1: dict[str, tuple[float, float]] = {
    "No defence": (93.2, 70.97), "AT": (87.3, 45.32), "IT": (89.1, 38.76), "DD": (86.5, 41.89), "APR": (90.8, 21.43),
}
#: Table 2 (Sec. V.C, the ImageNet subset: Sec. V.A.1 says 50,000 validation images at 224x224; models ResNet-50 and
#: VGG-19, Sec. V.A.2), in percent: (clean accuracy, ASR) per defence.
APR2024_TABLE2: dict[str, tuple[float, float]] = {
    "No defence": (76.1, 63.25), "AT": (72.4, 39.87), "IT": (73.8, 35.42), "DD": (71.9, 37.61), "APR": (74.6, 18.79),
}
#: Table 3 (Sec. V.D), the ablation on CIFAR-10: (clean accuracy, ASR) with one component removed.
APR2024_TABLE3: dict[str, tuple[float, float]] = {
    "full": (90.8, 21.43), "no_attention": (89.5, 28.76), "no_adversarial": (91.7, 35.21),
    "no_regularisation": (90.2, 24.89),
}
#: Table 4 (Sec. V.E): (training-time increase, inference-time increase) of APR over the undefended model, in
#: percent. Keys are labkit's names of the table's ResNet-18 and VGG-16 (``labkit.claims`` reads them).
APR2024_TABLE4: dict[str, tuple[float, float]] = {"resnet18": (27.3, 8.6), "vgg16": (31.5, 9.2)}
#: The "Robustness" column of Tables 1-3 (its Sec. V.A.4: 1 - ASR), in percent, per row.
APR2024_ROBUSTNESS: dict[str, dict[str, float]] = {
    "Table 1": {"No defence": 29.03, "AT": 54.68, "IT": 61.24, "DD": 58.11, "APR": 78.57},
    "Table 2": {"No defence": 36.75, "AT": 60.13, "IT": 64.58, "DD": 62.39, "APR": 81.21},
    "Table 3": {"full": 78.57, "no_attention": 71.24, "no_adversarial": 64.79, "no_regularisation": 75.11},
}
#: The prose below Tables 1 and 2 (Secs. V.B, V.C): APR's "reduction in vulnerability", in percent: 1 - APR's ASR /
#: the undefended ASR (21.43 / 70.97 leaves 30.2%).
APR2024_REDUCTION = {"CIFAR-10": 69.8, "ImageNet": 70.3}
#: Sec. V.A.7: the one-pixel attack's differential evolution (population size, maximum iterations).
APR2024_DE_BUDGET = {"population": 400, "max_iterations": 100}
#: Sec. V.A.6: APR's loss weights (alpha: clean vs adversarial loss; beta: the gradient regulariser).
APR2024_HYPERPARAMETERS = {"alpha": 0.7, "beta": 0.01}
#: Sec. II.B: the figure APR quotes from Su et al. (its ref. [4], the 2019 journal version): images perturbed to at
#: least one target class by one pixel, in percent.
APR2024_SU_QUOTE = 70.97
#: A fact, for the chapter beside Table 1: APR's undefended CIFAR-10 ASR equals, to the hundredth, the figure of Su
#: et al.'s arXiv v1 abstract as quoted (and the one APR's Sec. II.B attributes to the journal version, whose
#: abstract gives 67.97%).
APR2024_UNDEFENDED_ASR_EQUALS_SU_V1 = (
    f"APR's Table 1 gives the undefended model a one-pixel ASR of {APR2024_TABLE1['No defence'][1]:.2f}%: to the "
    f"hundredth the {SU_ARXIV_V1_QUOTED_ANY_TARGET['CIFAR-10']:.2%} of Su et al.'s arXiv v1 abstract (as quoted), "
    f"which APR's Sec. II.B cites as the 2019 journal version's figure (the journal abstract: "
    f"{SU2019_CIFAR10_MEAN_UNTARGETED:.2%})."
)

# -- The JPEG paper (Cucu et al., ICSTCC 2023) ------------------------------------------------------------------------

#: Table I (Sec. V.E): misclassification rate (%) of 1,000 CIFAR-10 test images, FGSM at eps = 0.02: after FGSM,
#: then after JPEG at quality q, then after the targeted one-pixel "recovery" attack toward the true class.
JPEG2023_FGSM = 89.3
JPEG2023_TABLE1: dict[int, tuple[float, float]] = {20: (48.5, 12.5), 40: (52.0, 16.8)}  # q -> (JPEG, recovery)
#: Sec. V.E: the earlier JPEG defence it compares with (its ref. [19], on the whole CIFAR-10 test set; %).
JPEG2023_EARLIER = 20.43
#: Sec. V.A: the network the paper measured, its test accuracy (%), and its set-up.
JPEG2023_ARCHITECTURE = "VGG16"
JPEG2023_TEST_ACCURACY = 86.58
JPEG2023_SETUP = {"epochs": 10, "eps": 0.02, "images": 1000}

# -- The survey (Campbell & Lasselle, WPI MQP 2024; issue #13) --------------------------------------------------------

#: Macro-F1 of its small CNN after each attack, per dataset (Tables 3, 5, 7 and 9; ``SURVEY_F1_TABLES``). Its
#: "IFGSM" is iterative FGSM with momentum (Sec. 2.2.1), labkit's MI-FGSM. Its attack budgets are not stated.
SURVEY_F1_AFTER_ATTACK: dict[str, dict[str, float]] = {
    "MI-FGSM": {"MNIST": 0.08, "CIFAR-10": 0.01, "GTSRB": 0.11},
    "DeepFool": {"MNIST": 0.01, "CIFAR-10": 0.13, "GTSRB": 0.02},
    "CW-L2": {"MNIST": 0.07, "CIFAR-10": 0.16, "GTSRB": 0.46},
    "pixel swap": {"MNIST": 0.11, "CIFAR-10": 0.20, "GTSRB": 0.22},
}
SURVEY_F1_TABLES = {"MI-FGSM": 3, "DeepFool": 5, "CW-L2": 7, "pixel swap": 9}
#: "Prediction time" of the undefended CNN (Sec. 3.2: the test set's time over its size; no unit printed), without
#: attack (Table 2) and after each attack (Tables 4, 6, 8, 10; ``SURVEY_PREDICTION_TIME_TABLES``).
SURVEY_PREDICTION_TIME: dict[str, dict[str, float]] = {
    "none": {"MNIST": 0.003, "CIFAR-10": 0.002, "GTSRB": 0.016},
    "MI-FGSM": {"MNIST": 0.07, "CIFAR-10": 0.04, "GTSRB": 0.13},
    "DeepFool": {"MNIST": 0.21, "CIFAR-10": 0.19, "GTSRB": 0.41},
    "CW-L2": {"MNIST": 0.87, "CIFAR-10": 0.73, "GTSRB": 1.35},
    "pixel swap": {"MNIST": 0.93, "CIFAR-10": 0.84, "GTSRB": 2.47},
}
SURVEY_PREDICTION_TIME_TABLES = {"none": 2, "MI-FGSM": 4, "DeepFool": 6, "CW-L2": 8, "pixel swap": 10}
#: The survey's defences, in labkit's names (``labkit.labs.survey`` iterates them in this order).
SURVEY_DEFENCES = ("adversarial training (mixed)", "Gaussian smoothing", "gradient masking", "distillation")
#: Per defence: its section, the figure of the CNN's accuracy after it (the figures' numbers are not in the text),
#: and its prediction-time table.
SURVEY_DEFENCE_WHERE: dict[str, tuple[str, int, int]] = {
    "adversarial training (mixed)": ("3.5.1", 12, 11), "Gaussian smoothing": ("3.5.2", 13, 12),
    "gradient masking": ("3.5.3", 14, 13), "distillation": ("3.5.4", 15, 14),
}
#: Tables 11-14: prediction time after each defence, without attack ("none") and after each attack.
SURVEY_DEFENCE_PREDICTION_TIME: dict[str, dict[str, dict[str, float]]] = {
    "adversarial training (mixed)": {
        "none": {"MNIST": 0.004, "CIFAR-10": 0.004, "GTSRB": 0.007},
        "MI-FGSM": {"MNIST": 0.11, "CIFAR-10": 0.07, "GTSRB": 0.34},
        "DeepFool": {"MNIST": 0.42, "CIFAR-10": 0.27, "GTSRB": 0.96},
        "CW-L2": {"MNIST": 0.84, "CIFAR-10": 0.83, "GTSRB": 1.57},
        "pixel swap": {"MNIST": 0.92, "CIFAR-10": 0.75, "GTSRB": 2.34}},
    "Gaussian smoothing": {
        "none": {"MNIST": 0.009, "CIFAR-10": 0.007, "GTSRB": 0.014},
        "MI-FGSM": {"MNIST": 0.10, "CIFAR-10": 0.04, "GTSRB": 0.35},
        "DeepFool": {"MNIST": 0.66, "CIFAR-10": 0.26, "GTSRB": 0.84},
        "CW-L2": {"MNIST": 0.73, "CIFAR-10": 0.65, "GTSRB": 1.86},
        "pixel swap": {"MNIST": 0.81, "CIFAR-10": 0.75, "GTSRB": 2.76}},
    "gradient masking": {
        "none": {"MNIST": 0.002, "CIFAR-10": 0.002, "GTSRB": 0.03},
        "MI-FGSM": {"MNIST": 0.11, "CIFAR-10": 0.06, "GTSRB": 0.22},
        "DeepFool": {"MNIST": 0.36, "CIFAR-10": 0.24, "GTSRB": 0.77},
        "CW-L2": {"MNIST": 0.82, "CIFAR-10": 0.68, "GTSRB": 0.57},
        "pixel swap": {"MNIST": 0.91, "CIFAR-10": 0.76, "GTSRB": 1.36}},
    "distillation": {
        "none": {"MNIST": 0.003, "CIFAR-10": 0.002, "GTSRB": 0.03},
        "MI-FGSM": {"MNIST": 0.10, "CIFAR-10": 0.04, "GTSRB": 0.16},
        "DeepFool": {"MNIST": 0.34, "CIFAR-10": 0.21, "GTSRB": 0.58},
        "CW-L2": {"MNIST": 0.62, "CIFAR-10": 0.67, "GTSRB": 0.71},
        "pixel swap": {"MNIST": 0.77, "CIFAR-10": 0.77, "GTSRB": 1.40}},
}
#: Table 1 (Sec. 3.1): (number of classes, number of images) per dataset; Sec. 3.3: epochs of training (the
#: checkpoint of lowest validation loss is kept).
SURVEY_DATASET_TABLE: dict[str, tuple[int, int]] = {"MNIST": (10, 60000), "CIFAR-10": (10, 60000),
                                                   "GTSRB": (43, 51839)}
SURVEY_EPOCHS = 20
#: labkit's registry name of each survey dataset (Fashion-MNIST stands in for MNIST where no MNIST copy is set).
SURVEY_DATASETS = {"MNIST": "mnist", "CIFAR-10": "cifar10", "GTSRB": "gtsrb"}

# -- Where each constant's numbers stand ------------------------------------------------------------------------------

_TEVC, _SUMMARY, _V1 = "Su, IEEE TEVC 2019", "Su, arXiv (summary)", "Su, arXiv v1 (quoted)"
#: Constant name -> its source, place and printing (``quoted_numbers`` walks them; the tests check them).
QUOTED: dict[str, Quoted] = {
    "SU2019_CIFAR10": Quoted(_TEVC, "per-network results, CIFAR-10, 1 pixel, non-targeted", "fraction"),
    "SU2019_CIFAR10_MEAN_UNTARGETED": Quoted(_TEVC, "abstract (CIFAR-10)", "fraction"),
    "SU2019_IMAGENET_UNTARGETED": Quoted(_TEVC, "abstract (ImageNet)", "fraction"),
    "SU2019_CONFIDENCE": Quoted(_TEVC, "abstract", "fraction"),
    "SU_ARXIV_SUMMARY_ANY_TARGET": Quoted(_SUMMARY, "Abstract", "fraction"),
    "SU_ARXIV_SUMMARY_CONFIDENCE": Quoted(_SUMMARY, "Abstract", "fraction"),
    "SU_ARXIV_V1_QUOTED_ANY_TARGET": Quoted(_V1, "abstract", "fraction"),
    "SU_ARXIV_V1_QUOTED_CONFIDENCE": Quoted(_V1, "abstract", "fraction"),
    "APR2024_TABLE1": Quoted("APR", "Sec. V.B, Table 1", "%"),
    "APR2024_TABLE2": Quoted("APR", "Sec. V.C, Table 2", "%"),
    "APR2024_TABLE3": Quoted("APR", "Sec. V.D, Table 3", "%"),
    "APR2024_TABLE4": Quoted("APR", "Sec. V.E, Table 4", "%"),
    "APR2024_ROBUSTNESS": Quoted("APR", "Tables 1-3, column Robustness", "%"),
    "APR2024_REDUCTION": Quoted("APR", "Secs. V.B and V.C (prose below Tables 1 and 2)", "%"),
    "APR2024_DE_BUDGET": Quoted("APR", "Sec. V.A.7", "plain"),
    "APR2024_HYPERPARAMETERS": Quoted("APR", "Sec. V.A.6", "plain"),
    "APR2024_SU_QUOTE": Quoted("APR", "Sec. II.B", "%"),
    "JPEG2023_FGSM": Quoted("JPEG", "Table I", "%"),
    "JPEG2023_TABLE1": Quoted("JPEG", "Table I", "%"),
    "JPEG2023_EARLIER": Quoted("JPEG", "Sec. V.E", "%"),
    "JPEG2023_TEST_ACCURACY": Quoted("JPEG", "Sec. V.A", "%"),
    "JPEG2023_SETUP": Quoted("JPEG", "Sec. V.A and Table I", "plain"),
    "SURVEY_F1_AFTER_ATTACK": Quoted("Survey", "Tables 3, 5, 7, 9", "plain"),
    "SURVEY_PREDICTION_TIME": Quoted("Survey", "Tables 2, 4, 6, 8, 10", "plain"),
    "SURVEY_DEFENCE_PREDICTION_TIME": Quoted("Survey", "Tables 11-14", "plain"),
    "SURVEY_DATASET_TABLE": Quoted("Survey", "Sec. 3.1, Table 1", "plain"),
    "SURVEY_EPOCHS": Quoted("Survey", "Sec. 3.3", "plain"),
}


def _leaves(value: Any) -> list[float]:
    """The numbers in a constant: dict values and tuple items, recursively (dict keys and strings are labels)."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _leaves(v)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    return []


def quoted_numbers() -> list[tuple[str, float, Quoted]]:
    """(constant name, number as its source prints it, where it stands) for every number of the ``QUOTED``
    constants; a "fraction" is returned in percent (0.6836 -> 68.36), rounded to 1e-6 against float noise."""
    out = []
    for name, q in QUOTED.items():
        scale = 100.0 if q.printed == "fraction" else 1.0
        out += [(name, round(scale * v, 6), q) for v in _leaves(globals()[name])]
    return out


# -- Every claim of the four source papers, one registry (the claims-vs-measured chapter lists them all) ------------

@dataclass(frozen=True)
class Claim:
    """One claim of a source paper, as the claims chapter lists it (``labkit.claims`` measures it)."""

    paper: str  # the paper, short: "Su et al. 2019", "APR 2024", "JPEG + recovery", "Survey"
    where: str  # where in the source, numbered as the source numbers it: "Table 1 (CIFAR-10)", "Sec. 3.5.3, Figure 14"
    what: str  # the claim in words, as the source states it (or, with ``ours``, the book's question)
    value: float | None  # the paper's number, in ``unit``; None where labkit does not quote it yet
    unit: str  # "%" or "points", or "" for a qualitative claim
    lab: str | None  # the lab that measures it (a notebook stem), None: no lab yet
    pending: str = ""  # why it is not measured yet (the issue that will), where ``lab`` is None
    measure: str = ""  # how ``labkit.claims`` measures it: "<kind>" or "<kind>:<argument>" (see ``claims.MEASURES``)
    source: str = ""  # the file in shared/papers the claim is read from; "" where no text of it is filed (``where``
    #                   then names the version: the IEEE TEVC journal's numbers)
    not_comparable: str = ""  # why no measurement here can be compared with it (e.g. ImageNet); "" when one can
    direction: int = -1  # for a claimed change, its sign: -1 a fall (a defence lowers the share of images fooled),
    #                      +1 a rise, 0 no change ("gradient masking does not make the CNN harder to fool"); a claim
    #                      of a value (a rate, an overhead) has no direction and keeps the default
    ours: bool = False  # True: the book's own question about a paper, not a statement of it (worded neutrally)
    # For a claim of a change stated as two rates ("lowers the ASR from 70.97% to 45.32%"): the paper's rate
    # before, in ``unit``. A lab that measures the change (in points) is then set beside the paper's change,
    # value - baseline, so a column never mixes a rate with a change. None: no change is claimed.
    baseline: float | None = None


SU = "Su et al. 2019"
#: Why the ImageNet claims have no lab: the path exists (the ImageNet chapter, ``python -m labkit evaluate --dataset
#: imagenet``), but the machines that build the book have neither ILSVRC2012 nor the pretrained weights.
IMAGENET_PENDING = ("not measured here: no ImageNet validation set or pretrained weights on the machines that build "
                    "the book; the ImageNet chapter's path (issue #14) measures it where LABKIT_IMAGENET is set")
#: Why APR's ImageNet rows (Table 2) stand without a measurement.
APR_IMAGENET_NOT_COMPARABLE = "ImageNet: no ILSVRC2012 or pretrained weights on the machines that build the book"
APR_IMAGENET_PENDING = (f"not comparable ({APR_IMAGENET_NOT_COMPARABLE}); nor does labkit train APR's ResNet-50 / "
                        "VGG-19 for 90 epochs on ImageNet (issue #22)")
#: The lab that measures Su et al.'s CIFAR-10 claims on their three networks.
SU_LAB = "02b_su_networks"
APR = "APR 2024"
JPEG_PAPER = "JPEG + targeted recovery"
SURVEY = "Survey of attacks and defences"

#: The survey's conclusion per defence (Secs. 3.5.1-3.5.4), as it states it, and its direction.
SURVEY_DEFENCE_CLAIMS: dict[str, tuple[str, int]] = {
    "adversarial training (mixed)": ("adversarial example training makes the CNN harder to fool: accuracy rises "
                                     "under every attack, clean accuracy mostly kept (MNIST's fell)", -1),
    "Gaussian smoothing": ("feature smoothing makes the CNN harder to fool under each attack, most under DeepFool "
                           "and the pixel swap, least under MI-FGSM and CW", -1),
    "gradient masking": ("gradient masking does not make the CNN harder to fool: accuracy under attack stays about "
                         "the same (and clean accuracy can fall)", 0),
    "distillation": ("defensive distillation makes the CNN harder to fool under most attacks (DeepFool and the pixel "
                     "swap most), not under CW or MI-FGSM", -1),
}

#: The attacks each survey defence is claimed to work against, as its Sec. 3.5.x and conclusions (Sec. 4) read:
#: adversarial training helps under every attack; smoothing is "very effective" against DeepFool and the pixel swap
#: only; distillation helps most against DeepFool and the pixel swap and fails under CW and I-FGSM; gradient masking
#: changes nothing under any. The book judges each claim over these attacks (worst case per image).
SURVEY_DEFENCE_AGAINST: dict[str, tuple[str, ...]] = {
    "adversarial training (mixed)": ("MI-FGSM", "DeepFool", "CW-L2", "pixel swap"),
    "Gaussian smoothing": ("DeepFool", "pixel swap"),
    "gradient masking": ("MI-FGSM", "DeepFool", "CW-L2", "pixel swap"),
    "distillation": ("DeepFool", "pixel swap"),
}

#: Where the summary's figures stand: its quotation of the abstract (which arXiv version, and which networks, unstated).
_SU_SUMMARY_WHERE = ("abstract as the summary quotes it (arXiv 1710.08864, version not stated; CIFAR-10, networks "
                     "pooled)")

CLAIMS: tuple[Claim, ...] = (
    *(Claim(SU, "journal version (IEEE TEVC 2019): per-network results, CIFAR-10, Kaggle test set", f"{m}: the "
            f"non-targeted 1-pixel attack succeeds on {v['untargeted']:.2%} of the images",
            round(100 * v["untargeted"], 2), "%", SU_LAB, measure=f"su_untargeted:{m}")
      for m, v in SU2019_CIFAR10.items()),
    Claim(SU, _SU_SUMMARY_WHERE, "targeted 1-pixel attacks push an image to at least one other class for "
          f"{SU_ARXIV_SUMMARY_ANY_TARGET['CIFAR-10']:.2%} of the images",
          round(100 * SU_ARXIV_SUMMARY_ANY_TARGET["CIFAR-10"], 2), "%", SU_LAB, measure="su_any_target",
          source=SU_SUMMARY_FILE),
    Claim(SU, "summary, Results (1, 3 and 5 pixels)", "more pixels raise the non-targeted success rate (the paper's "
          "3- and 5-pixel rates are not quoted in labkit.papers)", None, "%", SU_LAB, measure="su_pixels",
          source=SU_SUMMARY_FILE, direction=1),
    Claim(SU, _SU_SUMMARY_WHERE, "the adversarial class is reached with a mean confidence of "
          f"{SU_ARXIV_SUMMARY_CONFIDENCE['CIFAR-10']:.2%}", round(100 * SU_ARXIV_SUMMARY_CONFIDENCE["CIFAR-10"], 2),
          "%", SU_LAB, measure="su_confidence", source=SU_SUMMARY_FILE),
    Claim(SU, "journal version (IEEE TEVC 2019): abstract, ImageNet", f"BVLC AlexNet: the untargeted 1-pixel attack "
          f"succeeds on {SU2019_IMAGENET_UNTARGETED:.2%} of the images", round(100 * SU2019_IMAGENET_UNTARGETED, 2),
          "%", None, IMAGENET_PENDING),
    *(Claim(APR, "Table 1 (CIFAR-10)", f"{d}: clean accuracy {acc:g}%", acc, "%", "05_apr", measure=f"clean:{d}",
            source=APR_FILE) for d, (acc, _) in APR2024_TABLE1.items()),
    Claim(APR, "Table 1 (CIFAR-10)", f"No defence: one-pixel ASR {APR2024_TABLE1['No defence'][1]:g}%",
          APR2024_TABLE1["No defence"][1], "%", "05_apr", measure="undefended_asr", source=APR_FILE),
    *(Claim(APR, "Table 1 (CIFAR-10)", f"{d} lowers the one-pixel ASR from "
            f"{APR2024_TABLE1['No defence'][1]:g}% to {asr:g}%", asr, "%", lab, measure=f"defence:{d}",
            source=APR_FILE, baseline=APR2024_TABLE1["No defence"][1])
      for d, (_, asr) in APR2024_TABLE1.items() if d != "No defence"
      for lab in {"IT": ("03_input_transformations", "05_apr"), "AT": ("04_training_defences", "05_apr"),
                  "DD": ("04_training_defences", "05_apr")}.get(d, ("05_apr",))),
    *(Claim(APR, "Table 2 (ImageNet subset)", f"ImageNet, {d}: {what} {v:g}%", v, "%", None,
            APR_IMAGENET_PENDING, source=APR_FILE, not_comparable=APR_IMAGENET_NOT_COMPARABLE)
      for d, (acc, asr) in APR2024_TABLE2.items() for what, v in (("clean accuracy", acc), ("one-pixel ASR", asr))),
    *(Claim(APR, "Table 3 (ablation)", f"without {part}: ASR {APR2024_TABLE3[v][1]:g}% (full APR "
            f"{APR2024_TABLE3['full'][1]:g}%)", APR2024_TABLE3[v][1], "%", "06_apr_ablation", measure=f"ablation:{v}",
            source=APR_FILE, direction=1, baseline=APR2024_TABLE3["full"][1])
      for v, part in (("no_attention", "the attention gate"), ("no_adversarial", "adversarial training"),
                      ("no_regularisation", "the gradient regulariser"))),
    *(Claim(APR, f"Table 4 ({m})", f"APR's {kind} time is {v:g}% above the undefended model's", v, "%",
            "07_apr_overhead", measure=f"overhead:{kind}", source=APR_FILE)
      for m, (tr, inf) in APR2024_TABLE4.items() for kind, v in (("training", tr), ("inference", inf))),
    Claim(APR, "Sec. V.F (analysis of attention maps)", "do successful one-pixel attacks write where the gate's "
          "attention is low? (the book's question: Sec. V.F describes the maps and tests no such statement)", None,
          "", "08_attention_maps", measure="attention", source=APR_FILE, ours=True),
    Claim(JPEG_PAPER, "Table I", f"FGSM (eps = 0.02) misclassifies {JPEG2023_FGSM:g}% of the images (VGG16)",
          JPEG2023_FGSM, "%", "09_jpeg_recovery", measure="jpeg_fgsm", source=JPEG_FILE),
    *(Claim(JPEG_PAPER, "Table I", f"JPEG at q = {q} lowers the misclassification from {JPEG2023_FGSM:.1f}% to "
            f"{jpeg:.1f}%", jpeg, "%", "09_jpeg_recovery", measure=f"jpeg:{q}", source=JPEG_FILE,
            baseline=JPEG2023_FGSM)
      for q, (jpeg, _) in JPEG2023_TABLE1.items()),
    *(Claim(JPEG_PAPER, "Table I", f"the targeted one-pixel recovery after JPEG at q = {q} lowers it from {jpeg:.1f}% "
            f"to {rec:.1f}%", rec, "%", "09_jpeg_recovery", measure=f"jpeg_recovery:{q}", source=JPEG_FILE,
            baseline=jpeg)
      for q, (jpeg, rec) in JPEG2023_TABLE1.items()),
    Claim(JPEG_PAPER, "Sec. V.D (the targeted attack toward the true class)", "does one pixel reach the true class "
          "more often than a random wrong class? (the book's control: the paper targets the true class only)", None,
          "", "09_jpeg_recovery", measure="jpeg_specific", source=JPEG_FILE, direction=1, ours=True),
    *(Claim(SURVEY, f"Table {SURVEY_F1_TABLES[attack]}", f"{attack} lowers the CNN's macro-F1 on {d} to {v:g}", v,
            "F1", "10_survey_attacks", measure=f"survey_f1:{attack}|{d}", source=SURVEY_FILE)
      for attack, per in SURVEY_F1_AFTER_ATTACK.items() for d, v in per.items()),
    *(Claim(SURVEY, f"Sec. {SURVEY_DEFENCE_WHERE[d][0]}, Figure {SURVEY_DEFENCE_WHERE[d][1]}", text, None, "",
            "11_survey_defences", measure=f"survey_defence:{d}", source=SURVEY_FILE, direction=sign)
      for d, (text, sign) in SURVEY_DEFENCE_CLAIMS.items()),
)

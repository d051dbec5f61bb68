"""Numbers the papers report, quoted (never used in place of ours).

Each entry says where it comes from. The labs print them beside the numbers
they measure, labelled as the paper's.
"""

from __future__ import annotations

#: Su, Vargas & Sakurai (2019), "One pixel attack for fooling deep neural networks", IEEE TEVC.
#: CIFAR-10 (Kaggle test images), DE population 400, 100 generations, F = 0.5, 1 pixel.
#: ``targeted_any``: fraction of images pushed to at least one target class; ``untargeted``: success.
SU2019_CIFAR10 = {
    "AllConv": {"untargeted": 0.6871, "targeted_any": 0.6797},
    "NiN": {"untargeted": 0.7166, "targeted_any": None},
    "VGG16": {"untargeted": 0.6353, "targeted_any": None},
}
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

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

#: The APR paper (2024; no public code). CIFAR-10, Table 1 and Table 3: clean accuracy and ASR.
APR2024_TABLE1_CIFAR10 = {
    "No defence": {"clean_acc": 0.932, "asr": 0.7097},
    "Adversarial training": {"clean_acc": 0.873, "asr": 0.4532},
    "Input transformation": {"clean_acc": 0.891, "asr": 0.3876},
    "Defensive distillation": {"clean_acc": 0.865, "asr": 0.4189},
    "APR": {"clean_acc": 0.908, "asr": 0.2143},
}
APR2024_TABLE3_ABLATION = {
    "APR (full)": {"clean_acc": 0.908, "asr": 0.2143},
    "w/o attention": {"clean_acc": 0.895, "asr": 0.2876},
    "w/o adversarial training": {"clean_acc": 0.917, "asr": 0.3521},
    "w/o regularisation": {"clean_acc": 0.902, "asr": 0.2489},
}
#: Table 4: relative increase of training and inference time of APR over the undefended model.
APR2024_TABLE4_OVERHEAD = {
    "ResNet-18": {"training": 0.273, "inference": 0.086},
    "VGG-16": {"training": 0.315, "inference": 0.092},
}

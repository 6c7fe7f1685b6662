"""VGG6, VGG16 and ResNet20 as in the paper's appendix A.2.1, built as convertible nn.Sequential ANNs.

Notation (paper A.2.1): a number is a 3x3 conv (+ batch norm + ReLU) with that many filters, "A" a 2x2
average pooling, "D" a dropout, (filters, stride) a ResNet basic block. Convolutions and linear layers carry
no bias (batch norm provides it, paper A.2.2). VGG ends in Linear {4096, D, 4096, D, classes}; ResNet20 ends
in a single Linear to the classes, as in the official code (the paper lists no linear block for it).
"""
from __future__ import annotations

from torch import nn

from spiking_dqn.network import Residual

Spec = list[int | str | tuple[int, int]]

ARCHS: dict[str, Spec] = {
    "vgg6": [64, "A", 128, 128, "A"],
    "vgg16": [64, "D", 64, "A", 128, "D", 128, "A", 256, "D", 256, "D", 256, "A",
              512, "D", 512, "D", 512, "A", 512, "D", 512, "D", 512],
    "resnet20": [64, "D", 64, "D", 64, "A", (64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1),
                 (512, 2), (512, 1)],
}
HIDDEN = 4096  # VGG classifier width (paper A.2.1)
MAX_FEATURE_SIZE = 8  # larger maps (ImageNet 224: 14x14) get extra 2x2 poolings, to 7x7 as in standard VGG16


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    """A bias-free conv followed by batch norm."""
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)]


def basic_block(cin: int, cout: int, stride: int, dropout: float) -> Residual:
    """ResNet basic block; a 1x1 conv shortcut where the shape changes (paper A.2.1)."""
    main = nn.Sequential(*conv_bn(cin, cout, stride=stride), nn.ReLU(), nn.Dropout(dropout), *conv_bn(cout, cout))
    shortcut = nn.Sequential(*conv_bn(cin, cout, kernel=1, stride=stride)) if stride != 1 or cin != cout else None
    return Residual(main, shortcut)


def features(spec: Spec, in_channels: int, dropout: float) -> tuple[list[nn.Module], int, int]:
    """The convolutional part; returns the layers, output channels and total downsampling factor."""
    layers: list[nn.Module] = []
    channels, factor = in_channels, 1
    for item in spec:
        if item == "A":
            layers.append(nn.AvgPool2d(2))
            factor *= 2
        elif item == "D":
            layers.append(nn.Dropout(dropout))
        elif isinstance(item, tuple):
            cout, stride = item
            layers += [basic_block(channels, cout, stride, dropout), nn.ReLU()]
            channels, factor = cout, factor * stride
        else:
            layers += [*conv_bn(channels, int(item)), nn.ReLU()]
            channels = int(item)
    return layers, channels, factor


def build_model(arch: str, num_classes: int, in_channels: int = 3, image_size: int = 32, dropout: float = 0.5,
                hidden: int = HIDDEN) -> nn.Sequential:
    """The ANN for `arch` (vgg6 | vgg16 | resnet20) on square images; He-initialised (paper A.2.2).

    `hidden` is the width of the VGG classifier's two hidden linear layers (paper: 4096).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    layers, channels, factor = features(ARCHS[arch], in_channels, dropout)
    if image_size % factor:
        raise ValueError(f"image size {image_size} is not divisible by {arch}'s downsampling factor {factor}")
    size = image_size // factor
    while size > MAX_FEATURE_SIZE and size % 2 == 0:
        layers.append(nn.AvgPool2d(2))
        size //= 2
    flat = channels * size * size
    layers.append(nn.Flatten())
    if arch.startswith("vgg"):
        layers += [nn.Linear(flat, hidden, bias=False), nn.ReLU(), nn.Dropout(dropout),
                   nn.Linear(hidden, hidden, bias=False), nn.ReLU(), nn.Dropout(dropout)]
        flat = hidden
    layers.append(nn.Linear(flat, num_classes, bias=False))
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return model

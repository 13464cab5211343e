"""The model families the compression engine knows by name.

They exist so that the pipeline is real without downloads: the built-in tasks train them in
seconds to minutes on the CPU, and the benchmark measures latency on the two reference
shapes of the field (ResNet-18 and MobileNetV2 at 224x224) with random weights where no
trained weights exist. Torch models saved whole are loaded with `weights_only=True`,
trusting only these classes and torch's own layers (see `models_hub.compression.io`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


def conv_bn_relu(
    c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Three conv blocks and a linear head: the teacher of the built-in tasks."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, width),
            conv_bn_relu(width, width * 2, stride=2),
            conv_bn_relu(width * 2, width * 4, stride=2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(width * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(c_in, c_out, stride=stride)
        self.conv2 = nn.Sequential(
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNet18Style(nn.Module):
    """ResNet-18's layout (stem, four stages of two basic blocks, 64 to 512 channels at
    width 64). `small_input` swaps the 7x7/2 stem and max pool for one 3x3/1 conv, as on
    CIFAR, so that 32x32 inputs keep their detail."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1000,
        width: int = 64,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        if small_input:
            self.stem: nn.Module = conv_bn_relu(in_channels, width)
        else:
            self.stem = nn.Sequential(
                conv_bn_relu(in_channels, width, kernel=7, stride=2),
                nn.MaxPool2d(3, 2, 1),
            )
        stages: list[nn.Module] = []
        c_in = width
        for index, multiplier in enumerate((1, 2, 4, 8)):
            c_out = width * multiplier
            stride = 1 if index == 0 else 2
            stages += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.stages(self.stem(x))))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion, depthwise kxk, linear 1x1 projection."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int, kernel: int = 3) -> None:
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_relu(c_in, hidden, kernel=1))
        layers += [
            conv_bn_relu(hidden, hidden, kernel=kernel, stride=stride, groups=hidden),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


@dataclass(frozen=True)
class StageSpec:
    """One stage of a MobileNet-style network: `depth` blocks of `channels` outputs, the
    first with `stride`, all with a `kernel` x `kernel` depthwise convolution."""

    channels: int
    depth: int
    stride: int
    kernel: int = 3
    expansion: int = 6


# MobileNetV2's stages (t, c, n, s) from Sandler et al. 2018, table 2.
MOBILENET_V2_STAGES = (
    StageSpec(16, 1, 1, expansion=1),
    StageSpec(24, 2, 2),
    StageSpec(32, 3, 2),
    StageSpec(64, 4, 2),
    StageSpec(96, 3, 1),
    StageSpec(160, 3, 2),
    StageSpec(320, 1, 1),
)


class MobileNetStyle(nn.Module):
    """A MobileNetV2-style network built from stage specs: MobileNetV2 itself with the
    default stages, and every member of the architecture-search family."""

    def __init__(
        self,
        stages: Sequence[StageSpec] = MOBILENET_V2_STAGES,
        in_channels: int = 3,
        num_classes: int = 1000,
        stem_channels: int = 32,
        head_channels: int = 1280,
        stem_stride: int = 2,
    ) -> None:
        super().__init__()
        self.stem = conv_bn_relu(in_channels, stem_channels, stride=stem_stride)
        blocks: list[nn.Module] = []
        c_in = stem_channels
        for stage in stages:
            for index in range(stage.depth):
                stride = stage.stride if index == 0 else 1
                blocks.append(
                    InvertedResidual(c_in, stage.channels, stride, stage.expansion, stage.kernel)
                )
                c_in = stage.channels
        self.blocks = nn.Sequential(*blocks)
        self.head = conv_bn_relu(c_in, head_channels, kernel=1)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.head(self.blocks(self.stem(x)))))


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "small-cnn": SmallCNN,
    "resnet18-style": ResNet18Style,
    "mobilenet-style": MobileNetStyle,
}

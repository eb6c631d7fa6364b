"""Parameter shapes of ResNet-50 (161 tensors, 25.6M) and ViT-B/16 (152 tensors, 86.6M)."""

from __future__ import annotations

import math


def resnet50() -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    inplanes = 64
    for planes, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            shapes += [(planes, inplanes, 1, 1), (planes,), (planes,)]
            shapes += [(planes, planes, 3, 3), (planes,), (planes,)]
            shapes += [(planes * 4, planes, 1, 1), (planes * 4,), (planes * 4,)]
            if b == 0:
                shapes += [(planes * 4, inplanes, 1, 1), (planes * 4,), (planes * 4,)]
            inplanes = planes * 4
    return [*shapes, (1000, 2048), (1000,)]


def vit_b16() -> list[tuple[int, ...]]:
    d, mlp = 768, 3072
    shapes: list[tuple[int, ...]] = [(d, 3, 16, 16), (d,), (1, 1, d), (1, 197, d)]
    for _ in range(12):
        shapes += [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,)]
        shapes += [(d,), (d,), (mlp, d), (mlp,), (d, mlp), (d,)]
    return [*shapes, (d,), (d,), (1000, d), (1000,)]


WORKLOADS = {"resnet50": resnet50, "vit_b16": vit_b16}


def count(shapes: list[tuple[int, ...]]) -> int:
    return sum(math.prod(s) for s in shapes)

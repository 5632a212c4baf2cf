"""The pix2pix colorizer baseline (Isola et al. 2017), as its reference implementation builds it.

U-Net generator: ``num_downs`` stride-2 4x4 convs (7 for 128 crops: 128 -> 1), ngf=64 doubling to
512, BatchNorm, LeakyReLU(0.2) down / ReLU up, dropout 0.5 in the num_downs - 5 decoder blocks next to the innermost,
tanh output; here L (B,1,H,W) in [-1, 1] -> ab (B,2,H,W) = tanh * AB_SCALE (110). 70x70 PatchGAN
discriminator (3 stride-2 layers, BatchNorm) on concat(L, ab / AB_SCALE). The scalings are ours
(``models.scaling``), so both models see the same input. Not part of the product: the benchmark's
reference point.
"""

from __future__ import annotations

import torch
from torch import nn

from models.scaling import AB_SCALE, ab_to_unit


class _Block(nn.Module):
    """One U-Net level: down -> (inner) -> up, with the skip concatenated on the way out."""

    def __init__(
        self,
        outer: int,
        inner: int,
        sub: nn.Module = None,
        outermost=False,
        innermost=False,
        dropout=False,
        in_ch: int = None,
        out_ch: int = None,
    ):
        super().__init__()
        in_ch = in_ch or outer
        down = [nn.Conv2d(in_ch, inner, 4, 2, 1, bias=False)]
        if outermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, out_ch, 4, 2, 1), nn.Tanh()]
            layers = down + [sub] + up
        elif innermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
            layers = [nn.LeakyReLU(0.2, True)] + down + up
        else:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
            layers = [nn.LeakyReLU(0.2, True)] + down + [nn.BatchNorm2d(inner), sub] + up
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.outermost = outermost
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """L (B,1,H,W) in [-1,1] -> ab (B,2,H,W) in Lab units; H, W multiples of 2**num_downs."""

    def __init__(self, num_downs: int = 7, ngf: int = 64):
        super().__init__()
        block = _Block(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):
            block = _Block(ngf * 8, ngf * 8, block, dropout=True)
        block = _Block(ngf * 4, ngf * 8, block)
        block = _Block(ngf * 2, ngf * 4, block)
        block = _Block(ngf, ngf * 2, block)
        self.net = _Block(2, ngf, block, outermost=True, in_ch=1, out_ch=2)
        self.multiple = 2**num_downs

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        return self.net(L) * AB_SCALE


class PatchDiscriminator70(nn.Module):
    """70x70 PatchGAN: (L, ab) -> (B,1,h,w) real/fake logits."""

    def __init__(self, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([L, ab_to_unit(ab)], 1))


def init_weights(m: nn.Module) -> None:
    """pix2pix's init: N(0, 0.02) convs, N(1, 0.02) BatchNorm scales."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)

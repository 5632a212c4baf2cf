"""PatchGAN discriminator on concat(L, ab): a grid of real/fake logits, one per image patch."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from models.scaling import ab_to_unit


class PatchDiscriminator(nn.Module):
    """(L (B,1,H,W) in [-1,1], ab (B,2,H,W) in Lab units) -> logits (B,1,h,w).

    ``n_layers`` = 3 is pix2pix's 70x70 PatchGAN. Spectral norm on every conv keeps D Lipschitz
    (stable with hinge loss) and replaces BatchNorm, so D has no batch statistics to sync; its only
    buffers are the power-iteration vectors, updated in training-mode forwards.
    """

    def __init__(self, base_channels: int = 64, n_layers: int = 3, spectral: bool = True):
        super().__init__()
        sn = spectral_norm if spectral else (lambda m: m)
        layers = [sn(nn.Conv2d(3, base_channels, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, True)]
        ch = base_channels
        for i in range(1, n_layers + 1):
            nxt = base_channels * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [sn(nn.Conv2d(ch, nxt, 4, stride=stride, padding=1)), nn.LeakyReLU(0.2, True)]
            ch = nxt
        layers.append(sn(nn.Conv2d(ch, 1, 4, stride=1, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([L, ab_to_unit(ab)], 1))

    @classmethod
    def from_config(cls, model_cfg) -> PatchDiscriminator:
        get = model_cfg.get if isinstance(model_cfg, dict) else lambda k, d=None: getattr(model_cfg, k, d)
        kw = {}
        names = (("d_base_channels", "base_channels"), ("d_layers", "n_layers"), ("d_spectral_norm", "spectral"))
        for src, dst in names:
            v = get(src, None)
            if v is not None:
                kw[dst] = v
        return cls(**kw)

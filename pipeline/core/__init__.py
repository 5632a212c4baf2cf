"""Colour science and geometry, pure numpy/torch: no Ray, no storage, no models beyond their scalings.
Its public face, what other layers may import:

- ``color``: sRGB<->Lab, the keep-L gamut rule, the ab grid and bins, soft encoding, priors/weights
- ``geometry``: resizing and crop windows;  ``transforms``: per-file decoding and per-batch steps
- ``hints``: colour hints (points of a photo and their colours) and the generator's hint map
- ``hint_spread``: after the generator, each hint's colour on its point and spread along the photo
- ``skips``: skip reasons and their counts;  ``split``: photo ids and the train/val rule
- ``metrics``, ``scoring``: validation metrics, scoring 8-bit outputs;  ``pictures``: image grids, ab plots
"""

__all__ = [
    "color",
    "geometry",
    "hint_spread",
    "hints",
    "metrics",
    "pictures",
    "scoring",
    "skips",
    "split",
    "transforms",
]

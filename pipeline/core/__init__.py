"""The pure core: colour maths, geometry, the split rule, skips, output names, metrics and scoring,
per-file decoding. numpy/torch only: no Ray, no storage, no models beyond their scalings."""

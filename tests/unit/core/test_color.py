"""Colour science core against scikit-image and brute force."""

import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from skimage.color import lab2rgb, rgb2lab

from pipeline.core import color


def _all_colours_strided(step=3):
    v = np.arange(0, 256, step, dtype=np.uint8)
    v = np.union1d(v, [0, 1, 2, 254, 255]).astype(np.uint8)
    r, g, b = np.meshgrid(v, v, v, indexing="ij")
    return np.stack([r, g, b], -1).reshape(-1, 3)


def test_rgb_to_lab_matches_skimage_uint8_and_float():
    rgb = _all_colours_strided()
    ref = rgb2lab(rgb[None])[0]
    assert np.abs(color.rgb_to_lab(rgb) - ref).max() < 1e-3
    f32 = rgb.astype(np.float32) / 255
    assert color.rgb_to_lab(f32).dtype == np.float32
    assert np.abs(color.rgb_to_lab(f32) - ref).max() < 1e-3
    assert np.abs(color.rgb_to_lab(rgb.astype(np.float64) / 255) - ref).max() < 1e-9


def test_lab_edge_colours():
    edges = np.array(
        [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 1, 1], [10, 10, 10]], np.uint8
    )
    lab = color.rgb_to_lab(edges)
    assert np.allclose(lab[0], 0, atol=1e-4) and np.allclose(lab[1], [100, 0, 0], atol=1e-2)
    assert np.abs(lab - rgb2lab(edges[None])[0]).max() < 1e-3


def test_round_trip_and_inverse_matches_skimage():
    rng = np.random.default_rng(0)
    rgb = rng.random((5000, 3))
    lab = color.rgb_to_lab(rgb)
    assert np.abs(color.lab_to_rgb(lab) - rgb).max() < 1e-6
    lab_any = np.stack([rng.uniform(0, 100, 5000), rng.uniform(-100, 100, 5000), rng.uniform(-100, 100, 5000)], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about the out-of-gamut (negative Z) ones
        ref = lab2rgb(lab_any[None])[0]
    assert np.abs(color.lab_to_rgb(lab_any) - ref).max() < 1e-6


def test_torch_equals_numpy_both_directions_and_layouts():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (2, 7, 9, 3), dtype=np.uint8)
    lab_np = color.rgb_to_lab(rgb)
    lab_t = color.rgb_to_lab_torch(torch.from_numpy(rgb))
    assert np.abs(lab_t.numpy() - lab_np).max() < 1e-3
    chw = torch.from_numpy(rgb).permute(0, 3, 1, 2)  # (B,3,H,W)
    lab_chw = color.rgb_to_lab_torch(chw, dim=1)
    assert lab_chw.shape == (2, 3, 7, 9)
    assert np.abs(lab_chw.permute(0, 2, 3, 1).numpy() - lab_np).max() < 1e-3
    back = color.lab_to_rgb_keep_l(lab_chw, dim=1).permute(0, 2, 3, 1).numpy()  # in gamut: nothing to fit
    assert np.abs(back - color.lab_to_rgb(lab_np)).max() < 1e-5
    assert np.abs(back - rgb / 255.0).max() < 1e-4


def _random_lab(n, seed):
    rng = np.random.default_rng(seed)  # most of these lie outside sRGB
    return np.stack([rng.uniform(0, 100, n), rng.uniform(-128, 127, n), rng.uniform(-128, 127, n)], -1)


def test_keep_l_torch_equals_numpy_within_one_level():
    lab = _random_lab(40000, 11).reshape(4, 100, 100, 3)
    ref = color.lab_to_rgb_u8(lab)  # numpy, float64
    assert ref.dtype == np.uint8 and ref.shape == lab.shape
    chw = torch.from_numpy(lab).float().permute(0, 3, 1, 2)  # (B,3,H,W)
    out = color.lab_to_rgb_u8(chw, dim=1)
    assert out.dtype == torch.uint8 and out.shape == chw.shape
    diff = np.abs(out.permute(0, 2, 3, 1).numpy().astype(int) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the conversion must not run in bf16
        assert np.abs(color.lab_to_rgb_u8(chw, dim=1).permute(0, 2, 3, 1).numpy().astype(int) - ref).max() <= 1


def _linear_rgb(lab):
    """Lab -> linear RGB, unclipped (the textbook formulas, independent of pipeline.core.color)."""
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([lab[..., 1] / 500 + fy, fy, fy - lab[..., 2] / 200], -1)
    xyz = np.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * color.D65_WHITE
    return xyz @ color.RGB_FROM_XYZ.T


def test_keep_l_keeps_lightness_and_gives_up_only_chroma():
    lab = _random_lab(20000, 12)
    rgb = color.lab_to_rgb_keep_l(lab)
    assert rgb.min() >= 0 and rgb.max() <= 1
    back = color.rgb_to_lab(rgb)
    assert np.abs(back[:, 0] - lab[:, 0]).max() < 1e-3, "L is kept exactly before 8-bit rounding"
    assert (np.hypot(back[:, 1], back[:, 2]) <= np.hypot(lab[:, 1], lab[:, 2]) + 1e-6).all(), "chroma only gives way"
    # the rule: in linear light, the colour moves straight toward the grey of its own L
    lin_in, lin_out = _linear_rgb(lab), _linear_rgb(back.astype(np.float64))
    Y = _linear_rgb(np.stack([lab[:, 0], 0 * lab[:, 0], 0 * lab[:, 0]], -1))[:, :1]
    d_in, d_out = lin_in - Y, lin_out - Y
    big = np.linalg.norm(d_out, axis=1) > 0.02
    cos = (d_in[big] * d_out[big]).sum(1) / np.linalg.norm(d_in[big], axis=1) / np.linalg.norm(d_out[big], axis=1)
    assert cos.min() > 0.999
    clipped_L = color.rgb_to_lab(color.lab_to_rgb(lab))[:, 0]
    assert np.abs(clipped_L - lab[:, 0]).max() > 10, "per-channel clipping moves L (why keep-L exists)"
    inside = color.rgb_to_lab(_all_colours_strided(15))  # in gamut: keep-L is the plain conversion
    assert np.abs(color.lab_to_rgb_keep_l(inside) - color.lab_to_rgb(inside)).max() < 1e-4  # float32 in


def test_keep_l_leaves_a_yellow_just_outside_sRGB_vivid():
    # Shrinking a, b in Lab from here leaves sRGB (R > 1) and re-enters only at 1/4 of the chroma.
    yellow = color.rgb_to_lab(np.array([255, 255, 0], np.uint8)).astype(np.float64)
    for k in (1.01, 1.03):
        out = color.rgb_to_lab(color.lab_to_rgb_u8(yellow * [1, k, k]))
        assert np.hypot(*out[1:]) > 0.9 * np.hypot(*yellow[1:]), k
        assert abs(out[0] - yellow[0]) < 0.5


def test_keep_l_in_chunks_equals_whole(monkeypatch):
    lab = _random_lab(3000, 13).reshape(30, 100, 3)
    whole_np, whole_t = color.lab_to_rgb_keep_l(lab), color.lab_to_rgb_keep_l(torch.from_numpy(lab))
    monkeypatch.setattr(color, "KEEP_L_CHUNK", 257)
    assert np.array_equal(color.lab_to_rgb_keep_l(lab), whole_np)
    assert torch.allclose(color.lab_to_rgb_keep_l(torch.from_numpy(lab)), whole_t, rtol=0, atol=1e-12)


def test_u8_conversion_quantises_chunk_by_chunk(monkeypatch):
    """uint8 out is exactly the rounded float conversion, and a large photo costs the uint8 output
    plus a few chunk-sized temporaries, never full-size float64 copies (GBs for a 64 MP photo)."""
    lab = _random_lab(512 * 512, 14).reshape(512, 512, 3).astype(np.float32)
    assert np.array_equal(color.lab_to_rgb_u8(lab), color.to_uint8(color.lab_to_rgb_keep_l(lab)))
    chw = torch.from_numpy(lab).permute(2, 0, 1)
    assert torch.equal(color.lab_to_rgb_u8(chw, dim=0), color.to_uint8(color.lab_to_rgb_keep_l(chw, dim=0)))
    monkeypatch.setattr(color, "KEEP_L_CHUNK", 4096)
    tracemalloc.start()
    try:
        out = color.lab_to_rgb_u8(lab)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full_float64 = lab.size * 8  # one full-size float64 copy: 6 MiB here
    assert peak < out.nbytes + full_float64 // 2, f"peak {peak / 2**20:.1f} MiB"


def test_L_and_ab_storage_round_trip():
    codes = np.arange(256, dtype=np.uint8)
    assert np.array_equal(color.L_to_u8(color.u8_to_L(codes)), codes)
    assert torch.equal(color.L_to_u8(color.u8_to_L(torch.from_numpy(codes))), torch.from_numpy(codes))
    L = np.linspace(0, 100, 10001)
    assert np.abs(color.u8_to_L(color.L_to_u8(L)) - L).max() <= 0.5 / color.L_U8_SCALE + 1e-5
    assert color.L_to_u8(np.array([-3.0, 0.0, 100.0, 104.0])).tolist() == [0, 0, 255, 255]
    assert np.array_equal(color.L_to_u8(torch.from_numpy(L)).numpy(), color.L_to_u8(L))
    ab = np.array([[-130.2, -0.4], [0.6, 126.6], [127.4, 200.0]])
    assert color.ab_to_i8(ab).tolist() == [[-128, 0], [1, 127], [127, 127]]
    assert np.array_equal(color.ab_to_i8(torch.from_numpy(ab)).numpy(), color.ab_to_i8(ab))
    assert color.i8_to_ab(color.ab_to_i8(ab)).dtype == np.float32
    assert color.i8_to_ab(torch.tensor([-5], dtype=torch.int8)).dtype == torch.float32


def test_one_grey_rule_on_rgb_and_on_lab():
    colours = _all_colours_strided(5)
    ab = color.rgb_to_lab(colours)[:, 1:]
    by_lab = color.coloured_pixels(ab)
    by_bin = color.rgb_to_bin(colours) != color.ab_to_bin(np.zeros(2))
    assert np.array_equal(by_lab, by_bin), "coloured <=> outside the grey bin"
    assert np.array_equal(color.coloured_pixels(torch.from_numpy(ab)).numpy(), by_lab)
    assert by_lab[(colours[:, 0] == colours[:, 1]) & (colours[:, 1] == colours[:, 2])].sum() == 0, "R=G=B is grey"
    assert by_lab.mean() > 0.9

    def image(n_coloured):  # 100x100 grey with n pixels of a clear colour
        im = np.full((100, 100, 3), 120, np.uint8)
        im.reshape(-1, 3)[:n_coloured] = (180, 90, 60)
        return im

    for n, grey in ((0, True), (9, True), (10, False), (500, False)):  # GREY_FRACTION = 1e-3 of 10^4 pixels
        im = image(n)
        assert color.is_grey(im) is grey, n
        ab_b = color.rgb_to_lab(im)[None, ..., 1:]  # (1, H, W, 2)
        assert color.is_grey_batch(ab_b, dim=-1).tolist() == [grey]
        t = torch.from_numpy(ab_b).permute(0, 3, 1, 2)  # (1, 2, H, W)
        assert color.is_grey_batch(t, dim=1).tolist() == [grey]
    noisy = (image(0).astype(int) + np.random.default_rng(0).integers(-2, 3, (100, 100, 3))).astype(np.uint8)
    assert color.is_grey(noisy), "a few levels of JPEG-like noise stay grey"


def test_grid_properties(reference):
    bins = color.ab_bins()
    assert bins.shape == (323, 2) and bins.dtype == np.float32
    assert np.all(bins % 10 == 0)
    order = np.lexsort((bins[:, 1], bins[:, 0]))
    assert np.array_equal(order, np.arange(len(bins))), "bins must be sorted by a, then b"
    assert len(np.unique(bins, axis=0)) == len(bins)
    zhang = np.load(reference / "pts_in_hull.npy")
    ours = {tuple(p) for p in bins.astype(int)}
    assert all(tuple(p) in ours for p in zhang), "every Zhang bin must be a bin here"


def test_grid_holds_every_srgb_colour():
    # The whole cube, via the per-colour cell table, must land in bins; and the table must agree
    # with a direct conversion on a sample.
    cells = np.asarray(color._srgb_cells())
    used = np.nonzero(np.bincount(cells, minlength=color.GRID_SIDE**2))[0]
    hit = (np.stack(np.divmod(used, color.GRID_SIDE), -1) - color.GRID_HALF) * 10
    assert len(hit) == 261
    ours = {tuple(p) for p in color.ab_bins().astype(int)}
    assert all(tuple(p) in ours for p in hit.astype(int))
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (20000, 3), dtype=np.uint8)
    idx = (rgb[:, 0].astype(np.int64) << 16) | (rgb[:, 1].astype(np.int64) << 8) | rgb[:, 2]
    direct = np.rint(rgb2lab(rgb[None])[0][:, 1:] / 10).astype(np.int64) + color.GRID_HALF
    assert np.array_equal(cells[idx], direct[:, 0] * color.GRID_SIDE + direct[:, 1])


def _brute_nearest(ab):
    d = ((ab[:, None, :].astype(np.float64) - color.ab_bins()[None].astype(np.float64)) ** 2).sum(-1)
    return d.argmin(1)


def test_ab_to_bin_equals_brute_force_in_gamut():
    rng = np.random.default_rng(3)
    ab = color.rgb_to_lab(rng.integers(0, 256, (50000, 3), dtype=np.uint8))[:, 1:]
    assert np.array_equal(color.ab_to_bin(ab), _brute_nearest(ab))
    # any ab whose rounded cell is a bin, not only sRGB colours
    ab2 = rng.uniform(-110, 110, (50000, 2)).astype(np.float32)
    cell = np.rint(ab2 / 10) * 10
    bin_set = {tuple(b) for b in color.ab_bins()}
    inside = np.array([tuple(c) in bin_set for c in cell])
    assert inside.sum() > 10000
    assert np.array_equal(color.ab_to_bin(ab2[inside]), _brute_nearest(ab2[inside]))
    # torch answers the same, any shape
    t = color.ab_to_bin(torch.from_numpy(ab2.reshape(100, 500, 2)))
    assert t.dtype == torch.int64 and np.array_equal(t.numpy().ravel(), color.ab_to_bin(ab2))
    # far outside: still a valid bin, no crash on NaN
    out = color.ab_to_bin(np.array([[500.0, -500.0], [np.nan, 0.0]]))
    assert ((0 <= out) & (out < len(color.ab_bins()))).all()


def test_rgb_to_bin_is_the_lookup_of_lab_then_bin():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert np.array_equal(color.rgb_to_bin(rgb), color.ab_to_bin(color.rgb_to_lab(rgb)[..., 1:]))
    with pytest.raises(ValueError):
        color.rgb_to_bin(rgb.astype(np.float32))


def test_soft_encode_is_gaussian_over_5_nearest():
    rng = np.random.default_rng(5)
    ab = color.rgb_to_lab(rng.integers(0, 256, (3000, 3), dtype=np.uint8))[:, 1:]
    idx, w = color.soft_encode_sparse(ab)
    assert idx.shape == w.shape == (3000, 5)
    assert np.allclose(w.sum(-1), 1, atol=1e-5)
    d2 = ((ab[:, None, :].astype(np.float64) - color.ab_bins()[None]) ** 2).sum(-1)  # brute force over all bins
    nearest5 = np.argsort(d2, 1, kind="stable")[:, :5]
    assert np.array_equal(np.sort(idx, 1), np.sort(nearest5, 1))
    assert np.array_equal(idx[:, 0], nearest5[:, 0]), "the nearest bin comes first (the loss's rebalancing weight)"
    expect = np.exp(-np.take_along_axis(d2, idx, 1) / (2 * 25.0))
    assert np.allclose(w, expect / expect.sum(1, keepdims=True), atol=1e-5)
    idx_t, w_t = color.soft_encode_sparse(torch.from_numpy(ab))
    assert np.array_equal(idx_t.numpy(), idx) and np.allclose(w_t.numpy(), w, atol=1e-5)
    idx, wt = color.soft_encode_sparse(ab, k=3, sigma=8)
    assert idx.shape == (3000, 3) and np.allclose(wt.sum(-1), 1, atol=1e-5)


def test_annealed_mean():
    q = len(color.ab_bins())
    onehot = np.eye(q, dtype=np.float32)[[0, 50, 200]]
    assert np.allclose(color.annealed_mean(onehot, T=0.38), color.ab_bins()[[0, 50, 200]], atol=1e-3)
    rng = np.random.default_rng(6)
    p = rng.random((10, q))
    p /= p.sum(1, keepdims=True)
    assert np.allclose(color.annealed_mean(p, T=1.0), p @ color.ab_bins(), atol=1e-3)
    # lower T moves toward the mode
    mode = color.ab_bins()[p.argmax(1)]
    d_hi = np.abs(color.annealed_mean(p, T=1.0) - mode).sum()
    d_lo = np.abs(color.annealed_mean(p, T=0.05) - mode).sum()
    assert d_lo < d_hi
    # torch with classes on dim 1 of (B,Q,H,W), from logits
    logits = torch.randn(2, q, 3, 4)
    ab = color.annealed_mean(logits, T=0.38, dim=1, logits=True)
    assert ab.shape == (2, 2, 3, 4)
    ref = color.annealed_mean(torch.softmax(logits, 1).permute(0, 2, 3, 1).numpy(), T=0.38)
    assert np.allclose(ab.permute(0, 2, 3, 1).numpy(), ref, atol=1e-3)
    with pytest.raises(ValueError):
        color.annealed_mean(p, T=0)


def test_annealed_mean_has_one_home_the_generator_decodes_with():
    from models import Generator
    from models.scaling import annealed_mean

    G = Generator.from_config({"preset": "tiny"}, bins=color.ab_bins())
    logits = torch.randn(2, color.num_bins(), 5, 6) * 3
    for T in (0.1, 0.38, 1.0):
        by_model = G.decode(logits, T)  # (B,2,h,w)
        assert torch.allclose(by_model, color.annealed_mean(logits, T, dim=1, logits=True), atol=1e-4)
        by_numpy = color.annealed_mean(torch.softmax(logits, 1).numpy(), T, dim=1)  # numpy probabilities
        assert np.allclose(by_model.numpy(), by_numpy, atol=1e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = annealed_mean(logits.bfloat16(), G.bins, 0.38)
    assert out.dtype == torch.float32 and torch.allclose(out, G.decode(logits.bfloat16().float(), 0.38), atol=1e-4)


def test_prior_weights(reference):
    prior = color.import_zhang_prior(reference / "prior_probs.npy", reference / "pts_in_hull.npy")
    w = color.prior_weights(prior)
    p_s = color.smooth_prior(prior)
    assert abs((p_s * w).sum() - 1) < 1e-9
    # rarer (smoothed) bins weigh more: w is a decreasing function of p~
    order = np.argsort(p_s)
    assert np.all(np.diff(w[order]) <= 1e-12)
    assert w[np.argmin(p_s)] > 10 * w[np.argmax(p_s)]
    assert np.allclose(color.prior_weights(prior, lam=1.0), 1.0)
    with pytest.raises(ValueError):
        color.prior_weights(prior, lam=1.5)
    with pytest.raises(ValueError):
        color.prior_weights(np.ones(313) / 313)


def test_smoothing_keeps_mass_and_spreads():
    prior = np.zeros(len(color.ab_bins()))
    i = int(color.ab_to_bin(np.array([0.0, 0.0])))
    prior[i] = 1.0
    s = color.smooth_prior(prior, sigma=5)
    assert (
        abs(s.sum() - 1) < 1e-12 and 0.3 < s[i] < 0.9 and (s > 1e-3).sum() == 9
    )  # itself, 4 edge and 4 corner neighbours


def test_import_zhang_prior_round_trip(reference):
    p = np.load(reference / "prior_probs.npy")
    pts = np.load(reference / "pts_in_hull.npy")
    ours = color.import_zhang_prior(reference / "prior_probs.npy", reference / "pts_in_hull.npy")
    assert ours.shape == (323,)
    assert abs(ours.sum() - p.sum()) < 1e-12
    idx = color.ab_to_bin(pts.astype(np.float32))
    assert np.array_equal(ours[idx], p)
    assert (ours > 0).sum() == 313
    assert tuple(color.ab_bins()[ours.argmax()]) == (0, 0)

import numpy as np
import pytest

from vsr.color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from vsr.imresize import imresize
from vsr.metrics import psnr, ssim


def test_constant_image_stays_constant():
    image = np.full((30, 45), 0.37)
    for scale in (1 / 3, 0.5, 2, 3):
        np.testing.assert_allclose(imresize(image, scale), 0.37, atol=1e-12)


def test_shapes_and_integer_upscale_interpolates():
    image = np.random.default_rng(0).random((10, 14, 3))
    assert imresize(image, 3).shape == (30, 42, 3)
    assert imresize(image, 1 / 3).shape == (4, 5, 3)
    assert imresize(image, output_shape=(7, 9)).shape == (7, 9, 3)
    # A linear ramp is reproduced exactly by cubic interpolation away from the mirrored border.
    ramp = np.tile(np.arange(20, dtype=float), (6, 1))
    up = imresize(ramp, 2)
    expected = (np.arange(40) + 0.5) / 2 - 0.5
    np.testing.assert_allclose(up[:, 6:-6], np.tile(expected[6:-6], (12, 1)), atol=1e-9)


def test_downscale_antialiases():
    """Stripes at the Nyquist frequency of the input average out instead of aliasing."""
    stripes = np.tile([0.0, 1.0], (24, 12))
    small = imresize(stripes, 1 / 3)
    assert np.abs(small[2:-2, 2:-2] - 0.5).max() < 0.02


def test_ycbcr_round_trip():
    rgb = np.random.default_rng(1).integers(0, 256, (8, 9, 3)).astype(np.uint8)
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-9)
    y = rgb_to_y(np.array([[[255, 255, 255], [0, 0, 0]]], dtype=np.uint8))
    assert y.tolist() == [[235, 16]]


def test_psnr_ssim_basics():
    a = np.random.default_rng(2).integers(0, 256, (40, 40)).astype(float)
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)
    assert psnr(a, a + 1) == pytest.approx(20 * np.log10(255), abs=1e-9)
    smooth = np.tile(np.linspace(60, 200, 40), (40, 1))
    noisy = smooth + np.random.default_rng(3).normal(0, 30, smooth.shape)
    assert ssim(smooth, noisy) < 0.5 < ssim(smooth, smooth + np.random.default_rng(3).normal(0, 3, smooth.shape))


@pytest.mark.needs_data
@pytest.mark.parametrize("scale,expected_db", [(2, 33.66), (3, 30.39), (4, 28.42)])
def test_set5_bicubic_baseline_matches_literature(data_dir, scale, expected_db):
    from vsr.evaluate import luma_pairs
    from vsr.images import find_images

    scores = []
    for _, hr, lr in luma_pairs(find_images(data_dir / "set5"), scale):
        up = np.clip(np.rint(imresize(lr, scale) * 255), 0, 255)
        scores.append(psnr(hr, up, border_px=scale))
    assert np.mean(scores) == pytest.approx(expected_db, abs=0.01)

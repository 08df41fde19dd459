"""`vsr eval` against an independent computation written out here."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vsr.cli import main

scipy_ndimage = pytest.importorskip("scipy.ndimage")


def _independent_scores(path, scale, onnx_path):
    import onnxruntime as ort

    from vsr.imresize import imresize  # the convention's definition of the degradation

    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    h, w = rgb.shape[0] // scale * scale, rgb.shape[1] // scale * scale
    rgb = rgb[:h, :w]
    y = np.rint(16 + rgb @ np.array([65.481, 128.553, 24.966]) / 255)
    lr = imresize(y / 255, 1 / scale).astype(np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    sr = session.run(None, {"luma": lr[None, None]})[0][0, 0]
    sr = np.clip(np.rint(np.clip(sr, 0, 1) * 255), 0, 255)
    bic = np.clip(np.rint(imresize(lr.astype(np.float64), scale) * 255), 0, 255)

    def psnr(a, b):
        a, b = a[scale:-scale, scale:-scale], b[scale:-scale, scale:-scale]
        return 10 * np.log10(255**2 / np.mean((a - b) ** 2))

    def ssim(a, b):
        a, b = a[scale:-scale, scale:-scale], b[scale:-scale, scale:-scale]
        blur = lambda x: scipy_ndimage.gaussian_filter(x, 1.5, truncate=3.5)[5:-5, 5:-5]  # noqa: E731
        mu_a, mu_b = blur(a), blur(b)
        va, vb, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        return np.mean((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2)))

    return psnr(y, bic), ssim(y, bic), psnr(y, sr), ssim(y, sr)


@pytest.mark.parametrize("scale", [2, 3])
def test_eval_json_equals_independent_computation(image_dir, scale):
    from vsr.models.weights import shipped_weights

    result = CliRunner().invoke(main, ["eval", "--data", str(image_dir), "--scale", str(scale), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [row["name"] for row in report["images"]] == ["img0", "img1", "img2"]
    for row in report["images"]:
        expected = _independent_scores(image_dir / f"{row['name']}.png", scale, shipped_weights(scale, "onnx"))
        got = (row["bicubic_psnr_db"], row["bicubic_ssim"], row["vsr_psnr_db"], row["vsr_ssim"])
        # Same model, same convention; ONNX Runtime may round one pixel differently between sessions.
        np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)
    assert report["mean"]["vsr_psnr_db"] == pytest.approx(np.mean([r["vsr_psnr_db"] for r in report["images"]]),
                                                          abs=1e-4)


def test_eval_table(image_dir):
    result = CliRunner().invoke(main, ["eval", "--data", str(image_dir), "--scale", "3"])
    assert result.exit_code == 0, result.output
    assert "bicubic PSNR" in result.output and result.output.strip().splitlines()[-1].startswith("mean")
    # The header names what was scored (the folder), not a bare "Set".
    assert result.output.splitlines()[0].startswith("images x3 (3 images), luma (BT.601)"), result.output


def _set5_report(data_dir, scale):
    result = CliRunner().invoke(main, ["eval", "--data", str(data_dir / "set5"), "--scale", str(scale), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.needs_data
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_model_card_figures_are_what_vsr_eval_prints(data_dir, scale):
    """The Set5 figures committed beside the weights (and quoted in the model card) are reproducible."""
    from vsr.models.weights import shipped_weights

    committed = json.loads((shipped_weights(scale).parent / f"set5_x{scale}.json").read_text())
    report = _set5_report(data_dir, scale)
    for key in ("vsr_psnr_db", "vsr_ssim", "bicubic_psnr_db"):
        assert report["mean"][key] == pytest.approx(committed["mean"][key], abs=2e-3)
    assert report["mean"]["vsr_psnr_db"] > report["mean"]["bicubic_psnr_db"] + 0.9

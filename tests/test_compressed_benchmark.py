"""benchmarks/compressed.py, the compressed-video protocol, on clips the test writes with PyAV:
the LR is the clip area-downscaled x3 and re-encoded by libx264, every method is scored against the
original frames, and the report says what the codec cost."""
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, make_clip


def _run(*args):
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "compressed.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_scores_every_method_on_every_clip_against_bicubic(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    make_clip(clips / "a.mp4", width=192, height=108, frames=6)
    make_clip(clips / "b.mkv", width=160, height=96, frames=6)  # no multiple of 3 wide: the reference is cropped
    (clips / "notes.txt").write_text("not a clip")
    out = tmp_path / "out" / "compressed"
    result = _run("--data", clips, "--frames", 4, "--crf", 23, 37, "--model", "espcn", "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    assert set(report["clips"]) == {"a.mp4", "b.mkv"}
    assert report["settings"]["methods"] == ["bicubic", "espcn"]
    for name, clip in report["clips"].items():
        assert clip["frames"] == 4
        width, height = map(int, clip["size"].split("x"))
        assert width % 3 == 0 and height % 3 == 0
        scores = clip["crf"]
        # Heavier coding loses more of the LR and spends fewer bits.
        assert scores["37"]["lr_psnr_db_vs_uncompressed"] < scores["23"]["lr_psnr_db_vs_uncompressed"]
        assert scores["37"]["kbit_per_frame"] < scores["23"]["kbit_per_frame"]
        for crf in ("23", "37"):
            assert scores[crf]["bicubic"]["gain_db"] == 0.0
            espcn = scores[crf]["espcn"]
            assert espcn["gain_db"] == pytest.approx(espcn["psnr_db"] - scores[crf]["bicubic"]["psnr_db"], abs=2e-3)
            assert 10 < espcn["psnr_db"] < 60 and 0 < espcn["ssim"] <= 1 and espcn["temporal_error"] > 0
    assert "| 37 | espcn |" in out.with_suffix(".md").read_text()


def test_a_folder_without_clips_is_one_clear_error(tmp_path):
    result = _run("--data", tmp_path, "--out", tmp_path / "out")
    assert result.returncode == 2 and "no video clips" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("scale", [2, 4])
def test_other_scales_downscale_and_score_at_that_factor(tmp_path, scale):
    clips = tmp_path / "clips"
    clips.mkdir()
    make_clip(clips / "a.mp4", width=200, height=120, frames=4)  # x4: a 50x30 LR, half of 30 is odd
    out = tmp_path / "compressed"
    result = _run("--data", clips, "--scale", scale, "--frames", 3, "--crf", 30, "--model", "espcn", "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["settings"]["scale"] == scale
    width, height = map(int, report["clips"]["a.mp4"]["size"].split("x"))
    # Cropped to a multiple of twice the factor (4:2:0 LR), no more.
    assert (width, height) == (200 - 200 % (2 * scale), 120 - 120 % (2 * scale))
    row = report["clips"]["a.mp4"]["crf"]["30"]
    # A network of the wrong factor would not even match the reference's size; bicubic sets the bar.
    assert 10 < row["espcn"]["psnr_db"] < 60 and row["espcn"]["gain_db"] != 0.0
    assert out.with_suffix(".md").read_text().startswith(f"# Compressed low-resolution video, x{scale}")


def test_a_named_precision_is_the_one_scored_and_said(tmp_path):
    pytest.importorskip("openvino")
    clips = tmp_path / "clips"
    clips.mkdir()
    make_clip(clips / "a.mp4", width=96, height=60, frames=3)
    out = tmp_path / "compressed"
    result = _run("--data", clips, "--frames", 2, "--crf", 30, "--model", "espcn", "--backend", "openvino",
                  "--precision", "fp32", "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["settings"]["backend"] == "openvino" and report["settings"]["precision"] == "fp32"
    assert "upscaled on openvino fp32;" in out.with_suffix(".md").read_text()
    # fp32 OpenVINO is the same network as fp32 ONNX Runtime: the same score, to rounding.
    onnx = tmp_path / "onnx"
    assert _run("--data", clips, "--frames", 2, "--crf", 30, "--model", "espcn", "--out", onnx).returncode == 0
    other = json.loads(onnx.with_suffix(".json").read_text())
    assert (report["clips"]["a.mp4"]["crf"]["30"]["espcn"]["psnr_db"]
            == pytest.approx(other["clips"]["a.mp4"]["crf"]["30"]["espcn"]["psnr_db"], abs=0.02))

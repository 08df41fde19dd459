"""The command line: --help everywhere, real upscaling, and one clear line for every bad input."""
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vsr.cli import main

from tests.conftest import synthetic_rgb

COMMANDS = sorted(main.commands)


def run_vsr(*args, cwd=None):
    """Run the real console entry point in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, "-m", "vsr", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_every_command_has_help():
    runner = CliRunner()
    assert {"train", "eval", "upscale", "export"} <= set(COMMANDS)
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and all(name in result.output for name in COMMANDS)
    for name in COMMANDS:
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage:" in result.output


def test_help_does_not_import_heavy_modules():
    code = "import sys; from vsr.cli import main; heavy = {'torch', 'onnxruntime', 'av', 'cv2', 'numpy', 'openvino'} & set(sys.modules); print(sorted(heavy))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_upscale_image_beats_bicubic(tmp_path):
    from vsr.color import rgb_to_y
    from vsr.imresize import imresize
    from vsr.metrics import psnr

    hr = synthetic_rgb(150, 210, seed=7)
    lr = np.clip(np.rint(imresize(hr, 1 / 3)), 0, 255).astype(np.uint8)
    Image.fromarray(lr).save(tmp_path / "lr.png")
    Image.fromarray(hr).save(tmp_path / "hr.png")
    result = run_vsr("upscale", tmp_path / "lr.png", tmp_path / "sr.png", "--scale", 3, "--compare",
                     "--reference", tmp_path / "hr.png")
    assert result.returncode == 0, result.stderr
    sr = np.asarray(Image.open(tmp_path / "sr.png"))
    assert sr.shape == hr.shape
    bicubic = np.clip(np.rint(imresize(lr, 3)), 0, 255).astype(np.uint8)
    # The network works on luma; chroma is bicubic in both, so compare where the model acts.
    assert psnr(rgb_to_y(hr), rgb_to_y(sr), border_px=3) > psnr(rgb_to_y(hr), rgb_to_y(bicubic), border_px=3) + 0.3
    figure = Image.open(tmp_path / "sr_compare.png")
    assert figure.width > 4 * 210 and figure.height > 150  # nearest | bicubic | vsr | original
    assert "dB" in result.stderr


def test_upscale_does_not_import_torch(tmp_path, monkeypatch):
    Image.fromarray(synthetic_rgb(40, 50)).save(tmp_path / "a.png")
    code = ("import sys; from vsr.cli import main; sys.argv=['vsr','upscale',sys.argv[1],sys.argv[2],'--scale','2','-q'];"
            "\ntry: main()\nexcept SystemExit as e: assert not e.code\nassert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code, tmp_path / "a.png", tmp_path / "b.png"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "b.png").size == (100, 80)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_upscale_folder_keeps_names(image_dir, tmp_path, backend):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["upscale", str(image_dir), str(out), "--scale", "2", "--backend", backend,
                                       "-q"])
    assert result.exit_code == 0, result.output
    for name in ("img0", "img1", "img2"):
        src = Image.open(image_dir / f"{name}.png")
        dst = Image.open(out / f"{name}.png")
        assert dst.size == (src.width * 2, src.height * 2)


def test_backends_agree(image_dir, tmp_path):
    outs = {}
    for backend in ("onnxruntime", "torch"):
        CliRunner().invoke(main, ["upscale", str(image_dir / "img0.png"), str(tmp_path / f"{backend}.png"),
                                  "--backend", backend, "-q"], catch_exceptions=False)
        outs[backend] = np.asarray(Image.open(tmp_path / f"{backend}.png"), dtype=int)
    assert np.abs(outs["onnxruntime"] - outs["torch"]).max() <= 1


@pytest.fixture
def bad_inputs(tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is text, not a PNG")
    good = tmp_path / "good.png"
    Image.fromarray(synthetic_rgb(30, 30)).save(good)
    return {"missing": tmp_path / "missing.png", "not_image": not_image, "good": good, "dir": tmp_path}


@pytest.mark.parametrize("case,args,message", [
    ("missing", ["upscale", "{missing}", "{dir}/o.png"], "no such file"),
    ("not an image", ["upscale", "{not_image}", "{dir}/o.png"], "not a readable image"),
    ("unsupported scale", ["upscale", "{good}", "{dir}/o.png", "--scale", "5"], "'5' is not one of"),
    ("unwritable output", ["upscale", "{good}", "{dir}/no/such/dir/o.png"], "does not exist"),
    ("bad output extension", ["upscale", "{good}", "{dir}/o.xyz"], "unsupported image extension"),
    ("eval on missing data", ["eval", "--data", "{missing}", "--scale", "3"], "no such file"),
    ("train on missing data", ["train", "{missing}", "--scale", "3", "--out", "{dir}/run"], "no such file"),
    ("missing weights", ["upscale", "{good}", "{dir}/o.png", "--weights", "{missing}"], "no such weights file"),
    ("weights not a checkpoint", ["export", "{dir}/m.onnx", "--scale", "3", "--weights", "{not_image}"],
     "not a vsr checkpoint"),
])
def test_bad_input_is_one_clear_line(bad_inputs, case, args, message):
    result = run_vsr(*[a.format(**bad_inputs) for a in args])
    assert result.returncode != 0, case
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert message in lines[-1], result.stderr
    assert not (bad_inputs["dir"] / "o.png").exists()
    leftovers = [p for p in bad_inputs["dir"].iterdir() if p.name.endswith(".part")]
    assert not leftovers


def test_unwritable_output_directory(bad_inputs):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    locked = bad_inputs["dir"] / "locked"
    locked.mkdir(mode=0o500)
    result = run_vsr("upscale", bad_inputs["good"], locked / "o.png")
    assert result.returncode != 0 and "cannot write" in result.stderr.splitlines()[-1]


def test_output_folder_gets_the_input_name(bad_inputs):
    folder = bad_inputs["dir"] / "results"
    folder.mkdir()
    result = run_vsr("upscale", bad_inputs["good"], folder, "-q", "--scale", "2")
    assert result.returncode == 0, result.stderr
    assert Image.open(folder / "good.png").size == (60, 60)

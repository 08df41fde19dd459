"""benchmarks/train_throughput.py measures vsr.train's own loop (numbers, not speeds, are checked)."""
import importlib.util
from pathlib import Path

import pytest

from vsr.images import find_images

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_throughput", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("sampling", ["grid", "random"])
def test_measure_reports_consistent_positive_rates(bench, image_dir, tmp_path, sampling):
    images, work_dir = find_images(image_dir), tmp_path / "work"
    work_dir.mkdir()
    row = bench.measure(images, images[1], "espcn", sampling, patch_px=17, batch=4, seconds=0.3,
                        work_dir=work_dir)
    assert row["steps"] >= 1 and row["train_s"] > 0 and row["steps_per_s"] > 0
    assert row["output_lr_px_per_s"] == pytest.approx(row["steps_per_s"] * 17**2 * 4)
    assert row["hr_px_per_s"] == pytest.approx(row["output_lr_px_per_s"] * 3**2)
    assert row["input_per_output_px"] == pytest.approx((25 / 17) ** 2)  # ESPCN's 4 px of context
    assert list(work_dir.iterdir()) == []  # checkpoints went to a temporary folder


def test_every_model_has_the_grid_baseline_its_recipe_and_a_larger_batch(bench):
    from vsr.models.registry import MODELS

    for model in (m for m in MODELS if MODELS[m].degradation == "bicubic"):  # the recipes' ladder
        grid, *middle, recipe, larger = bench.configurations(model, batch_factor=4)
        assert (grid["sampling"], grid["patch_px"], grid["batch"]) == ("grid", 17, 64)
        # Larger grid patches only where context makes the paper's 17 px costly (unpadded networks).
        assert [(c["sampling"], c["patch_px"]) for c in middle] == ([("grid", 32)] if MODELS[model].context_px else [])
        assert recipe["sampling"] == larger["sampling"] == "random"
        assert larger["patch_px"] == recipe["patch_px"] and larger["batch"] == 4 * recipe["batch"]
    assert len(bench.configurations("quality", batch_factor=1)) == 2


def test_a_missing_data_folder_is_one_clear_line(bench, tmp_path):
    with pytest.raises(SystemExit, match="no such folder of training images"):
        bench.pick_images(tmp_path / "nowhere", 4)

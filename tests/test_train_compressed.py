"""Training on compressed-video patches (``--degradation compressed``): pools from the worker
processes feed the batches beside clean bicubic crops, runs reproduce from their seed, and the
workers are gone afterwards. Tiny synthetic images: no shared data needed."""
from __future__ import annotations

import ast
import json
import multiprocessing

import pytest
import torch

from vsr.errors import InputError
from vsr.train import TrainConfig, train


def _config(image_dir, out_dir, **overrides):
    # 8 px LR patches + 4 px context at x3: 48 px HR crops, which all three test images hold.
    options = dict(data_dirs=(image_dir,), val_dirs=(image_dir,), scale=3, out_dir=out_dir, epochs=2,
                   degradation="compressed", sampling="random", steps_per_epoch=6, batch_size=8, patch_px=8,
                   pool_patches=16, lr=3e-3, mixed_precision=False, progress=False)
    options.update(overrides)
    return TrainConfig(**options)


def _cli_args(image_dir, out_dir) -> list[str]:
    """`vsr train` arguments for what ``_config`` trains."""
    return ["train", str(image_dir), "--val", str(image_dir), "--scale", "3", "--out", str(out_dir),
            "--epochs", "2", "--degradation", "compressed", "--sampling", "random", "--steps-per-epoch", "6",
            "--batch-size", "8", "--patch-px", "8", "--pool-patches", "16", "--lr", "3e-3", "--fp32", "-q"]


def _log(out_dir):
    return [json.loads(line) for line in (out_dir / "espcn_x3_log.jsonl").read_text().splitlines()]


def _weights(out_dir):
    return torch.load(out_dir / "espcn_x3_last.pt", weights_only=False)["state_dict"]


def test_compressed_training_runs_on_pools_and_closes_its_workers(image_dir, tmp_path):
    result = train(_config(image_dir, tmp_path))
    log = _log(tmp_path)
    assert len(log) == 2
    # 6 of each 8 patches degraded: a pool of 16 serves 3 batches before the next replaces it,
    # so 12 steps take 4 pools.
    assert log[-1]["pools"] == 4
    for row in log:
        # Validated on compressed LR and on clean LR: two different sets of inputs.
        assert 15 < row["val_psnr_db"] < 60 and 15 < row["val_clean_psnr_db"] < 60
        assert row["val_psnr_db"] != row["val_clean_psnr_db"]
    checkpoint = torch.load(result.best_path, weights_only=True)
    assert checkpoint["degradation"] == "compressed" and checkpoint["scale"] == 3
    assert multiprocessing.active_children() == []


def test_compressed_training_reproduces_from_its_seed_and_uses_the_pools(image_dir, tmp_path):
    from click.testing import CliRunner

    from vsr.cli import main

    train(_config(image_dir, tmp_path / "a"))
    result = CliRunner().invoke(main, _cli_args(image_dir, tmp_path / "b"))
    assert result.exit_code == 0, result.output
    train(_config(image_dir, tmp_path / "clean", clean_fraction=1.0))
    a, b, clean = _weights(tmp_path / "a"), _weights(tmp_path / "b"), _weights(tmp_path / "clean")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    # All-clean batches give other weights: the degraded patches did reach the network.
    assert any(not torch.equal(a[name], clean[name]) for name in a)


def test_compressed_degradation_needs_random_crops(image_dir, tmp_path):
    with pytest.raises(InputError, match="--sampling random"):
        train(_config(image_dir, tmp_path, sampling="grid"))
    with pytest.raises(InputError, match="clean_fraction"):
        train(_config(image_dir, tmp_path, clean_fraction=1.5))


def test_recipe_flags_reach_the_pools_and_the_checkpoint(image_dir, tmp_path):
    """vsr train --soft-prob / --noise-prob / --exposure-prob train exactly what TrainConfig(compressed_recipe=...) trains
    (so the CLI can reproduce the shipped x3's recipe), differently from the default recipe, and the
    checkpoint records the recipe."""
    from click.testing import CliRunner

    from vsr.cli import main
    from vsr.degradations import CompressedDegradation

    args = [*_cli_args(image_dir, tmp_path / "cli"), "--soft-prob", "1", "--noise-prob", "0", "--exposure-prob", "0.5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    recipe = CompressedDegradation(soft_prob=1.0, noise_prob=0.0, exposure_prob=0.5)
    train(_config(image_dir, tmp_path / "api", compressed_recipe=recipe))
    train(_config(image_dir, tmp_path / "default"))
    cli, api, default = (_weights(tmp_path / name) for name in ("cli", "api", "default"))
    for name in cli:
        torch.testing.assert_close(cli[name], api[name], rtol=0, atol=0)
    assert any(not torch.equal(cli[name], default[name]) for name in cli)
    saved = torch.load(tmp_path / "cli" / "espcn_x3_last.pt", weights_only=False)["config"]["compressed_recipe"]
    saved = ast.literal_eval(saved)  # the checkpoint keeps each config field as text
    assert saved["soft_prob"] == 1.0 and saved["noise_prob"] == 0.0 and saved["exposure_prob"] == 0.5


def test_recipe_flags_need_the_compressed_degradation(image_dir, tmp_path):
    from click.testing import CliRunner

    from vsr.cli import main

    result = CliRunner().invoke(main, ["train", str(image_dir), "--scale", "3", "--out", str(tmp_path / "run"),
                                       "--exposure-prob", "0.5"])
    assert result.exit_code == 2
    assert "--degradation compressed" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_recipe_flags_state_the_recipe_defaults():
    """vsr train's help spells the recipe's defaults (the CLI imports no NumPy): they are its own."""
    from vsr.cli import RECIPE_OPTIONS
    from vsr.degradations import CompressedDegradation

    recipe = CompressedDegradation()
    for name, _, default in RECIPE_OPTIONS:
        assert getattr(recipe, name) == default, name
    # The two ranges the help text spells out are the recipe's too.
    text = {name: help_text for name, help_text, _ in RECIPE_OPTIONS}
    low, high = recipe.noise_sigma_levels
    assert f"{low:g}-{high:g} levels" in text["noise_prob"]
    low, high = recipe.coded_scene_crf
    assert f"x264 CRF {low}-{high}" in text["coded_scene_prob"]


def test_held_out_images_are_degraded_by_the_runs_recipe_without_its_scene_changes(image_dir, tmp_path):
    """The compressed held-out score (which picks the checkpoint) uses the run's own recipe:
    its LR noise and codecs, not the default's; its soft, exposed and coded scenes are left out, as
    they would change the images the score is about."""
    import numpy as np

    from vsr.degradations import CompressedDegradation
    from vsr.images import find_images
    from vsr.train import _validators

    paths = find_images(image_dir)

    def held_out(**recipe):
        config = _config(image_dir, tmp_path, compressed_recipe=CompressedDegradation(**recipe) if recipe else None)
        return _validators(config, paths)[0].pairs

    default, scenes = held_out(), held_out(soft_prob=1.0, exposure_prob=1.0, coded_scene_prob=1.0)
    for (hr, lr), (hr_scenes, lr_scenes) in zip(default, scenes):
        np.testing.assert_array_equal(hr, hr_scenes)
        np.testing.assert_array_equal(lr, lr_scenes)
    quiet, noisy = held_out(noise_prob=0.0), held_out(noise_prob=1.0)
    for (hr, lr_quiet), (hr_noisy, lr_noisy) in zip(quiet, noisy):
        np.testing.assert_array_equal(hr, hr_noisy)  # the targets are the images as they are
        assert not np.array_equal(lr_quiet, lr_noisy)

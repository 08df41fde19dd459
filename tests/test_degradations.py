"""The compressed-video degradation: real codecs really degrade, seeds reproduce, pools have the
promised shapes, and the worker processes give the same pools and go away when closed."""
from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

from vsr.degradations import (
    CompressedDegradation,
    PoolProducer,
    codec_round_trip,
    degrade_compressed,
    make_patch_pool,
    pool_seed,
)
from vsr.metrics import psnr

from tests.conftest import synthetic_rgb


def _luma(height: int, width: int, seed: int) -> np.ndarray:
    from vsr.color import rgb_to_y

    return rgb_to_y(synthetic_rgb(height, width, seed=seed))


def _pan(frames: int, side_px: int, seed: int = 3) -> list[np.ndarray]:
    """Frames of a slow pan over one synthetic image: what a codec meets in real video."""
    image = _luma(side_px + 4 * frames, side_px + 4 * frames, seed)
    return [image[2 * t : 2 * t + side_px, 3 * t : 3 * t + side_px] for t in range(frames)]


def _only(codec: str, **changes) -> CompressedDegradation:
    return replace(CompressedDegradation(), codec_weights=((codec, 1.0),), **changes)


# Quality settings at the two ends: nearly transparent, and heavily compressed.
LOW_HIGH = {"h264": (12, 40), "hevc": (12, 42), "mpeg4": (2, 24), "jpeg": (95, 10)}


@pytest.mark.parametrize("codec", sorted(LOW_HIGH))
def test_codec_round_trip_degrades_with_the_quality_setting(codec):
    frames = _pan(6, 96)
    good, bad = LOW_HIGH[codec]
    psnr_good = np.mean([psnr(a, b) for a, b in zip(frames, codec_round_trip(frames, codec, good))])
    psnr_bad = np.mean([psnr(a, b) for a, b in zip(frames, codec_round_trip(frames, codec, bad))])
    # A skipped codec would give infinite PSNR at both ends; a codec ignoring its setting, equal ones.
    assert 40 < psnr_good < 70, psnr_good
    assert psnr_bad < 32, psnr_bad
    assert psnr_good - psnr_bad > 8, (psnr_good, psnr_bad)


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_keyint_makes_intra_frames(codec):
    """keyint=1 codes every frame intra: with a still picture, later frames of an inter-coded clip
    copy the first (skip blocks), all-intra frames are each coded afresh and keep their own noise."""
    rng = np.random.default_rng(0)
    base = _luma(96, 96, 4).astype(np.float32)
    frames = [np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8) for _ in range(6)]
    inter = codec_round_trip(frames, codec, 30, keyint=8)
    intra = codec_round_trip(frames, codec, 30, keyint=1)
    change = lambda clip: np.mean([np.abs(clip[t].astype(int) - clip[t - 1]).mean() for t in range(1, 6)])  # noqa: E731
    assert change(intra) > 1.5 * change(inter), (change(intra), change(inter))


def test_recipe_draws_presets_and_keyframe_intervals():
    recipe = CompressedDegradation()
    assert len(recipe.video_presets) > 1 and len(recipe.keyint_frames) > 1
    with pytest.raises(ValueError, match="unknown preset"):
        replace(recipe, video_presets=(("warpspeed", 1.0),))
    with pytest.raises(ValueError, match="keyint"):
        replace(recipe, keyint_frames=((0, 1.0),))


def test_codec_round_trip_keeps_odd_sizes_and_frame_count():
    frames = _pan(3, 37)
    out = codec_round_trip(frames, "h264", 30)
    assert len(out) == 3 and all(f.shape == (37, 37) and f.dtype == np.uint8 for f in out)


@pytest.mark.parametrize("codec", ["h264", "hevc", "mpeg4", "jpeg"])
def test_degrade_compressed_is_reproducible_and_really_codes(codec):
    crops = _pan(4, 96)
    recipe = _only(codec, blur_prob=0.0, noise_prob=0.0, kernel_weights=(("area", 1.0),),
                   h264_crf=(40, 40), hevc_crf=(42, 42), mpeg4_qscale=(24, 24), jpeg_quality=(15, 15))
    a = degrade_compressed(crops, 3, np.random.default_rng(7), recipe)
    b = degrade_compressed(crops, 3, np.random.default_rng(7), recipe)
    assert all(x.shape == (32, 32) and x.dtype == np.float32 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    clean = degrade_compressed(crops, 3, np.random.default_rng(7), _only("none", blur_prob=0.0, noise_prob=0.0,
                                                                         kernel_weights=(("area", 1.0),)))
    # The clean LR is the area-downscaled crop in 8 bits; the coded one is far from it.
    import cv2

    expected = cv2.resize(crops[0].astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    assert np.abs(clean[0] * 255 - expected).max() <= 0.5 + 1e-3
    assert np.mean([psnr(c, x, peak=1.0) for c, x in zip(clean, a)]) < 33


def test_degrade_compressed_seed_changes_result():
    crops = _pan(4, 96)
    a = degrade_compressed(crops, 3, np.random.default_rng(1))
    b = degrade_compressed(crops, 3, np.random.default_rng(2))
    assert not all(np.array_equal(x, y) for x, y in zip(a, b))


def test_degrade_compressed_rejects_crops_off_the_scale_grid():
    with pytest.raises(ValueError, match="multiple of the scale"):
        degrade_compressed([_luma(64, 64, 0)], 3, np.random.default_rng(0))


def _images() -> list[np.ndarray]:
    return [_luma(200, 240, 0), _luma(180, 180, 1), _luma(260, 200, 2), _luma(60, 60, 3)]


@pytest.mark.parametrize("context_px", [0, 4])
def test_patch_pool_shapes_ranges_and_alignment(context_px):
    recipe = _only("none", blur_prob=0.0, noise_prob=0.0, kernel_weights=(("area", 1.0),))
    lr, hr = make_patch_pool(_images(), 3, 16, context_px, count=37, seed=5, recipe=recipe)
    side = 16 + 2 * context_px
    assert lr.shape == (37, side, side) and lr.dtype == np.float32
    assert hr.shape == (37, 48, 48) and hr.dtype == np.uint8
    assert 0.0 <= lr.min() and lr.max() <= 1.0
    # With no blur, noise or codec the LR centre is the HR target area-averaged: the pair is aligned.
    centre = lr[:, context_px : context_px + 16, context_px : context_px + 16] * 255
    target = hr.reshape(37, 16, 3, 16, 3).astype(np.float32).mean(axis=(2, 4))
    assert np.abs(centre - target).max() <= 0.5 + 1e-3


def _draws_only_when_on(stage, field: str) -> None:
    """A scene stage at probability 0 (the default) draws nothing from the pool's generator, so
    default pools are the ones made before its knob existed; any other value draws."""
    crops = [_luma(48, 48, 0)]
    for prob, draws in ((0.0, False), (0.5, True)):
        rng = np.random.default_rng(1)
        stage(crops, rng, replace(CompressedDegradation(), **{field: prob}))
        assert (rng.bit_generator.state != np.random.default_rng(1).bit_generator.state) == draws, (field, prob)


def test_soft_scenes_soften_the_target_and_keep_the_pair_aligned():
    """soft_prob makes the scene soft, target included (so the network learns to keep soft
    input soft), and the LR is still that soft target downscaled."""
    plain = _only("none", blur_prob=0.0, noise_prob=0.0, kernel_weights=(("area", 1.0),))
    _, sharp_hr = make_patch_pool(_images(), 3, 16, 4, count=64, seed=5, recipe=plain)
    lr, hr = make_patch_pool(_images(), 3, 16, 4, count=64, seed=5, recipe=replace(plain, soft_prob=1.0))

    def detail(x):
        return float(np.abs(np.diff(x.astype(np.float32), axis=2)).mean())

    assert detail(hr) < 0.8 * detail(sharp_hr)
    centre = lr[:, 4:20, 4:20] * 255
    assert np.abs(centre - hr.reshape(64, 16, 3, 16, 3).astype(np.float32).mean(axis=(2, 4))).max() <= 0.5 + 1e-3
    from vsr.degradations import _soften

    _draws_only_when_on(_soften, "soft_prob")
    with pytest.raises(ValueError, match="soft_prob"):
        CompressedDegradation(soft_prob=1.5)


def test_exposed_scenes_clip_the_target_and_keep_the_pair_aligned():
    """exposure_prob stretches and clips the scene, target included: the pools then hold blown
    highlights and crushed blacks (flat 255 and 0 plateaus in the target, which the network must
    keep flat), and the LR is still that target downscaled."""
    plain = _only("none", blur_prob=0.0, noise_prob=0.0, kernel_weights=(("area", 1.0),))
    _, normal_hr = make_patch_pool(_images(), 3, 16, 4, count=64, seed=5, recipe=plain)
    lr, hr = make_patch_pool(_images(), 3, 16, 4, count=64, seed=5,
                             recipe=replace(plain, exposure_prob=1.0, exposure_gain=(1.8, 2.0)))

    def clipped(x):
        return float(np.mean((x == 0) | (x == 255)))

    assert clipped(hr) > clipped(normal_hr) + 0.1
    centre = lr[:, 4:20, 4:20] * 255
    assert np.abs(centre - hr.reshape(64, 16, 3, 16, 3).astype(np.float32).mean(axis=(2, 4))).max() <= 0.5 + 1e-3
    # A plateau of the target is a plateau of the LR (area downscale of a flat block).
    flat = (hr.reshape(64, 16, 3, 16, 3) == 255).all(axis=(2, 4))
    assert flat.any() and np.all(centre[flat] >= 255 - 1e-3)
    from vsr.degradations import _expose

    _draws_only_when_on(_expose, "exposure_prob")
    for bad in (dict(exposure_prob=-0.1), dict(exposure_gain=(0.5, 2.0)), dict(exposure_gain=(2.0, 1.5))):
        with pytest.raises(ValueError, match="exposure"):
            CompressedDegradation(**bad)


def test_coded_scenes_encode_the_target_at_full_resolution_and_keep_the_pair_aligned():
    """coded_scene_prob puts the scene through x264 at its own resolution first, target
    included (the source video the LR was later made from), and the LR is still that coded
    target downscaled."""
    from vsr.degradations import _code_scene
    from vsr.metrics import psnr

    crops = _pan(8, 96)
    heavy = replace(CompressedDegradation(), coded_scene_prob=1.0, coded_scene_crf=(36, 36))
    coded = _code_scene(crops, np.random.default_rng(0), heavy)
    assert len(coded) == 8 and all(c.shape == f.shape and c.dtype == np.uint8 for c, f in zip(coded, crops))
    loss_db = np.mean([psnr(f, c, border_px=0) for f, c in zip(crops, coded)])
    mild = _code_scene(crops, np.random.default_rng(0), replace(heavy, coded_scene_crf=(18, 18)))
    assert 20 < loss_db < np.mean([psnr(f, c, border_px=0) for f, c in zip(crops, mild)]) < 60

    plain = _only("none", blur_prob=0.0, noise_prob=0.0, kernel_weights=(("area", 1.0),))
    lr, hr = make_patch_pool(_images(), 3, 16, 4, count=64, seed=5, recipe=replace(plain, coded_scene_prob=1.0))
    centre = lr[:, 4:20, 4:20] * 255
    assert np.abs(centre - hr.reshape(64, 16, 3, 16, 3).astype(np.float32).mean(axis=(2, 4))).max() <= 0.5 + 1e-3
    _draws_only_when_on(_code_scene, "coded_scene_prob")
    for bad in (dict(coded_scene_prob=1.5), dict(coded_scene_crf=(30, 20)), dict(coded_scene_crf=(20, 60))):
        with pytest.raises(ValueError, match="coded_scene"):
            CompressedDegradation(**bad)


def test_patch_pool_is_byte_identical_for_a_seed_and_differs_across_seeds():
    images = _images()
    a = make_patch_pool(images, 3, 12, 4, count=40, seed=11)
    b = make_patch_pool(images, 3, 12, 4, count=40, seed=11)
    c = make_patch_pool(images, 3, 12, 4, count=40, seed=12)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])


def test_patch_pool_with_too_small_images_is_one_clear_error():
    from vsr.errors import InputError

    with pytest.raises(InputError, match="smaller than 168px"):
        make_patch_pool([_luma(100, 100, 0)], 3, 48, 4, count=4, seed=0)


def test_default_pool_is_degraded_not_clean():
    """The default recipe changes the LR well beyond 8-bit rounding of a clean downscale."""
    recipe = replace(CompressedDegradation(), clips_per_encode=2)  # 16 codec draws in 256 patches
    lr, hr = make_patch_pool(_images(), 3, 16, 0, count=256, seed=3, recipe=recipe)
    clean = hr.reshape(256, 16, 3, 16, 3).astype(np.float32).mean(axis=(2, 4)) / 255
    per_patch_db = np.array([psnr(c, x, peak=1.0) for c, x in zip(clean, lr)])
    assert np.median(per_patch_db) < 40
    assert (per_patch_db < 32).mean() > 0.1  # heavy blur / noise / codec on a good share


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once reaped or dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_pool_producer_matches_make_patch_pool_and_closes_its_workers(tmp_path):
    from PIL import Image

    from vsr.degradations import read_luma_images

    paths = []
    for i, (h, w) in enumerate([(200, 240), (180, 180), (260, 200)]):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(synthetic_rgb(h, w, seed=i)).save(paths[-1])
    images = read_luma_images(paths)
    with PoolProducer(paths, 3, 12, 4, pool_size=24, seed=9, workers=2) as producer:
        pids = producer.pids
        pools = [producer.get(timeout_s=120) for _ in range(3)]
    for index, (lr, hr) in enumerate(pools):
        want_lr, want_hr = make_patch_pool(images, 3, 12, 4, 24, pool_seed(9, index))
        assert lr.tobytes() == want_lr.tobytes() and hr.tobytes() == want_hr.tobytes()
    assert not np.array_equal(pools[0][0], pools[1][0])
    assert not any(_alive(pid) for pid in pids)


def test_pool_producer_reports_a_worker_failure(tmp_path):
    from PIL import Image

    path = tmp_path / "small.png"
    Image.fromarray(synthetic_rgb(40, 40, seed=0)).save(path)
    with PoolProducer([path], 3, 48, 4, pool_size=8, seed=0, workers=1) as producer:
        with pytest.raises(RuntimeError, match="smaller than 168px"):
            producer.get(timeout_s=120)


_TRAINER = """
import sys, time
from vsr.degradations import PoolProducer
producer = PoolProducer(sys.argv[1:], 3, 12, 4, pool_size=24, seed=9, workers=1, prefetch=1)
producer.get(timeout_s=120)
print(producer.pids[0], flush=True)
sys.stdin.readline()  # the test's go: take one more pool (the worker went on while we waited)
producer.get(timeout_s=120)
print("second", flush=True)
time.sleep(600)
"""


def test_pool_workers_leave_ctrl_c_to_the_trainer_and_die_with_it(tmp_path):
    """A trainer killed outright (SIGKILL, the OOM killer) runs no clean-up: its patch-pool
    workers must not go on making pools for nobody. And Ctrl-C is the trainer's to handle."""
    import signal
    import subprocess
    import sys
    import time

    from PIL import Image

    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(synthetic_rgb(200, 220, seed=i)).save(paths[-1])
    trainer = subprocess.Popen([sys.executable, "-c", _TRAINER, *paths], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        worker = int(trainer.stdout.readline())
        os.kill(worker, signal.SIGINT)
        time.sleep(1.0)
        assert _alive(worker), "a pool worker died of the SIGINT its trainer decides about"
        trainer.stdin.write("go\n")
        trainer.stdin.flush()
        assert trainer.stdout.readline().strip() == "second"  # it still makes pools after the SIGINT
        trainer.kill()
        trainer.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the pool worker outlived its SIGKILLed trainer"
    finally:
        trainer.kill()
        trainer.wait(timeout=10)


@pytest.mark.needs_data
@pytest.mark.parametrize("codec", ["h264", "hevc", "mpeg4"])
def test_codec_round_trip_on_real_video_frames(data_dir, codec):
    """Real camera frames at x3 LR size: a heavy setting loses far more than a light one."""
    import cv2

    from vsr.media.decode import VideoReader

    with VideoReader(data_dir / "video" / "car_traffic_640x360.mp4") as reader:
        lumas = [f.luma for f in reader.frames(8)]
    lr = [cv2.resize(y[:360, :636], (212, 120), interpolation=cv2.INTER_AREA) for y in lumas]
    good, bad = LOW_HIGH[codec]
    psnr_good = np.mean([psnr(a, b) for a, b in zip(lr, codec_round_trip(lr, codec, good))])
    psnr_bad = np.mean([psnr(a, b) for a, b in zip(lr, codec_round_trip(lr, codec, bad))])
    assert psnr_good > 40 and psnr_bad < 34 and psnr_good - psnr_bad > 8, (psnr_good, psnr_bad)


@pytest.mark.needs_data
def test_patch_pool_from_real_photos(data_dir):
    from vsr.degradations import read_luma_images
    from vsr.images import find_images

    images = read_luma_images(find_images(data_dir / "set5"))
    lr, hr = make_patch_pool(images, 4, 24, 4, count=32, seed=0)
    assert lr.shape == (32, 32, 32) and hr.shape == (32, 96, 96)
    # The LR centre still follows its HR target (alignment survives blur, noise and codec).
    centre = lr[:, 4:28, 4:28].reshape(32, -1)
    target = hr.reshape(32, 24, 4, 24, 4).mean(axis=(2, 4)).reshape(32, -1) / 255
    correlation = [np.corrcoef(a, b)[0, 1] for a, b in zip(centre, target) if b.std() > 0.02]
    assert np.median(correlation) > 0.9, correlation

"""vsr.checkpoint: the best-weights and last-state files keep the layout every earlier version
wrote, so shipped weights load and runs written before still resume; writes are atomic."""
from __future__ import annotations

import json

import pytest
import torch

from vsr.checkpoint import (CheckpointPaths, LastState, read_last_state, read_weights, write_best_weights,
                            write_last_state)
from vsr.errors import InputError
from vsr.train import TrainConfig, train

#: The keys (in order) the training code wrote before vsr.checkpoint existed.
BEST_KEYS = ["arch", "model", "options", "scale", "state_dict", "epoch", "val_psnr_db", "degradation", "int8_aware"]
LAST_KEYS = ["scale", "model", "state_dict", "ema_state_dict", "optimizer", "scheduler", "generator", "torch_rng",
             "epoch", "best_val_psnr_db", "best_epoch", "wall_seconds", "steps", "config"]
#: Keys added after them, at the end.
LAST_KEYS_ADDED = ["arch", "options"]


def _config(image_dir, out_dir, **overrides):
    options = dict(data_dirs=(image_dir,), scale=3, out_dir=out_dir, epochs=1, batch_size=8, lr=3e-3,
                   mixed_precision=False, progress=False)
    options.update(overrides)
    return TrainConfig(**options)


def _log(out_dir):
    return [json.loads(line) for line in (out_dir / "espcn_x3_log.jsonl").read_text().splitlines()]


def test_every_shipped_weights_file_reads_and_loads_into_its_network():
    from vsr.models.registry import MODELS
    from vsr.models.weights import checkpoint_model, load_model

    for info in MODELS.values():
        for scale in info.scales:
            path = info.weights_path(scale, "pt")
            if not path.is_file():
                continue
            checkpoint = read_weights(path)
            assert checkpoint["scale"] == scale and checkpoint_model(checkpoint).name == info.name, path
            load_model(scale, path)  # the state dict fits the network the file names


def test_read_weights_names_the_file_that_is_not_weights(tmp_path):
    with pytest.raises(InputError, match="no such weights file"):
        read_weights(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(InputError, match="not a vsr checkpoint"):
        read_weights(tmp_path / "text.pt")
    torch.save({"state_dict": {}}, tmp_path / "noscale.pt")
    with pytest.raises(InputError, match="no 'scale'"):
        read_weights(tmp_path / "noscale.pt")


def test_a_run_writes_both_files_in_the_layout_of_earlier_versions(image_dir, tmp_path):
    result = train(_config(image_dir, tmp_path))
    paths = CheckpointPaths(tmp_path, "espcn_x3")
    assert result.best_path == paths.best == tmp_path / "espcn_x3.pt"
    assert list(read_weights(paths.best)) == BEST_KEYS
    raw = torch.load(paths.last, weights_only=False)
    assert list(raw) == LAST_KEYS + LAST_KEYS_ADDED  # the grid has no crops generator: no crops_rng
    assert list(LastState.from_dict(raw).to_dict()) == LAST_KEYS + LAST_KEYS_ADDED
    crops = train(_config(image_dir, tmp_path / "crops", sampling="random", steps_per_epoch=2, patch_px=8))
    keys = list(torch.load(crops.best_path.with_name("espcn_x3_last.pt"), weights_only=False))
    assert keys == LAST_KEYS[:8] + ["crops_rng"] + LAST_KEYS[8:] + LAST_KEYS_ADDED


def test_resume_continues_from_a_last_state_file_of_an_older_layout(image_dir, tmp_path):
    """A file saved with plain torch.save in the old dict layout, without the keys added later
    (the weight average, the step count), resumes: the average starts from the raw weights."""
    train(_config(image_dir, tmp_path, epochs=1))
    path = tmp_path / "espcn_x3_last.pt"
    old = torch.load(path, weights_only=False)
    del old["ema_state_dict"], old["steps"], old["model"], old["arch"], old["options"]
    torch.save(old, path)
    state = read_last_state(path)
    assert state.steps == 0 and state.model == "espcn" and state.ema_state_dict is state.state_dict
    assert state.arch is None and list(state.to_dict()) == LAST_KEYS  # written back as it was read
    result = train(_config(image_dir, tmp_path, epochs=2, resume=True))
    assert result.epochs_run == 2 and [row["epoch"] for row in _log(tmp_path)] == [1, 2]
    assert torch.load(path, weights_only=False)["epoch"] == 2


def test_a_failed_write_keeps_the_previous_file_whole(tmp_path, monkeypatch):
    from vsr.models.registry import get_model

    path = tmp_path / "espcn_x3.pt"
    info = get_model("espcn")
    weights = info.build(3).state_dict()
    write_best_weights(path, info, 3, weights, epoch=1, val_psnr_db=30.0, degradation="bicubic", int8_aware=False)

    def broken_save(obj, target):
        with open(target, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_best_weights(path, info, 3, weights, epoch=2, val_psnr_db=31.0, degradation="bicubic",
                           int8_aware=False)
    with pytest.raises(OSError, match="disk full"):
        write_last_state(tmp_path / "espcn_x3_last.pt", LastState.from_dict({
            "scale": 3, "state_dict": weights, "optimizer": {}, "scheduler": {}, "generator": None,
            "torch_rng": None, "epoch": 1, "best_val_psnr_db": 30.0, "best_epoch": 1, "wall_seconds": 1.0}))
    monkeypatch.undo()
    assert read_weights(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["espcn_x3.pt"]  # no temporary file left behind


def test_the_last_state_of_a_one_off_network_loads_without_its_registry_entry(image_dir, tmp_path, monkeypatch):
    """A run of a network registered for that run only (as training/realtime/pilot_s2.py does)
    leaves a last-state file that says what the network is, so its weight average can ship
    (tools/ship_model.py --ema) from a process that never registered it."""
    from dataclasses import replace

    from vsr.models import registry
    from vsr.models.weights import checkpoint_model

    one_off = replace(registry.get_model("realtime"), name="one-off", options=(("blocks", 1), ("channels", 8)))
    monkeypatch.setitem(registry.MODELS, "one-off", one_off)
    train(_config(image_dir, tmp_path, model="one-off", sampling="random", steps_per_epoch=2, patch_px=8))
    monkeypatch.delitem(registry.MODELS, "one-off")
    last = read_weights(tmp_path / "one-off_x3_last.pt")  # as ship_model reads it
    info = checkpoint_model(last)
    assert info.arch == "reparam" and dict(info.options) == {"blocks": 1, "channels": 8}
    network = info.build(3)
    network.load_state_dict(last["ema_state_dict"])
    assert network.channels == 8 and network.blocks == 1

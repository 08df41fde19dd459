"""The two checkpoint files of a training run (``vsr train --out RUN``), written and read here only.

- ``MODEL_xN.pt``, the best weights: what ships in ``vsr/models/weights/`` and what ``--weights``
  and ``--init`` take. A dict with ``scale`` and ``state_dict`` (the weight average), what the
  network is (``arch``, ``model``, ``options``) and how it scored. Read with ``weights_only``: a
  file from anyone holds only tensors and plain values, so loading it can never run code.
- ``MODEL_xN_last.pt``, the last state: everything ``--resume`` needs to continue the run exactly
  (raw weights and their average, Adam, scheduler, random states, counters), rewritten after every
  epoch. It holds generator states and is only ever read from the run's own folder.

Both are written atomically (``cache.atomic_path``): a run killed while saving keeps the previous
file whole. The keys and their order are those every earlier version wrote, so old runs still load
and resume; keys added over time (``ema_state_dict``, ``steps``, ``crops_rng``) have defaults.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError


@dataclass(frozen=True)
class CheckpointPaths:
    """Where a run keeps its two checkpoints: ``OUT/STEM.pt`` and ``OUT/STEM_last.pt``."""

    out_dir: Path
    #: ``MODEL_xN``, e.g. ``espcn_x3``.
    stem: str

    @property
    def best(self) -> Path:
        return self.out_dir / f"{self.stem}.pt"

    @property
    def last(self) -> Path:
        return self.out_dir / f"{self.stem}_last.pt"


def read_weights(path: os.PathLike | str) -> dict:
    """A weights file (a best-weights file of ``vsr train``, or a shipped one): a dict with at
    least 'scale' and 'state_dict'. Anything else is an ``InputError`` naming the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such weights file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise InputError(f"{path}: not a vsr checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "scale" not in checkpoint:
        raise InputError(f"{path}: not a vsr checkpoint (no 'scale' / 'state_dict')")
    return checkpoint


def write_best_weights(path: Path, info, scale: int, state_dict: dict, *, epoch: int, val_psnr_db: float,
                       degradation: str, int8_aware: bool) -> None:
    """The best-weights file: ``state_dict`` as the network ``info`` (a ``ModelInfo``) at ``scale``,
    with the epoch, validation PSNR and training input it scored them on."""
    _save(path, {
        "arch": info.arch,
        "model": info.name,
        "options": info.options_at(scale),
        "scale": scale,
        "state_dict": state_dict,
        "epoch": epoch,
        "val_psnr_db": val_psnr_db,
        "degradation": degradation,
        "int8_aware": int8_aware,
    })


@dataclass
class LastState:
    """The resumable state of a run after an epoch: the ``MODEL_xN_last.pt`` file's keys."""

    scale: int
    model: str
    #: The raw weights, and their moving average (the raw weights again without one).
    state_dict: dict
    ema_state_dict: dict
    optimizer: dict
    scheduler: dict
    #: torch.Generator states (uint8 tensors): the batch order and flips, torch's global
    #: generator, and the random crops' generator (None for the patch grid, which has none).
    generator: object
    torch_rng: object
    crops_rng: object | None
    #: Epochs done, and the best validation so far.
    epoch: int
    best_val_psnr_db: float
    best_epoch: int
    #: Wall time of the run up to here, over every resumed part.
    wall_seconds: float
    #: Optimiser steps over the whole run (the learning-rate warm-up and EMA warm-up follow it).
    steps: int
    #: Every option as text: a record of how the run was started; resuming reads none of it.
    config: dict
    #: What the network is, as the best-weights file says it (``arch``, ``options``): so the file's
    #: weight average can ship (``tools/ship_model.py --ema``) even where ``model`` is a one-off
    #: entry registered for that run only. None in files of earlier versions.
    arch: str | None = None
    options: dict | None = None

    def to_dict(self) -> dict:
        """The file's dict, keys in the order earlier versions wrote them, then the later ones."""
        crops = {} if self.crops_rng is None else {"crops_rng": self.crops_rng}
        network = {} if self.arch is None else {"arch": self.arch, "options": self.options or {}}
        return {
            "scale": self.scale, "model": self.model,
            "state_dict": self.state_dict, "ema_state_dict": self.ema_state_dict,
            "optimizer": self.optimizer, "scheduler": self.scheduler,
            "generator": self.generator, "torch_rng": self.torch_rng, **crops,
            "epoch": self.epoch, "best_val_psnr_db": self.best_val_psnr_db, "best_epoch": self.best_epoch,
            "wall_seconds": self.wall_seconds, "steps": self.steps, "config": self.config, **network,
        }

    @classmethod
    def from_dict(cls, state: dict) -> "LastState":
        """A file's dict, with the defaults of the keys older versions did not write."""
        return cls(
            scale=state["scale"], model=state.get("model", "espcn"),
            state_dict=state["state_dict"], ema_state_dict=state.get("ema_state_dict", state["state_dict"]),
            optimizer=state["optimizer"], scheduler=state["scheduler"],
            generator=state["generator"], torch_rng=state["torch_rng"], crops_rng=state.get("crops_rng"),
            epoch=state["epoch"], best_val_psnr_db=state["best_val_psnr_db"], best_epoch=state["best_epoch"],
            wall_seconds=state["wall_seconds"], steps=state.get("steps", 0), config=state.get("config", {}),
            arch=state.get("arch"), options=state.get("options"),
        )


def config_record(config) -> dict[str, str]:
    """A ``TrainConfig`` as ``LastState.config`` keeps it: each field's ``str``."""
    from dataclasses import asdict

    return {key: str(value) for key, value in asdict(config).items()}


def write_last_state(path: Path, state: LastState) -> None:
    _save(path, state.to_dict())


def read_last_state(path: Path) -> LastState:
    """The state ``write_last_state`` wrote (any version's). Not ``weights_only``: the file holds
    optimiser and scheduler states as pickled, and comes from the run's own folder."""
    import torch

    return LastState.from_dict(torch.load(path, map_location="cpu", weights_only=False))


def _save(path: Path, obj: dict) -> None:
    """``torch.save`` under a temporary name, renamed over ``path``; the mode a plain open()
    would give, since others read runs' weights."""
    import torch

    from .cache import atomic_path

    with atomic_path(path, shared=True) as tmp:
        torch.save(obj, tmp)

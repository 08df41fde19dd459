"""An upscaler must leave a plateau as it is, at every level: white walls, skies, titles and
letterbox bars are flat, and full-range video (phones) has them at 255 and 0. A ReLU network
with biases can drift at levels its training rarely saw flat (training/realtime/flat_response.py;
every shipped model: benchmarks/results/flat_response_shipped.txt). Checked here for the rungs
`vsr run` and `vsr live` pick by default."""
from __future__ import annotations

import pytest
import torch

LEVELS = (0, 16, 64, 128, 192, 235, 245, 250, 254, 255)
#: Largest change of a flat level, in 8-bit levels: one rounding step.
MAX_DRIFT_LEVELS = 1.0
DEFAULT_RUNGS = ("realtime", "realtime-compressed", "realtime-compressed-plus")


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", DEFAULT_RUNGS)
def test_default_rungs_keep_flat_input_flat(name, scale):
    from vsr.models.registry import get_model
    from vsr.models.weights import load_model

    info = get_model(name)
    if not info.weights_path(scale).is_file():
        pytest.skip(f"{name} x{scale}'s weights are not in this installation")
    network = load_model(scale, model=name)
    levels = torch.tensor(LEVELS, dtype=torch.float32)[:, None, None, None] / 255
    with torch.no_grad():
        out = network(levels.expand(-1, 1, 32, 40)).clamp(0, 1) * 255
    # The interior: zero padding at the frame's edges is another matter.
    margin = (info.receptive_px + 2) * scale
    drift = (out[..., margin:-margin, margin:-margin] - levels * 255).abs().amax(dim=(1, 2, 3))
    worst = {level: round(float(d), 2) for level, d in zip(LEVELS, drift) if d > MAX_DRIFT_LEVELS}
    assert not worst, f"{name} x{scale} moves flat input by more than {MAX_DRIFT_LEVELS} level: {worst}"

"""What `vsr models` shows: every shipped model with its size, training input, Set5 scores and
int8 loss, as records (``--json``) or a table."""
from __future__ import annotations


def catalog() -> list[dict]:
    """One record per shipped model, fastest first."""
    from .backends.int8 import recorded_loss_db
    from .models.registry import IMAGE_MODEL, shipped_models

    rows = []
    for info in shipped_models():
        scores = info.card_scores()
        int8_loss = {str(s): recorded_loss_db(info.weights_path(s)) for s in info.scales}
        rows.append({
            "name": info.name, "arch": info.arch, "summary": info.summary, "default": info.name == IMAGE_MODEL,
            "scales": list(info.scales), "params": {str(s): info.params(s) for s in info.scales},
            "degradation": info.degradation, "receptive_px": info.receptive_px,
            "set5_psnr_db": {str(s): round(scores[s]["vsr_psnr_db"], 2) for s in info.scales if s in scores},
            "set5_bicubic_psnr_db": {str(s): round(scores[s]["bicubic_psnr_db"], 2) for s in info.scales if s in scores},
            "int8_set5_loss_db": {s: loss for s, loss in int8_loss.items() if loss is not None},
        })
    return rows


def catalog_table(rows: list[dict]) -> str:
    """The records as `vsr models` prints them."""
    lines = ["vsr run and vsr live pick with --model auto (the default); (default) marks vsr upscale's model."]
    header = (f"{'model':<20} {'arch':<9} {'params x3':>9}  {'input':<10} {'Set5 PSNR dB x2 / x3 / x4':<26} "
              f"{'int8 -dB x2/x3/x4':<18} summary")
    lines += [header, "-" * len(header)]
    for row in rows:
        psnr = " / ".join(f"{row['set5_psnr_db'].get(str(s), float('nan')):.2f}" for s in (2, 3, 4))
        losses = row["int8_set5_loss_db"]
        int8 = "/".join(f"{losses[str(s)]:.2f}" if str(s) in losses else "?" for s in (2, 3, 4))
        name = row["name"] + (" (default)" if row["default"] else "")  # vsr upscale's; run and live pick
        lines.append(f"{name:<20} {row['arch']:<9} {row['params'].get('3', 0):>9,}  {row['degradation']:<10} "
                     f"{psnr:<26} {int8:<18} {row['summary']}")
    return "\n".join(lines)

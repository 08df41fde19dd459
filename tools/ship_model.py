"""Turn a training checkpoint into shipped weights (how every file in vsr/models/weights was made).

    python tools/ship_model.py CHECKPOINT --set5 ../shared/data/set5 [--name NAME] [--ema]

Writes, for the checkpoint's model and scale, into vsr/models/weights/:
- NAME_xS.pt: only what inference needs (scale, model, arch, options, state_dict) plus where it
  came from (steps, training seconds, the training config); stored in fp16 when that moves
  Set5 PSNR by less than 0.01 dB (half the bytes), else fp32;
- NAME_xS.onnx: `vsr export` of those weights;
- NAME_set5_xS.json: `vsr eval --json` of the .onnx on onnxruntime (what `vsr models` shows).

``--ema``: take the moving average from a `_last.pt` resume file (its ``ema_state_dict``).
``--int8-aware``: the checkpoint is an int8-aware fine-tune (``vsr train --int8-aware``, e.g.
``tools/train_ladder.py --int8-aware``); write only NAME_xS.int8.onnx, the network
``--precision int8`` quantises in place of NAME_xS.onnx (``vsr.backends.int8.int8_source``; its
Set5 cost is measured by ``benchmarks/int8_quality.py``).
Set5 is only measured here, never used to choose anything during training.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "vsr" / "models" / "weights"
#: Largest Set5 PSNR change fp16 storage may cause (the issue's bound).
FP16_TOLERANCE_DB = 0.01


def _set5_psnr(network, scale: int, set5: Path) -> float:
    import torch

    from vsr.evaluate import evaluate

    def upscale(luma):
        with torch.inference_mode():
            return network(torch.from_numpy(luma[None, None].astype("float32"))).clamp(0, 1)[0, 0].numpy()

    return evaluate([set5], scale, upscale, backend_name="torch").mean("vsr_psnr_db")


def main() -> int:
    import torch

    from vsr.export import export_onnx
    from vsr.checkpoint import read_weights
    from vsr.models.weights import checkpoint_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--set5", type=Path, required=True)
    parser.add_argument("--name", default=None, help="Shipped name (default: the checkpoint's model).")
    parser.add_argument("--ema", action="store_true", help="Use the checkpoint's ema_state_dict.")
    parser.add_argument("--int8-aware", action="store_true", help="Write only NAME_xS.int8.onnx (see above).")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args()

    checkpoint = read_weights(args.checkpoint)
    info = checkpoint_model(checkpoint)
    scale, name = checkpoint["scale"], args.name or info.name
    state = checkpoint["ema_state_dict"] if args.ema else checkpoint["state_dict"]
    network = info.build(scale).eval()
    network.load_state_dict({k: v.float() for k, v in state.items()})
    if args.int8_aware:
        if not checkpoint.get("int8_aware"):
            print(f"{args.checkpoint}: not an int8-aware fine-tune (vsr train --int8-aware)", file=sys.stderr)
            return 1
        onnx = export_onnx(network.collapse() if hasattr(network, "collapse") else network,
                           args.out / f"{name}_x{scale}.int8.onnx")
        print(f"wrote {onnx} (int8-aware weights of {args.checkpoint.name}, epoch {checkpoint.get('epoch')})")
        return 0
    def runnable():
        # A re-parameterised network ships its training form (so --init and fine-tunes can start
        # from it) and runs, is scored and exported as its collapse.
        return network.collapse() if hasattr(network, "collapse") else network

    fp32_db = _set5_psnr(runnable(), scale, args.set5)
    half = {k: v.half() for k, v in network.state_dict().items()}
    network.load_state_dict({k: v.float() for k, v in half.items()})
    fp16_db = _set5_psnr(runnable(), scale, args.set5)
    use_fp16 = abs(fp16_db - fp32_db) < FP16_TOLERANCE_DB
    if not use_fp16:
        network.load_state_dict({k: v.float() for k, v in state.items()})
    print(f"{name} x{scale}: Set5 {fp32_db:.4f} dB in fp32, {fp16_db:.4f} dB from fp16 storage "
          f"-> stored in {'fp16' if use_fp16 else 'fp32'}")
    shipped = {
        "scale": scale, "model": name, "arch": info.arch, "options": info.options_at(scale),
        "state_dict": half if use_fp16 else {k: v.float() for k, v in state.items()},
        "source": {k: checkpoint[k] for k in ("steps", "wall_seconds", "epoch", "best_val_psnr_db", "config")
                   if k in checkpoint} | {"file": args.checkpoint.name, "ema": args.ema},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    pt = args.out / f"{name}_x{scale}.pt"
    torch.save(shipped, pt)
    onnx = export_onnx(runnable(), args.out / f"{name}_x{scale}.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run([sys.executable, "-m", "vsr", "eval", "--data", str(args.set5.resolve()), "--scale", str(scale),
                                 "--weights", str(onnx.resolve()), "--json"], capture_output=True, text=True, cwd=tmp)
    if result.returncode:
        print(result.stderr, file=sys.stderr)
        return 1
    (args.out / f"{name}_set5_x{scale}.json").write_text(result.stdout)
    print(f"wrote {pt} ({pt.stat().st_size / 1024:.0f} KiB), {onnx}, {name}_set5_x{scale}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

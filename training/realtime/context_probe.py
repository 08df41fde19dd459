"""Does a network's global context (``reparam.GlobalContext``, ``pilot_s2.py --context``) adapt?

    python training/realtime/context_probe.py CHECKPOINT [SET5_DIR]

Scores Set5 with each picture's own context, and with the context of the same picture after an x264
CRF-35 round trip of its LR luma; then the coded pictures, with their own context and the clean
picture's. A context that tells clean from coded input loses on both swaps; one that does not, not at
all (twelfth session: 0.01-0.03 dB, training/realtime/commands.txt)."""
import io, sys
import av, numpy as np, torch
from pathlib import Path
from vsr.checkpoint import read_weights
from vsr.evaluate import luma_pairs
from vsr.metrics import psnr
from vsr.models.weights import checkpoint_model
from vsr.color import to_uint8

def coded(lr, crf=35):
    h, w = lr.shape[0] // 2 * 2, lr.shape[1] // 2 * 2
    y = to_uint8(lr[:h, :w] * 255)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=30); s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": str(crf), "preset": "medium"}
        planes = np.concatenate([y, np.full((h // 2, w), 128, np.uint8)])  # Y, then U and V (h/2 x w/2 each)
        f = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        for p in s.encode(f): out.mux(p)
        for p in s.encode(): out.mux(p)
    buf.seek(0)
    with av.open(buf) as inp:
        frame = next(inp.decode(video=0))
    return frame.to_ndarray()[:h].astype(np.float64) / 255.0, (h, w)

def run(lr, context_from=None):  # with the network loaded below
    x = torch.from_numpy(lr.astype(np.float32))[None, None]
    original = net.context.forward
    if context_from is not None:
        src = torch.from_numpy(context_from.astype(np.float32))[None, None]
        feats = net.acts[0](net.convs[0](src - 0.5))
        fixed = original(feats, src)  # the source picture's codec statistics too, where the context reads them
        net.context.forward = lambda *args: fixed
    try:
        with torch.no_grad():
            return to_uint8(net(x).clamp(0, 1)[0, 0].numpy() * 255)
    finally:
        net.context.forward = original

if __name__ == '__main__':
    ck = read_weights(sys.argv[1]); scale = ck["scale"]
    net = checkpoint_model(ck).build(scale).eval()
    net.load_state_dict({k: v.float() for k, v in ck["state_dict"].items()})
    net = net.collapse()
    rows = []
    set5 = Path(sys.argv[2] if len(sys.argv) > 2 else "../shared/data/set5")
    for name, hr, lr in luma_pairs(sorted(set5.glob("*.png")), scale):
        c, (h, w) = coded(lr)
        lr, hr = lr[:h, :w], hr[:h * scale, :w * scale]
        rows.append((psnr(hr, run(lr), border_px=scale), psnr(hr, run(lr, c), border_px=scale),
                     psnr(hr, run(c), border_px=scale), psnr(hr, run(c, lr), border_px=scale)))
    m = np.mean(rows, axis=0)
    print(f"{Path(sys.argv[1]).name}: clean input, own context {m[0]:.3f}, coded picture's context {m[1]:.3f} | "
          f"coded input, own context {m[2]:.3f}, clean picture's context {m[3]:.3f}")

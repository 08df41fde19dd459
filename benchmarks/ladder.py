"""The speed/quality ladder: Set5 PSNR (each scale) and engine fps (each backend) of every shipped model.

    python benchmarks/ladder.py                       # measure here, write results and chart
    python benchmarks/ladder.py --device cuda         # the GPU backends (adds to the same JSON)
    python benchmarks/ladder.py --chart-only          # redraw the chart from the JSON

Quality: `vsr eval`'s convention on Set5 (../shared/data/set5), computed with ONNX Runtime fp32.
Speed: the engine alone (what `--model auto` calibrates: ``vsr.tuning.model_choice.measure_engine_fps``)
on a 640x360 luma plane at x3, the size docs/results.md's `vsr run` speed table upscales to 1080p, batch 1,
every thread of the machine, at the precision ``--precision auto`` picks. Both ladders: the models
for clean input and those trained for compressed input (``--degradation``), whose Set5 score says
what they cost on clean input. Results are keyed by machine, so a CPU run and a GPU run (made on
different machines) sit side by side in benchmarks/results/ladder.json; the chart (ladder.png)
plots Set5 x3 PSNR against fps, one series per machine, backend and ladder.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SET5 = REPO.parent / "shared" / "data" / "set5"
SIZE_PX = (640, 360)
SCALE = 3


def measure_quality(models, set5: Path) -> dict:
    from vsr.backends import create_backend
    from vsr.evaluate import evaluate

    quality = {}
    for info in models:
        quality[info.name] = {}
        for scale in info.scales:
            engine = create_backend("onnxruntime", scale, model=info.name)
            try:
                report = evaluate([set5], scale, lambda luma: engine.upscale_luma(luma)[0, 0], backend_name="onnxruntime")
            finally:
                engine.close()
            quality[info.name][str(scale)] = {"psnr_db": round(report.mean("vsr_psnr_db"), 4),
                                              "ssim": round(report.mean("vsr_ssim"), 4),
                                              "bicubic_psnr_db": round(report.mean("bicubic_psnr_db"), 4)}
            print(f"{info.name} x{scale}: Set5 {quality[info.name][str(scale)]['psnr_db']:.2f} dB", flush=True)
    return quality


def measure_speed(models, device: str, backends: list[str]) -> dict:
    from vsr.backends import BackendUnavailable, EngineSpec
    from vsr.models.clip_context import timing_context
    from vsr.tuning.model_choice import measure_engine_fps

    speed = {}
    for backend in backends:
        for info in models:
            # A network with a global context is timed as `vsr run` runs it: a clip's context folded in.
            spec = EngineSpec(scale=SCALE, model=info.name, backend=backend, device=device,
                              context=timing_context(info, SCALE))
            try:
                timing = measure_engine_fps(spec, *SIZE_PX)
            except BackendUnavailable as exc:
                print(f"{backend}: unavailable ({exc})", flush=True)
                break
            speed.setdefault(backend, {})[info.name] = round(timing.fps, 2)
            busy = (f" (other programs busy: waited for a core {timing.waiting_share:.0%} of the time)"
                    if timing.busy else "")
            print(f"{backend} {device} {info.name}: {timing.fps:.1f} fps{busy}", flush=True)
    return speed


def draw(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quality = results["quality"]
    fig, ax = plt.subplots(figsize=(9, 5.6), dpi=120)
    markers = iter("osD^v<>")
    for machine, run in results["speed"].items():
        for backend, fps in run["fps"].items():
            marker = next(markers, "o")
            line = None
            for ladder in ("bicubic", "compressed"):
                names = [n for n in fps if n in quality and _degradation(n) == ladder]
                if not names:
                    continue
                xs = [fps[n] for n in names]
                ys = [quality[n][str(SCALE)]["psnr_db"] for n in names]
                # One colour per machine and backend; the compressed-input ladder dashed, hollow markers.
                style = {} if ladder == "bicubic" else {"linestyle": "--", "markerfacecolor": "none"}
                label = f"{backend}, {run['label']}" + ("" if ladder == "bicubic" else ", compressed-input models")
                (line,) = ax.plot(xs, ys, marker=marker, label=label,
                                  **style, **({"color": line.get_color()} if line is not None else {}))
                for n, x, y in zip(names, xs, ys):
                    ax.annotate(n, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    bicubic = next(iter(quality.values()))[str(SCALE)]["bicubic_psnr_db"]
    ax.axhline(bicubic, color="grey", linestyle=":", label=f"bicubic ({bicubic:.2f} dB)")
    ax.axvline(30, color="grey", linestyle="--", linewidth=0.8)
    ax.text(30, ax.get_ylim()[0], " 30 fps", fontsize=8, color="grey", va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel(f"engine fps, {SIZE_PX[0]}x{SIZE_PX[1]} -> x{SCALE} (log scale)")
    ax.set_ylabel(f"Set5 x{SCALE} PSNR on Y (dB)")
    ax.set_title("vsr model ladder: quality against speed")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)


def write_table(results: dict, path: Path) -> None:
    quality = results["quality"]
    lines = ["# Model ladder: quality and speed", "",
             "`python benchmarks/ladder.py` (raw numbers: ladder.json; chart: ladder.png).", "",
             "Set5 PSNR (dB) / SSIM on Y, `vsr eval` convention, ONNX Runtime fp32:", "",
             "| model | trained for | params x3 | x2 | x3 | x4 |", "|---|---|---:|---:|---:|---:|"]
    from vsr.models.registry import MODELS

    for name, scores in quality.items():
        cells = [f"{scores[s]['psnr_db']:.2f} / {scores[s]['ssim']:.4f}" if s in scores else "—" for s in "234"]
        kind = "clean input" if _degradation(name) == "bicubic" else "compressed input"
        lines.append(f"| {name} | {kind} | {MODELS[name].params(3):,} | " + " | ".join(cells) + " |")
    first = next(iter(quality.values()))
    lines.append("| bicubic | | | " + " | ".join(f"{first[s]['bicubic_psnr_db']:.2f}" for s in "234") + " |")
    for machine, run in results["speed"].items():
        lines += ["", f"Engine fps, {SIZE_PX[0]}x{SIZE_PX[1]} luma at x{SCALE}, batch 1, on {run['label']} "
                  f"({run['when']}):", "", "| backend | " + " | ".join(quality) + " |",
                  "|---|" + "---:|" * len(quality)]
        for backend, fps in run["fps"].items():
            lines.append(f"| {backend} | " + " | ".join(f"{fps[n]:.1f}" if n in fps else "—" for n in quality) + " |")
    path.write_text("\n".join(lines) + "\n")


def _degradation(name: str) -> str:
    """The ladder a model is on: "bicubic" (clean input) or "compressed"."""
    from vsr.models.registry import MODELS

    return MODELS[name].degradation


def machine_label(device: str) -> str:
    from vsr.tuning.model_choice import machine_name

    return machine_name(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backends", nargs="+", default=None,
                        help="[default: openvino onnxruntime torch on cpu; torch tensorrt onnxruntime on cuda]")
    parser.add_argument("--set5", type=Path, default=SET5)
    parser.add_argument("--measure-quality", action="store_true",
                        help="Run Set5 again instead of reading the `vsr eval --json` results shipped beside the "
                             "weights (the same convention and backend).")
    parser.add_argument("--chart-only", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from vsr.models.registry import shipped_models

    # Clean ladder first, then the compressed one, each cheapest first (as the chart draws them).
    models = sorted(shipped_models(), key=lambda m: (m.degradation != "bicubic", m.rank))
    json_path = args.out / "ladder.json"
    results = json.loads(json_path.read_text()) if json_path.is_file() else {"quality": {}, "speed": {}}
    if not args.chart_only:
        if not args.measure_quality:
            results["quality"] = {m.name: {str(s): {"psnr_db": v["vsr_psnr_db"], "ssim": v["vsr_ssim"],
                                                    "bicubic_psnr_db": v["bicubic_psnr_db"]}
                                           for s, v in m.card_scores().items()} for m in models}
        else:
            if not args.set5.is_dir():
                print(f"{args.set5}: Set5 not found (give --set5)", file=sys.stderr)
                return 1
            results["quality"] = measure_quality(models, args.set5)
        backends = args.backends or (["openvino", "onnxruntime", "torch"] if args.device == "cpu"
                                     else ["torch", "tensorrt", "onnxruntime"])
        label = machine_label(args.device)
        import vsr

        results["speed"][label] = {
            "label": label, "device": args.device, "when": time.strftime("%Y-%m-%d"),
            "python": platform.python_version(), "vsr": vsr.__version__,
            "fps": measure_speed(models, args.device, backends)}
        args.out.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=1) + "\n")
    write_table(results, args.out / "ladder.md")
    draw(results, args.out / "ladder.png")
    print(f"wrote {json_path}, ladder.md, ladder.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

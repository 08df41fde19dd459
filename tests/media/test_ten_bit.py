"""10-bit and HDR: a 10-bit source stays 10-bit (the network sees its luma scaled to [0, 1]),
its colour tags and HDR10 metadata (mastering display, content light level) are carried, and
8 bits only come from an explicit --pix-fmt. Sources are made by the ffmpeg CLI."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")

MASTER_X265 = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"
MASTER_SVT = "G(0.265,0.69)B(0.15,0.06)R(0.68,0.32)WP(0.3127,0.329)L(1000,0.005)"
#: (R, G, B, white point) xy and (max, min) cd/m^2 of both, as written above.
MASTERING = ((0.68, 0.32), (0.265, 0.69), (0.15, 0.06), (0.3127, 0.329), (1000.0, 0.005))
TAGS = {"color_primaries": "bt2020", "color_transfer": "smpte2084", "color_space": "bt2020nc"}


def make_hdr_source(path, codec: str) -> None:
    """6 frames of 10-bit HDR10 (BT.2020, PQ) at 96x64 (SVT-AV1 takes 64 rows at least)."""
    params = {"libx265": ["-x265-params", f"log-level=error:master-display={MASTER_X265}:max-cll=1000,400"],
              "libsvtav1": ["-svtav1-params", f"mastering-display={MASTER_SVT}:content-light=1000,400"]}[codec]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10",
                    "-frames:v", "6", "-pix_fmt", "yuv420p10le", "-c:v", codec, "-preset",
                    "ultrafast" if codec == "libx265" else "12", *params, "-color_primaries", "bt2020",
                    "-color_trc", "smpte2084", "-colorspace", "bt2020nc", str(path)], check=True,
                   capture_output=True)


def vsr_run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vsr", "run", *map(str, args), "--scale", "2", "--model", "espcn",
                           "--workers", "1"], capture_output=True, text=True, timeout=300)


def stream_tags(path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=pix_fmt,width,height,color_primaries,color_transfer,color_space", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["streams"][0]


def decoded(path):
    """The first frame's 10-bit luma (uint16) and its HDR10 side data, read with PyAV."""
    import av

    from vsr.media.decode import content_light, mastering_display

    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        luma = frame.to_ndarray(format="gray10le") if frame.format.name.endswith("10le") else None
        return frame.format.name, luma, mastering_display(frame), content_light(frame)


@pytest.fixture(scope="module", params=["libx265", "libsvtav1"])
def source(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("tenbit") / f"hdr_{request.param}.mkv"
    make_hdr_source(path, request.param)
    return path, request.param


@pytest.mark.parametrize("codec", [None, "same"])
def test_ten_bit_hdr_stays_ten_bit_hdr(tmp_path, source, codec):
    """Default codec (libx264: 10-bit in this FFmpeg build) and the source's own codec."""
    src, source_codec = source
    out = tmp_path / "out.mkv"
    extra = [] if codec is None else ["--codec", source_codec]
    result = vsr_run(src, out, *extra)
    assert result.returncode == 0, result.stderr
    tags = stream_tags(out)
    assert tags["pix_fmt"] == "yuv420p10le" and (tags["width"], tags["height"]) == (192, 128)
    assert {key: tags[key] for key in TAGS} == TAGS
    pix_fmt, luma, mastering, light = decoded(out)
    assert luma.max() > 255
    assert np.mean(luma % 4 != 0) > 0.3  # real 10-bit values, not 8-bit ones shifted by 2
    assert light == (1000, 400)
    assert mastering is not None
    np.testing.assert_allclose(np.array(mastering, dtype=float), np.array(MASTERING), rtol=1e-3, atol=1e-4)


def test_eight_bit_only_with_an_explicit_pix_fmt(tmp_path, source):
    src, _ = source
    out = tmp_path / "out8.mkv"
    result = vsr_run(src, out, "--pix-fmt", "yuv420p")
    assert result.returncode == 0, result.stderr
    assert stream_tags(out)["pix_fmt"] == "yuv420p"
    assert "the 10-bit source is written as 8-bit yuv420p" in result.stderr


def test_a_codec_without_ten_bit_is_refused_in_one_line(tmp_path, source):
    src, _ = source
    out = tmp_path / "out.mp4"
    result = vsr_run(src, out, "--codec", "mpeg4")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "10-bit" in lines[0] and "--pix-fmt yuv420p" in lines[0], lines
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_ten_bit_luma_is_the_eight_bit_network_at_four_times_the_precision():
    """The network sees 10-bit luma scaled to [0, 1] as it sees 8-bit luma: 8-bit luma shifted up
    by 2 comes out (within rounding) as the 8-bit result shifted up by 2."""
    from vsr.backends import create_backend
    from vsr.pipeline.stages import upscale_luma

    from tests.conftest import synthetic_rgb

    luma8 = synthetic_rgb(40, 48, seed=1)[..., 1]
    backend = create_backend("onnxruntime", 2, model="espcn")
    try:
        out8 = upscale_luma([luma8], backend)[0]
        out10 = upscale_luma([luma8.astype(np.uint16) << 2], backend)[0]
    finally:
        backend.close()
    assert out10.dtype == np.uint16 and out10.shape == out8.shape
    assert np.abs(out10.astype(int) - 4 * out8.astype(int)).max() <= 4  # 1/1023 vs 1/1020 scale, rounding
    assert np.any(out10 % 4 != 0)


def test_gpu_frame_path_takes_ten_bit_frames():
    """The GPU-resident upscaler (run eagerly on the CPU here) gives 10-bit frames the same
    network as float; its 8-bit device buffers never see them."""
    pytest.importorskip("torch")
    from vsr.backends.gpu_frames import GpuFrameUpscaler
    from vsr.backends.torch_cuda import TorchCudaOptions
    from vsr.frames import YuvFrame

    from tests.conftest import synthetic_rgb

    luma = synthetic_rgb(40, 48, seed=2)[..., 0].astype(np.uint16) << 2
    chroma = np.full((20, 24), 512, np.uint16)
    frame = YuvFrame(luma, chroma, chroma.copy(), "yuv420p10le", 0, None, 0)
    from vsr.pipeline.stages import upscale_frames

    # As create_frame_upscaler builds it: the CPU stage handed in for frames its buffers cannot hold.
    upscaler = GpuFrameUpscaler(2, options=TorchCudaOptions(device="cpu", fp16=False), model="espcn",
                                host_frames=upscale_frames)
    try:
        out = next(upscaler.upscale_frames([frame]))
    finally:
        upscaler.close()
    assert out.layout == "yuv420p10le" and out.luma.dtype == np.uint16 and out.luma.shape == (80, 96)
    assert np.all(out.chroma_u == 512) and np.any(out.luma % 4 != 0)


def test_segment_workers_keep_ten_bits_and_hdr(tmp_path):
    """Segments (each encoded by a worker, joined at packet level) keep 10 bits and HDR10."""
    src, out = tmp_path / "gop5.mkv", tmp_path / "out.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10", "-frames:v",
                    "20", "-pix_fmt", "yuv420p10le", "-c:v", "libx265", "-preset", "ultrafast", "-x265-params",
                    f"log-level=error:keyint=5:min-keyint=5:scenecut=0:master-display={MASTER_X265}:max-cll=1000,400",
                    "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc", str(src)],
                   check=True, capture_output=True)
    result = subprocess.run([sys.executable, "-m", "vsr", "run", str(src), str(out), "--scale", "2", "--model",
                             "espcn", "--workers", "2", "--segment-seconds", "0.5", "--codec", "libx265"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    # No note that the picture went 8-bit (decode.py "converted to 8-bit", encode.py "written as 8-bit");
    # where --precision auto picks int8 (CPUs with VNNI), its note that int8's detail is 8-bit precise stays.
    assert "segments on 2 workers" in result.stderr
    assert "to 8-bit" not in result.stderr and "as 8-bit" not in result.stderr, result.stderr
    tags = stream_tags(out)
    assert tags["pix_fmt"] == "yuv420p10le" and {key: tags[key] for key in TAGS} == TAGS
    _, luma, mastering, light = decoded(out)
    assert light == (1000, 400) and mastering is not None and np.any(luma % 4 != 0)

"""Libraries vsr runs keep quiet unless --verbose (issue 28): NNCF's INFO lines and progress bar on
a first int8 run, SVT-AV1's banner and warnings on every AV1 (.webm) output."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

from tests.conftest import make_clip, needs_nncf, synthetic_rgb


def vsr(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vsr", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**{k: v for k, v in os.environ.items() if k not in ("SVT_LOG", "VSR_VERBOSE")},
                                            **(env or {})})


@needs_nncf
@pytest.mark.parametrize("verbose", [False, True], ids=["default", "verbose"])
def test_a_first_int8_run_is_quiet_unless_verbose(tmp_path, verbose):
    """An empty cache: NNCF quantises the network in this run."""
    Image.fromarray(synthetic_rgb(40, 48, seed=1)).save(tmp_path / "in.png")
    args = ["upscale", tmp_path / "in.png", tmp_path / "out.png", "--scale", 2, "--model", "espcn", "--backend",
            "openvino", "--precision", "int8", "-q"] + (["--verbose"] if verbose else [])
    result = vsr(*args, env={"VSR_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "cache").rglob("*.xml")), "the int8 model was not quantised in this run"
    talk = result.stdout + result.stderr
    if verbose:
        assert "INFO:nncf:" in talk
    else:
        assert "nncf" not in talk.lower() and "━" not in talk and talk.strip() == "", talk


@pytest.mark.parametrize("verbose", [False, True], ids=["default", "verbose"])
def test_an_av1_output_is_quiet_unless_verbose(tmp_path, verbose):
    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=3)
    result = vsr("run", clip, tmp_path / "out.webm", "--scale", 2, "--model", "espcn", "--backend", "onnxruntime",
                 "--workers", 1, "-q", *(["--verbose"] if verbose else []))
    assert result.returncode == 0, result.stderr
    assert ("Svt[" in result.stderr) == verbose, result.stderr


def test_notes_held_until_released_keep_their_order_and_show_at_the_end_of_the_block():
    """`vsr run` holds the notes of its setup until its first line (the model and why) is out."""
    import io
    import logging

    from vsr.verbosity import NOTES, notes_after, show_notes

    stream = io.StringIO()
    old = sys.stderr
    sys.stderr = stream
    try:
        show_notes()
    finally:
        sys.stderr = old
    try:
        with notes_after() as release:
            NOTES.info("first")
            NOTES.info("second")
            assert stream.getvalue() == ""
            stream.write("header\n")
            release()
            NOTES.info("third")
        with notes_after():
            NOTES.info("a setup that failed before its first line")
        assert stream.getvalue().splitlines() == ["header", "note: first", "note: second", "note: third",
                                                  "note: a setup that failed before its first line"]
        # The handler's own lock was released each time: logging from another thread does not hang.
        import threading

        thread = threading.Thread(target=NOTES.info, args=("from a thread",))
        thread.start()
        thread.join(timeout=5)
        assert not thread.is_alive() and stream.getvalue().endswith("note: from a thread\n")
    finally:
        for handler in [h for h in NOTES.handlers if getattr(h, "vsr_notes", False)]:
            NOTES.removeHandler(handler)
        NOTES.setLevel(logging.NOTSET)

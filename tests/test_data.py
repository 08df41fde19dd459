"""`vsr data div2k` end to end against a local HTTP server serving zips this test makes (no network)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vsr.cli import main

from tests.conftest import synthetic_rgb


def _png_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(synthetic_rgb(48, 64, seed=seed)).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return buffer.getvalue()


class _Server:
    """Serves ``files`` with Range support; can drop the connection after N bytes, once."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.drop_after_bytes: int | None = None
        self.honour_range = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                range_header = self.headers.get("Range")
                server.requests.append((self.path, range_header))
                body = server.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if range_header and server.honour_range:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if server.drop_after_bytes is not None:
                    payload = payload[:server.drop_after_bytes]
                    server.drop_after_bytes = None  # only the first request breaks
                    self.close_connection = True
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def archive_requests(self, name: str) -> list[tuple[str, str | None]]:
        return [r for r in self.requests if r[0] == f"/{name}"]


@pytest.fixture
def server():
    s = _Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _publish(server: _Server, tmp_path: Path, splits: dict[str, int], sha256_override: str | None = None,
             extra_members: dict[str, bytes] | None = None) -> Path:
    """Put one zip per split on the server (DIV2K layout: NAME/0001.png ...) and write a manifest."""
    manifest = {}
    seed = 1
    for split, count in splits.items():
        name = f"DIV2K_{split}_HR"
        members = {}
        for _ in range(count):
            members[f"{name}/{seed:04d}.png"] = _png_bytes(seed)
            seed += 1
        members.update(extra_members or {})
        body = _zip_bytes(members)
        server.files[f"{name}.zip"] = body
        manifest[split] = dict(name=name, url=server.url + f"{name}.zip", size_bytes=len(body),
                               sha256=sha256_override or hashlib.sha256(body).hexdigest(), member_count=count)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    return path


def _run(manifest: Path, dest: Path, *extra: str):
    return CliRunner().invoke(main, ["data", "div2k", str(dest), "--manifest", str(manifest), "-q", *extra])


def test_downloads_verifies_and_unpacks_both_splits(server, tmp_path):
    manifest = _publish(server, tmp_path, {"train": 3, "valid": 2})
    dest = tmp_path / "div2k"
    result = _run(manifest, dest)
    assert result.exit_code == 0, result.output
    train = sorted((dest / "DIV2K_train_HR").glob("*.png"))
    valid = sorted((dest / "DIV2K_valid_HR").glob("*.png"))
    assert [p.name for p in train] == ["0001.png", "0002.png", "0003.png"]
    assert [p.name for p in valid] == ["0004.png", "0005.png"]
    # The pixels survived the round trip, not just the names.
    assert np.array_equal(np.asarray(Image.open(valid[0])), synthetic_rgb(48, 64, seed=4))
    # Archives removed by default, no partial or staging folder left behind.
    assert sorted(p.name for p in dest.iterdir()) == [
        ".DIV2K_train_HR.verified", ".DIV2K_valid_HR.verified", "DIV2K_train_HR", "DIV2K_valid_HR"]


def test_rerun_when_complete_makes_no_request(server, tmp_path):
    manifest = _publish(server, tmp_path, {"valid": 2})
    dest = tmp_path / "div2k"
    assert _run(manifest, dest, "--only", "valid").exit_code == 0
    seen = len(server.requests)
    result = _run(manifest, dest, "--only", "valid")
    assert result.exit_code == 0, result.output
    assert "already there" in result.output
    assert len(server.requests) == seen


def test_broken_download_resumes_with_range(server, tmp_path):
    manifest = _publish(server, tmp_path, {"valid": 3})
    body = server.files["DIV2K_valid_HR.zip"]
    drop_bytes = len(body) // 3
    server.drop_after_bytes = drop_bytes
    dest = tmp_path / "div2k"
    first = _run(manifest, dest, "--only", "valid", "--keep-archives")
    assert first.exit_code != 0
    assert first.output.startswith("Error: download of DIV2K_valid_HR.zip broke off after"), first.output
    assert (dest / ".DIV2K_valid_HR.zip.partial").stat().st_size == drop_bytes
    assert not (dest / "DIV2K_valid_HR").exists()

    second = _run(manifest, dest, "--only", "valid", "--keep-archives")
    assert second.exit_code == 0, second.output
    assert server.archive_requests("DIV2K_valid_HR.zip")[-1] == ("/DIV2K_valid_HR.zip", f"bytes={drop_bytes}-")
    assert (dest / "DIV2K_valid_HR.zip").read_bytes() == body
    assert len(list((dest / "DIV2K_valid_HR").glob("*.png"))) == 3


def test_server_without_range_support_restarts_from_zero(server, tmp_path):
    manifest = _publish(server, tmp_path, {"valid": 2})
    server.honour_range = False
    server.drop_after_bytes = 1000
    dest = tmp_path / "div2k"
    assert _run(manifest, dest, "--only", "valid").exit_code == 1
    result = _run(manifest, dest, "--only", "valid")
    assert result.exit_code == 0, result.output
    assert server.archive_requests("DIV2K_valid_HR.zip")[-1][1] == "bytes=1000-"  # asked, got 200, rewrote
    assert len(list((dest / "DIV2K_valid_HR").glob("*.png"))) == 2


def test_complete_partial_answered_416_is_verified(server, tmp_path):
    manifest = _publish(server, tmp_path, {"valid": 1})
    spec = json.loads(manifest.read_text())["valid"]
    spec["size_bytes"] = None  # unknown size: the downloader must ask, and the server says 416
    manifest.write_text(json.dumps({"valid": spec}))
    dest = tmp_path / "div2k"
    dest.mkdir()
    (dest / ".DIV2K_valid_HR.zip.partial").write_bytes(server.files["DIV2K_valid_HR.zip"])
    result = _run(manifest, dest, "--only", "valid")
    assert result.exit_code == 0, result.output
    assert server.archive_requests("DIV2K_valid_HR.zip")[-1][1] == f"bytes={len(server.files['DIV2K_valid_HR.zip'])}-"
    assert (dest / "DIV2K_valid_HR" / "0001.png").is_file()


def test_checksum_mismatch_is_one_error_line_and_nothing_final(server, tmp_path):
    manifest = _publish(server, tmp_path, {"valid": 2}, sha256_override="0" * 64)
    dest = tmp_path / "div2k"
    result = _run(manifest, dest, "--only", "valid")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: DIV2K_valid_HR.zip has SHA-256"), result.output
    assert not (dest / "DIV2K_valid_HR").exists()
    assert not (dest / "DIV2K_valid_HR.zip").exists()
    assert not (dest / ".DIV2K_valid_HR.zip.partial").exists()  # removed: resuming cannot repair it


def test_zip_slip_member_refused(server, tmp_path):
    manifest = _publish(server, tmp_path, {"valid": 1}, extra_members={"../evil.png": b"x"})
    dest = tmp_path / "div2k"
    result = _run(manifest, dest, "--only", "valid")
    assert result.exit_code == 1
    assert "refusing member '../evil.png'" in result.output
    assert not (tmp_path / "evil.png").exists()
    assert not (dest / "DIV2K_valid_HR").exists()
    assert not [p for p in dest.iterdir() if p.name.endswith(".unpacking")]


def test_http_404_and_unreachable_server_are_one_line(server, tmp_path):
    manifest = _publish(server, tmp_path, {"valid": 1})
    del server.files["DIV2K_valid_HR.zip"]
    result = _run(manifest, tmp_path / "d1", "--only", "valid")
    assert result.exit_code == 1 and "HTTP 404" in result.output
    assert len(result.output.strip().splitlines()) == 1

    server.httpd.shutdown()
    server.httpd.server_close()
    result = _run(manifest, tmp_path / "d2", "--only", "valid")
    assert result.exit_code == 1 and "cannot reach" in result.output
    assert "Traceback" not in result.output


def test_unwritable_dest_is_an_output_error(server, tmp_path):
    manifest = _publish(server, tmp_path, {"valid": 1})
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        result = _run(manifest, locked / "div2k", "--only", "valid")
    finally:
        locked.chmod(0o700)
    if result.exit_code == 0:
        pytest.skip("running as root: permissions are not enforced")
    assert result.exit_code == 1 and "Error: cannot create" in result.output


def test_builtin_specs_match_published_figures():
    from vsr.data import DIV2K_ARCHIVES, div2k_archives

    assert DIV2K_ARCHIVES["train"].member_count == 800 and DIV2K_ARCHIVES["valid"].member_count == 100
    mirrored = div2k_archives(base_url="http://mirror.example/div2k")
    assert mirrored["valid"].url == "http://mirror.example/div2k/DIV2K_valid_HR.zip"
    assert mirrored["valid"].sha256 == DIV2K_ARCHIVES["valid"].sha256


def test_no_room_to_write_is_an_output_error_and_the_partial_resumes(server, tmp_path):
    """A file-size limit on the child process makes its writes fail like a full disk (EFBIG)."""
    manifest = _publish(server, tmp_path, {"valid": 2})
    dest = tmp_path / "div2k"
    limit_bytes = 4096

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "vsr.cli", "data", "div2k", str(dest), "--only", "valid", "-q",
               "--manifest", str(manifest)]
    child = subprocess.run(command, capture_output=True, text=True, env=env, preexec_fn=limit_file_size,
                           cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert child.returncode == 1, child.stderr
    assert child.stderr.strip().splitlines() == [f"Error: cannot write under {dest}: File too large"]
    assert not (dest / "DIV2K_valid_HR").exists()

    rerun = subprocess.run(command, capture_output=True, text=True, env=env,
                           cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert server.archive_requests("DIV2K_valid_HR.zip")[-1][1] == f"bytes={limit_bytes}-"
    assert len(list((dest / "DIV2K_valid_HR").glob("*.png"))) == 2

"""README and --help say the same (issue 28): every `vsr run` option is in the README, the set-up
offers a user install, and `vsr bench` writes JSON only when --json asks for it."""
from __future__ import annotations

import re

from click.testing import CliRunner

from vsr.cli import main

from .conftest import REPO

README = (REPO / "README.md").read_text()


def _options(command: str) -> set[str]:
    result = CliRunner().invoke(main, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return set(re.findall(r"^\s+(?:-\w, )?(--[a-z0-9-]+)", result.output, re.M)) - {"--help"}


def test_every_vsr_run_option_is_in_the_readme():
    missing = sorted(option for option in _options("run")
                     if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", README))
    assert not missing, f"vsr run --help lists options the README does not: {missing}"


def test_the_readme_offers_a_user_install_beside_the_developer_one():
    setup = README.split("## Set up", 1)[1].split("##", 1)[0]
    assert re.search(r"^pip install \.\s", setup, re.M) and 'pip install torch==2.13.0 -e ".[dev]"' in setup


def test_upscale_formats_as_help_says_them():
    assert "(a single image to the .jpg or .bmp OUTPUT names" in README
    result = CliRunner().invoke(main, ["upscale", "--help"], terminal_width=200)
    assert "to PNG (or the .jpg/.bmp OUTPUT names)" in result.output


def test_bench_writes_json_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["bench", "--size", "40x30", "--scale", "2", "--backend", "onnxruntime", "--model", "espcn",
            "--frames", "2", "--warmup", "0"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert list(tmp_path.iterdir()) == [] and "wrote" not in result.output
    result = CliRunner().invoke(main, [*args, "--json", "b.json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b.json").is_file() and "wrote b.json" in result.output
    assert "`--json FILE` also writes them as JSON (nothing is written without it)" in README

"""README, docs/usage.md and --help say the same (issue 28): every `vsr run` option is in the
usage reference, the README's set-up offers a user install, and `vsr bench` writes JSON only when
--json asks for it. The README links every page of docs/, and every relative link in the README
and docs/ names a file that exists."""
from __future__ import annotations

import re

from click.testing import CliRunner

from vsr.cli import main

from tests.conftest import REPO

README = (REPO / "README.md").read_text()
#: The full command reference: every option of `vsr run` and the other commands in detail.
USAGE = (REPO / "docs" / "usage.md").read_text()


def _options(command: str) -> set[str]:
    result = CliRunner().invoke(main, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return set(re.findall(r"^\s+(?:-\w, )?(--[a-z0-9-]+)", result.output, re.M)) - {"--help"}


def test_every_vsr_run_option_is_in_the_usage_reference():
    missing = sorted(option for option in _options("run")
                     if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", USAGE))
    assert not missing, f"vsr run --help lists options docs/usage.md does not: {missing}"


def test_the_readme_offers_a_user_install_beside_the_developer_one():
    setup = README.split("## Set up", 1)[1].split("##", 1)[0]
    assert re.search(r"^pip install \.\s", setup, re.M) and 'pip install torch==2.13.0 -e ".[dev]"' in setup


def test_upscale_formats_as_help_says_them():
    assert "(a single image to the .jpg or .bmp OUTPUT names" in USAGE
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
    assert "`--json FILE` also writes them as JSON (nothing is written without it)" in USAGE


def test_the_readme_links_every_docs_page():
    pages = sorted(path.relative_to(REPO).as_posix() for path in (REPO / "docs").glob("*.md"))
    missing = [page for page in pages if f"]({page})" not in README]
    assert not missing, f"the README does not link {missing}"


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation but hyphens dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_relative_links_in_the_readme_and_docs_resolve():
    broken = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and file.suffix == ".md":
                anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", file.read_text(), re.M)}
                if anchor not in anchors:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, f"links that lead nowhere: {broken}"

"""The README is a test: its Python snippet and every line of its "Use" block run, and the
figures it states about the shipped models match `SHIPPED` (as vector-quantize-pytorch does)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from hvqcodec.cli import main
from hvqcodec.models import DEFAULT_MODEL, SHIPPED, load_shipped
from tests.conftest import IMAGES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
FORMAT = (ROOT / "docs" / "FORMAT.md").read_text()
DEFAULT = SHIPPED[DEFAULT_MODEL]
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def use_block(lang: str) -> str:
    """The first `lang` code block of the README's "Use" section."""
    section = README.split("\n## Use\n", 1)[1].split("\n## ", 1)[0]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


def number(text: str) -> int:
    return int(text) if text.isdigit() else WORDS.index(text.lower())


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with the files the README's examples name."""
    dog = Image.open(IMAGES / "dog.png").convert("RGB")
    dog.save(tmp_path / "photo.jpg", quality=95)
    (tmp_path / "photos").mkdir()
    for i in range(2):
        dog.rotate(90 * i, expand=True).save(tmp_path / "photos" / f"p{i}.png")
    dog.save(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_line_of_the_use_block_runs(workdir):
    lines = [ln.split("#", 1)[0].strip() for ln in use_block("sh").splitlines()]
    assert len([ln for ln in lines if ln]) >= 8
    for line in filter(None, lines):
        argv = shlex.split(line)
        # The shell would expand globs; so does the test.
        argv = [str(p) for a in argv for p in (sorted(Path().glob(a)) if "*" in a else [a])]
        if argv[0] == "python":
            r = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True)
            assert r.returncode == 0, (line, r.stderr)
            continue
        assert argv[0] == "hvqcodec", line
        r = CliRunner().invoke(main, argv[1:])
        assert r.exit_code == 0, (line, r.output)
    assert (workdir / "photo.hvq").exists() and (workdir / "x.webp").exists()
    assert (workdir / "best.hvq").stat().st_size > (workdir / "photo.hvq").stat().st_size
    assert sorted(p.name for p in (workdir / "out").iterdir()) == ["a.hvq"]


def test_the_python_snippet_runs(workdir):
    code = use_block("python")
    env = {"__name__": "readme"}
    exec(compile(code, "README.md", "exec"), env)
    assert env["image"].size == (160, 272) and (workdir / "copy.hvq").exists()


def test_the_qualities_stated_are_the_shipped_ones():
    n, default = len(DEFAULT.qualities), DEFAULT.default_quality
    use = use_block("sh") + use_block("python")
    for q in re.findall(r"(?:-q |quality=)(\d+)", use):
        assert 1 <= int(q) <= n, f"quality {q} in the Use block; {DEFAULT_MODEL} has 1..{n}"
    for top in re.findall(r"quality 1 \(smallest\) \.\. (\d+)", README):
        assert int(top) == n
    for word in re.findall(r"[Oo]ne model covers (\w+) qualities", README):
        assert number(word) == n
    for q in re.findall(r"[Tt]he default(?:,| is)? quality (\d+)", README):
        assert int(q) == default
    counts = "|".join(WORDS)
    for q, word in re.findall(rf"quality (\d+) \(({counts})(?: bottom stages?)?\)", README):
        assert DEFAULT.qualities[int(q) - 1][0] == number(word), f"quality {q} ({word})"


def test_the_stage_and_prior_counts_stated_are_the_shipped_ones():
    stages = load_shipped(DEFAULT_MODEL).vqvae.config.bottom_stages
    streams = 2 + stages
    for b in re.findall(r"\(B = (\d+)\)", FORMAT):
        assert int(b) in (1, stages), f"docs/FORMAT.md: B = {b}; {DEFAULT_MODEL} ships {stages}"
    text = README + FORMAT
    assert "one prior per level" not in text, f"{DEFAULT_MODEL} has a prior per stream"
    for word in re.findall(r"\b(\w+) priors\b", text):
        if word.lower() in WORDS:
            assert number(word) == streams, f"'{word} priors'; {DEFAULT_MODEL} has {streams}"
    sweep = (ROOT / "benchmarks" / "quality_sweep.py").read_text()
    for listed in re.findall(r"--stages ([\d ]+)", sweep):
        assert max(map(int, listed.split())) <= stages, "quality_sweep's usage line"


def test_the_quality_help_does_not_assume_the_default_model(tmp_path):
    r = CliRunner().invoke(main, ["compress", "--help"])
    assert f"1..{len(DEFAULT.qualities)}" not in r.output
    out = str(tmp_path / "x.hvq")
    r = CliRunner().invoke(main, ["compress", "-m", "hvq-v1", "-q", "2", str(IMAGES / "dog.png"),
                                  "-o", out])  # fmt: skip
    assert r.exit_code == 1 and "hvq-v1 has 1..1" in r.output, r.output

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
from hvqcodec.models import load_shipped
from hvqcodec.shipped import DEFAULT_MODEL, SHIPPED
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_python_snippet_runs(workdir):
    code = use_block("python")
    env = {"__name__": "readme"}
    exec(compile(code, "README.md", "exec"), env)
    assert env["image"].size == (160, 272) and (workdir / "copy.hvq").exists()


def test_the_qualities_stated_are_the_shipped_ones():
    default = DEFAULT.default_quality
    use = use_block("sh") + use_block("python")
    for q in re.findall(r"(?:-q |quality=)(\d+)", use):
        assert 0 <= int(q) <= 100, f"quality {q} in the Use block; the scale is 0-100"
    for q in re.findall(r"[Tt]he default(?:,| is)? quality (\d+)", README):
        assert int(q) == default, f"the default quality {q}; {DEFAULT_MODEL}'s is {default:g}"
    v2 = SHIPPED["hvq-v2"].scale
    knots = re.search(r"hvq-v2's knots: (.*?) each with nearest codes", README, re.S)
    stated = re.findall(r"(\d+) (\w+)(?: bottom)?(?: stages?)?", knots.group(1))
    stated = [(int(q), w) for q, w in stated if w in WORDS or w == "codes"]
    assert [q for q, _ in stated[1:]] == [q // 100 for q in v2.qualities[1:]]
    for q, word in stated[1:]:
        assert v2.point(100 * q) == (number(word), 0.0), f"quality {q} ({word})"


def test_the_stage_and_prior_counts_stated_are_the_shipped_ones():
    stages = load_shipped("hvq-v2").vqvae.config.bottom_stages
    for b in re.findall(r"\(B = (\d+)\)", FORMAT):
        assert int(b) in (1, stages), f"docs/FORMAT.md: B = {b}; hvq-v2 ships {stages}"
    text = README + FORMAT
    assert "one prior per level" not in text, "hvq-v2 has a prior per stream"
    for word in re.findall(r"\b(\w+) priors\b", text):
        if word.lower() in WORDS:
            assert number(word) == 2 + stages, f"'{word} priors'; hvq-v2 has {2 + stages}"


def test_every_model_takes_the_same_quality_scale(tmp_path):
    r = CliRunner().invoke(main, ["compress", "--help"])
    assert "0 to 100" in r.output and f"default {DEFAULT.default_quality:g}" in r.output
    out = tmp_path / "x.hvq"
    r = CliRunner().invoke(main, ["compress", "-m", "hvq-v1", "-q", "62.5", str(IMAGES / "dog.png"),
                                  "-o", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "quality 62.5," in CliRunner().invoke(main, ["info", str(out)]).output

"""No input can crash a run: broken metadata, unexpected exceptions and dying workers cost at
most their own file, in one line, and the batch finishes the others."""

import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

import hvqcodec
from hvqcodec import batch
from hvqcodec.cli import main
from tests.conftest import IMAGES
from tests.test_cli import saved
from tests.test_image_io import broken_jpeg


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_codec):
    return saved(tiny_codec, tmp_path_factory.mktemp("w"))


@pytest.fixture
def folder(tmp_path, dog):
    """Good images, and each broken input: EXIF rational as a string, a broken orientation
    tag, a truncated ICC profile."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(IMAGES / "dog.png", src / "good1.png")
    Image.fromarray(dog).save(src / "good2.jpg")
    broken_jpeg(src / "exif-rational.jpg", dog, [(0x011A, 2, 8, b"seventy\x00")])
    broken_jpeg(src / "orientation.jpg", dog, [(0x0112, 2, 4, b"abc\x00")])
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(dog).save(src / "icc.png", icc_profile=icc[: len(icc) // 2])
    return src


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_broken_metadata_compresses_with_notes(folder, weights, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    r = run("compress", folder, "-o", out, "-m", weights, "-j", "2")
    assert r.exit_code == 0, r.output
    assert len(list(out.glob("*.hvq"))) == 5
    assert "dropped the EXIF" in r.output and "invalid EXIF orientation" in r.output
    assert "truncated or damaged" in r.output and "Traceback" not in r.output


def test_a_dying_worker_and_an_unexpected_exception_cost_only_their_files(
    folder, weights, tmp_path, monkeypatch
):
    real = batch._TASKS["compress"]

    def flaky(codec, job):
        if job.src.name == "good2.jpg":
            os._exit(9)  # as a segfault in a decoder, or the OOM killer, would
        if job.src.name == "icc.png":
            raise KeyError("surprise")
        return real(codec, job)

    # Worker processes are forked, so they inherit the patch.
    monkeypatch.setitem(batch._TASKS, "compress", flaky)
    out = tmp_path / "out"
    out.mkdir()
    r = run("compress", folder, "-o", out, "-m", weights, "-j", "2")
    assert r.exit_code == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "exif-rational.hvq",
        "good1.hvq",
        "orientation.hvq",
    ]  # fmt: skip  (and no temporary file left behind)
    errors = [ln for ln in r.output.splitlines() if ln.startswith("hvqcodec: error:")]
    assert len(errors) == 2
    assert any("good2.jpg" in e and "worker process died" in e for e in errors)
    assert any("icc.png" in e and "KeyError" in e and "report" in e for e in errors)
    assert "Traceback" not in r.output
    assert "compress: 3 of 5 files done" in r.output


def test_verbose_adds_the_traceback_of_an_unexpected_exception(folder, weights, monkeypatch):
    def broken(codec, job):
        raise KeyError("surprise")

    monkeypatch.setitem(batch._TASKS, "compress", broken)
    r = run("compress", folder / "good1.png", "-m", weights, "-v", "-f")
    assert r.exit_code == 1 and "Traceback" in r.output and "KeyError" in r.output


@pytest.mark.slow
def test_the_api_raises_hvqerror_with_the_cause_chained(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(hvqcodec.HvqError) as e:
        hvqcodec.encode(tmp_path / "bad.png")
    assert e.value.__cause__ is not None or "not an image" in str(e.value)
    with pytest.raises(hvqcodec.HvqError):
        hvqcodec.encode(np.zeros((4, 4, 3), np.float32))


def test_a_worker_killed_while_writing_leaves_no_temporary_file(folder, weights, tmp_path,
                                                                monkeypatch):  # fmt: skip
    def dies_mid_write(codec, job):
        with batch.atomic_output(job.dst, job.force) as tmp:
            tmp.write_bytes(b"half")
            if job.src.name == "good2.jpg":
                os._exit(9)
        return batch.Outcome(job, line="written", bytes_in=1, bytes_out=4, pixels=1)

    monkeypatch.setitem(batch._TASKS, "compress", dies_mid_write)  # forked workers inherit it
    out = tmp_path / "out"
    out.mkdir()
    r = run("compress", folder, "-o", out, "-m", weights, "-j", "2")
    assert r.exit_code == 1 and "good2.jpg: the worker process died" in r.output
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert "good2.hvq" not in {p.name for p in out.iterdir()}

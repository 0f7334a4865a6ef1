"""The CLI through click's CliRunner: outputs, overwrite refusal, errors without tracebacks."""

import shutil

import pytest
from click.testing import CliRunner
from PIL import Image

from hvqcodec.cli import main
from hvqcodec.families.vqvae.weights import save_weights
from tests.conftest import IMAGES


def saved(codec, folder) -> str:
    """The codec's model as a weights file in `folder`, for `-m`."""
    path, m = folder / f"{codec.name}.pt", codec.model
    save_weights(path, m.name, m.vqvae, m.prior)
    return str(path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_codec):
    return saved(tiny_codec, tmp_path_factory.mktemp("w"))


@pytest.fixture
def work(tmp_path):
    shutil.copy(IMAGES / "dog.png", tmp_path / "dog.png")
    return tmp_path


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def test_compress_decompress_info(work, weights):
    r = cli("compress", work / "dog.png", "-m", weights)
    assert r.exit_code == 0, r.output
    assert (work / "dog.hvq").exists() and "bpp" in r.output
    r = cli("decompress", work / "dog.hvq", "-m", weights, "-o", work / "out.png")
    assert r.exit_code == 0, r.output
    assert Image.open(work / "out.png").size == (160, 272)
    r = cli("info", work / "dog.hvq")
    assert r.exit_code == 0 and "160x272" in r.output
    r = cli("info", "-v", work / "dog.hvq", "-m", weights)
    assert r.exit_code == 0, r.output
    for level in ("top", "middle", "bottom", "ideal bits"):
        assert level in r.output


def test_default_output_is_beside_input(work, weights):
    cli("compress", work / "dog.png", "-m", weights)
    r = cli("decompress", work / "dog.hvq", "-m", weights, "--force")
    assert r.exit_code == 0, r.output
    assert (work / "dog.png").exists()


def test_refuses_to_overwrite_without_force(work, weights):
    assert cli("compress", work / "dog.png", "-m", weights).exit_code == 0
    before = (work / "dog.hvq").read_bytes()
    (work / "dog.hvq").write_bytes(b"keep me")
    r = cli("compress", work / "dog.png", "-m", weights)
    assert r.exit_code != 0 and "--force" in r.output
    assert (work / "dog.hvq").read_bytes() == b"keep me"
    r = cli("compress", work / "dog.png", "-m", weights, "--force")
    assert r.exit_code == 0 and (work / "dog.hvq").read_bytes() == before


@pytest.mark.parametrize(
    "name,content,message",
    [("empty.png", b"", "not an image"), ("text.png", b"hello", "not an image")],
)
def test_bad_inputs_one_line_error(work, weights, name, content, message):
    (work / name).write_bytes(content)
    r = cli("compress", work / name, "-m", weights)
    assert r.exit_code == 1
    assert message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (work / name).with_suffix(".hvq").exists()


def test_missing_input_and_directory(work, weights):
    r = cli("compress", work / "absent.png", "-m", weights)
    assert r.exit_code == 1 and "no such file" in r.output
    r = cli("decompress", work, "-m", weights)
    assert r.exit_code == 1 and "directory with no .hvq files" in r.output
    r = cli("compress", work / "dog.png", "-m", weights, "-o", work / "dog.png", "-f")
    assert r.exit_code == 0
    r = cli("decompress", work / "dog.png" / "x.hvq", "-m", weights)
    assert r.exit_code == 1 and "Traceback" not in r.output


def test_corrupt_hvq_leaves_no_output(work, weights):
    (work / "bad.hvq").write_bytes(b"HVQ\x01garbage")
    r = cli("decompress", work / "bad.hvq", "-m", weights)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert sorted(p.name for p in work.iterdir()) == ["bad.hvq", "dog.png"]


def test_missing_output_directory(work, weights):
    r = cli("compress", work / "dog.png", "-m", weights, "-o", work / "nope" / "x.hvq")
    assert r.exit_code == 1 and "does not exist" in r.output


def test_batch_continues_after_a_failure(work, weights):
    (work / "bad.png").write_bytes(b"nope")
    shutil.copy(work / "dog.png", work / "dog2.png")
    r = cli("compress", work / "dog.png", work / "bad.png", work / "dog2.png", "-m", weights)
    assert r.exit_code == 1
    assert (work / "dog.hvq").exists() and (work / "dog2.hvq").exists()
    assert "2 of 3 files done" in r.output and "bad.png" in r.output


def test_grayscale_input_stays_grayscale_and_a_conversion_gets_a_note(work, weights):
    Image.open(work / "dog.png").convert("L").save(work / "gray.png")
    r = cli("compress", work / "gray.png", "-m", weights)
    assert r.exit_code == 0 and "note" not in r.output
    r = cli("decompress", work / "gray.hvq", "-m", weights, "-o", work / "out.png")
    assert r.exit_code == 0 and Image.open(work / "out.png").mode == "L"
    Image.open(work / "dog.png").convert("CMYK").save(work / "cmyk.jpg")
    r = cli("compress", work / "cmyk.jpg", "-m", weights)
    assert r.exit_code == 0 and "converted CMYK to RGB" in r.output


def test_bad_weights_file(work):
    (work / "w.pt").write_bytes(b"not weights")
    r = cli("compress", work / "dog.png", "-m", work / "w.pt")
    assert r.exit_code == 1 and "weights" in r.output and "Traceback" not in r.output


def test_version():
    r = cli("--version")
    assert r.exit_code == 0 and "hvqcodec" in r.output


def test_directory_input_parallel_jobs_and_summary(work, weights):
    shutil.copy(work / "dog.png", work / "dog2.png")
    (work / "notes.txt").write_text("not an image, and not picked up from a directory")
    r = cli("compress", work, "-m", weights, "-j", "2", "-v")
    assert r.exit_code == 0, r.output
    assert (work / "dog.hvq").exists() and (work / "dog2.hvq").exists()
    assert "compress: 2 of 2 files done" in r.output and "mean" in r.output
    skipped = "compress: skipped 1 file in the folders given (not an image suffix)"
    assert skipped in r.output and f"  skipped {work / 'notes.txt'}" in r.output  # -v names it
    out = work / "out"
    out.mkdir()
    r = cli("decompress", work, "-o", out, "-m", weights, "-j", "2")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["dog.png", "dog2.png"]
    # Without -v the count alone, and the files it skipped are the images and the notes.
    assert "decompress: skipped 3 files in the folders given (not a .hvq file); -v names them" in (
        r.output
    )
    assert "  skipped" not in r.output


@pytest.mark.slow
def test_metadata_kept_by_default_and_dropped_by_strip(work, weights):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.open(work / "dog.png").save(work / "icc.png", icc_profile=icc)
    assert cli("compress", work / "icc.png", "-m", weights).exit_code == 0
    assert cli("decompress", work / "icc.hvq", "-m", weights, "-o", work / "a.png").exit_code == 0
    assert Image.open(work / "a.png").info.get("icc_profile") == icc
    assert cli("info", work / "icc.hvq").output.count("ICCP") == 1
    assert cli("compress", work / "icc.png", "-m", weights, "--strip", "-f").exit_code == 0
    assert cli("decompress", work / "icc.hvq", "-m", weights, "-o", work / "b.png").exit_code == 0
    assert "icc_profile" not in Image.open(work / "b.png").info


@pytest.mark.slow
def test_python_dash_m_entry_point():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "hvqcodec", "--version"], capture_output=True,
                       text=True, check=True)  # fmt: skip
    assert r.stdout.startswith("hvqcodec, version")


def test_output_file_with_several_inputs_is_a_usage_error(work, weights):
    shutil.copy(work / "dog.png", work / "dog2.png")
    r = cli("compress", work / "dog.png", work / "dog2.png", "-o", work / "x.hvq", "-m", weights)
    assert r.exit_code == 2 and "existing directory" in r.output
    assert not (work / "x.hvq").exists()


def test_two_inputs_with_one_output_name_are_refused_up_front(work, weights):
    Image.open(work / "dog.png").save(work / "dog.jpg")
    r = cli("compress", work / "dog.png", work / "dog.jpg", "-m", weights)
    assert r.exit_code == 2 and "dog.hvq" in r.output
    assert not (work / "dog.hvq").exists()


def test_outputs_get_ordinary_file_permissions(work, weights):
    import os
    import stat

    assert cli("compress", work / "dog.png", "-m", weights).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((work / "dog.hvq").stat().st_mode) == 0o666 & ~umask


def failing_write(after: int, exc: BaseException):
    """A Path.write_bytes that writes `after` bytes of its data and then raises `exc`."""

    def write_bytes(self, data):
        with open(self, "wb") as f:
            f.write(data[:after])
        raise exc

    return write_bytes


def test_full_disk_leaves_no_partial_output_and_the_input_untouched(work, weights, monkeypatch):
    import errno
    from pathlib import Path

    before = (work / "dog.png").read_bytes()
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_bytes", failing_write(10, full))
    r = cli("compress", work / "dog.png", "-m", weights)
    assert r.exit_code == 1 and "No space left on device" in r.output
    assert "Traceback" not in r.output
    assert sorted(p.name for p in work.iterdir()) == ["dog.png"]
    assert (work / "dog.png").read_bytes() == before


def test_ctrl_c_in_a_batch_stops_cleanly(work, weights, monkeypatch):
    from pathlib import Path

    shutil.copy(work / "dog.png", work / "dog2.png")
    real_write = Path.write_bytes
    calls = []

    def write_bytes(self, data):  # the second output is interrupted half-written
        calls.append(self)
        if len(calls) == 2:
            failing_write(len(data) // 2, KeyboardInterrupt())(self, data)
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    r = cli("compress", work / "dog.png", work / "dog2.png", "-m", weights)
    assert r.exit_code == 130 and "interrupted" in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in work.iterdir()) == ["dog.hvq", "dog.png", "dog2.png"]
    monkeypatch.undo()
    assert cli("info", work / "dog.hvq").exit_code == 0  # the finished output is whole


@pytest.mark.slow
def test_unwritable_output_directory(work, weights, monkeypatch):
    import tempfile

    def denied(*args, **kwargs):  # chmod cannot stop root, so the refusal is simulated
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    r = cli("compress", work / "dog.png", "-m", weights)
    assert r.exit_code == 1 and "permission denied" in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in work.iterdir()) == ["dog.png"]


@pytest.fixture(scope="module")
def staged_weights(tmp_path_factory, staged_codec):
    return saved(staged_codec, tmp_path_factory.mktemp("w"))


@pytest.mark.slow
def test_quality_and_preview(work, staged_weights):
    sizes = {}
    for q in (10, 62.5, 100):
        out = work / f"q{q}.hvq"
        r = cli("compress", work / "dog.png", "-q", q, "-m", staged_weights, "-o", out)
        assert r.exit_code == 0, r.output
        sizes[q] = out.stat().st_size
        assert f"quality {q}," in cli("info", out).output
    assert sizes[10] < sizes[62.5] < sizes[100]
    whole = work / "q100.hvq"
    r = cli("decompress", "--preview", whole, "-m", staged_weights, "-o", work / "p.png")
    assert r.exit_code == 0, r.output
    assert Image.open(work / "p.png").size == (160, 272)
    # A preview needs only the top and middle streams: a partial download still previews.
    data = (work / "q100.hvq").read_bytes()
    (work / "part.hvq").write_bytes(data[: len(data) // 2])
    r = cli("decompress", "--preview", work / "part.hvq", "-m", staged_weights)
    assert r.exit_code == 0, r.output
    r = cli("decompress", work / "part.hvq", "-m", staged_weights)
    assert r.exit_code != 0 and "Traceback" not in r.output


def test_quality_out_of_range_is_a_clean_error(work, staged_weights):
    for q in (101, -1, "nan", "high"):
        r = cli("compress", work / "dog.png", "-q", q, "-m", staged_weights)
        assert r.exit_code == 2 and "'-q'" in r.output and "Traceback" not in r.output
        assert not (work / "dog.hvq").exists()

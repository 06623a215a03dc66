"""Files a rerun or a resume trusts are never half-written: sample PNGs and feature arrays are
written beside and renamed, a truncated PNG left in a sampling work folder is made again, and a
full disk is one line naming the file and the free space."""

import contextlib
import os
import subprocess
import uuid

import numpy as np
import pytest
from PIL import Image

from lumos.sample import write_batches
from lumos.store import write_shard
from lumos.utils import WriteError, atomic_write, png_complete


def _images(start, stop):
    """Deterministic 8x8 images, one per index."""
    return [np.full((8, 8, 3), 10 * i, dtype=np.uint8) for i in range(start, stop)]


def test_a_truncated_png_in_the_work_folder_is_made_again(tmp_path):
    calls = []

    def make(start, stop):
        calls.append(start)
        return _images(start, stop)

    work = tmp_path / "work"
    write_batches(6, 2, make, str(tmp_path / "first"), str(work))  # moves work -> first
    work.mkdir()
    for f in sorted((tmp_path / "first").glob("*.png")):
        (work / f.name).write_bytes(f.read_bytes())
    whole = (work / "000003.png").read_bytes()
    (work / "000003.png").write_bytes(whole[: len(whole) // 2])  # a kill mid-write (older versions)
    assert not png_complete(work / "000003.png") and png_complete(work / "000002.png")
    calls.clear()
    write_batches(6, 2, make, str(tmp_path / "out"), str(work))
    assert calls == [2]  # only the batch holding the truncated PNG
    for i in range(6):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / f"{i:06d}.png")), _images(i, i + 1)[0])
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left


def test_a_failed_write_leaves_nothing_under_the_real_name(tmp_path):
    def broken(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(WriteError, match=r"cannot write .*x\.npy: no space left on the device \([0-9.]+ MiB free in "):
        atomic_write(tmp_path / "x.npy", broken)
    assert list(tmp_path.iterdir()) == []


@contextlib.contextmanager
def small_disk(tmp_path, size="1m"):
    """A 1 MiB tmpfs (root), or None where mounting is not allowed."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_names_the_file_and_the_free_space(tmp_path, monkeypatch):
    """Feature arrays larger than the disk: one WriteError naming the .npy file and the free
    space, instead of numpy's 'N requested and M written'; nothing half-written stays."""
    arrays = {"latents": np.zeros((64, 4, 32, 32), dtype=np.float32)}  # 1 MiB
    with small_disk(tmp_path) as disk:
        if disk is None:  # no tmpfs: numpy's short write, as it raises it on a full disk
            def short_write(*_a, **_k):
                raise OSError("1048576 requested and 57280 written")
            monkeypatch.setattr(np, "save", short_write)
            monkeypatch.setattr("shutil.disk_usage", lambda _p: type("U", (), {"free": 0})())
            disk = tmp_path
        with pytest.raises(WriteError) as err:
            write_shard(disk / "features", "shard-00000", arrays)
        message = str(err.value)
        assert "shard-00000/latents.npy: no space left on the device" in message and "MiB free in" in message
        assert not any(p.name.endswith(".npy") for p in (disk / "features" / "shard-00000").iterdir())


def test_the_cli_reports_a_write_error_in_one_line(tmp_path, capsys, monkeypatch):
    """`lumos` turns a WriteError into one line on stderr and exit status 1."""
    import lumos.commands.evaluate as evaluate
    from lumos.cli import main

    def deny(_tmp):
        raise OSError(13, "Permission denied")

    def fails(_args):
        atomic_write(tmp_path / "fid.json", deny)

    monkeypatch.setattr(evaluate, "cmd_fid", fails)
    with pytest.raises(SystemExit):
        main(["fid", "--run", "r", "--split", "s", "--reference", "x", "--out", str(tmp_path / "o.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fid.json: permission denied" in err[0]

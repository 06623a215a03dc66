"""Tests for real-video ingestion (lumos.data.videos): decoding, skip reasons, sources, parts, gather.

The videos are written here with PyAV: a white 8x8 square on black whose left edge is at
x = 8 + 4 + (i % 64) in frame i, between a red bar (left 8 columns) and a blue one (right 8): the
square centre crop of a 96x80 frame drops the bars, and the square's position tells which frame
was picked.
"""

import json
import os

import numpy as np
import pytest

av = pytest.importorskip("av")

from lumos.data import videos  # noqa: E402
from lumos.data.curate import gather_split  # noqa: E402
from lumos.data.worlds.shapes_video import read_clips  # noqa: E402
from lumos.data.shards import read_records, split_index  # noqa: E402
from lumos.data.videos import (  # noqa: E402
    REASONS,
    BadVideo,
    decode_clip,
    gather_video_parts,
    ingest_part,
    iter_unit,
    video_units,
    window,
)

W, H = 96, 80  # centre crop: columns 8..88


def frame_image(i: int, w: int = W, h: int = H) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :8] = (255, 0, 0)
    img[:, w - 8:] = (0, 0, 255)
    x = 12 + i % 64
    img[36:44, x:x + 8] = 255
    return img


def write_video(path, n: int = 64, w: int = W, h: int = H, codec: str = "libx264", pix_fmt: str = "yuv420p",
                fmt: str | None = None, rate: int = 24, rotation: int | None = None):
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if codec == "libx264":
            s.options = {"crf": "18", "preset": "ultrafast"}
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(frame_image(i, w, h), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def square_frame(frame: np.ndarray) -> int:
    """Which source frame (mod 64) a decoded, cropped (80x80) frame shows: from the square's left edge."""
    grey = frame.astype(float).mean(-1)
    cols = np.nonzero(grey[36:44].mean(0) > 128)[0]
    assert len(cols), "no square"
    return int(round(cols.mean() - 3.5)) + 8 - 12


@pytest.fixture(scope="module")
def vids(tmp_path_factory):
    d = tmp_path_factory.mktemp("vids")
    return {
        "mp4": write_video(d / "a.mp4"),
        "long": write_video(d / "long.mp4", n=600),
        "rot": write_video(d / "rot.mp4", rotation=90),
        "short": write_video(d / "short.mp4", n=40),
    }


# ----------------------------------------------------------------------------- decoding


def test_decode_middle_window_shape_and_frames(vids):
    info = {}
    clip = decode_clip(vids["mp4"], frames=16, stride=3, size=80, info=info)
    assert clip.shape == (16, 80, 80, 3) and clip.dtype == np.uint8
    start = (64 - window(16, 3)) // 2  # 9: centred
    assert info["start_frame"] == start and info["fps"] == pytest.approx(24.0)
    assert [square_frame(f) for f in clip] == [start + 3 * k for k in range(16)]
    # the crop dropped the side bars: no red or blue is left
    assert clip[:, :, :4].max() < 40 and clip[:, :, -4:].max() < 40


@pytest.mark.parametrize("start,first", [("first", 0), (5, 5), (np.int64(7), 7)])
def test_decode_start_and_stride(vids, start, first):
    clip = decode_clip(vids["mp4"], frames=8, stride=2, size=80, start=start)
    assert [square_frame(f) for f in clip] == [first + 2 * k for k in range(8)]


def test_decode_resizes_and_accepts_bytes(vids):
    data = vids["mp4"].read_bytes()
    small = decode_clip(data, size=40)
    assert small.shape == (16, 40, 40, 3)
    full = decode_clip(vids["mp4"], size=80)
    # resized frames are the antialiased downscale of the full ones (square brighter than 100 at its place)
    np.testing.assert_allclose(small.astype(float).mean(), full.astype(float).mean(), atol=2.0)


@pytest.mark.parametrize("codec,pix_fmt,fmt,suffix", [
    ("libx264", "yuv420p10le", "mp4", "mp4"),
    ("libx264", "yuvj420p", "mp4", "mp4"),
    ("ffv1", "gray", "matroska", "mkv"),
    ("libx264rgb", "rgb24", "matroska", "mkv"),
    ("libvpx-vp9", "yuv420p", "webm", "webm"),
    ("mpeg4", "yuv420p", "avi", "avi"),
])
def test_decode_codecs_and_pixel_formats(tmp_path, codec, pix_fmt, fmt, suffix):
    try:
        path = write_video(tmp_path / f"v.{suffix}", codec=codec, pix_fmt=pix_fmt, fmt=fmt)
    except (av.FFmpegError, ValueError) as e:  # an encoder this FFmpeg build lacks
        pytest.skip(f"cannot encode {codec}/{pix_fmt}: {e}")
    clip = decode_clip(path, size=80)
    assert clip.shape == (16, 80, 80, 3)
    assert [square_frame(f) for f in clip] == [9 + 3 * k for k in range(16)]


def test_decode_applies_rotation(vids):
    plain = decode_clip(vids["mp4"], size=80)
    info = {}
    rotated = decode_clip(vids["rot"], size=80, info=info)
    assert info["rotation"] == 90
    np.testing.assert_array_equal(rotated, np.rot90(plain, 1, axes=(1, 2)))


def test_decode_stops_at_window_end(vids):
    """A long video is decoded only up to the window's last frame."""
    info = {}
    clip = decode_clip(vids["long"], start="first", size=80, info=info)
    assert info["decoded"] == window(16, 3) == 46
    assert [square_frame(f) for f in clip] == [3 * k for k in range(16)]
    info = {}
    clip = decode_clip(vids["long"], size=80, info=info)
    start = (600 - 46) // 2
    assert info["start_frame"] == start and info["decoded"] == start + 46 < 600
    assert [square_frame(f) for f in clip] == [(start + 3 * k) % 64 for k in range(16)]


def test_decode_recentres_when_header_overstates_length(vids, monkeypatch):
    monkeypatch.setattr(videos, "frame_count", lambda stream, container: 1000)
    for src in (vids["mp4"], vids["mp4"].read_bytes()):  # a second pass over a path or over bytes
        info = {}
        clip = decode_clip(src, size=80, info=info)
        assert info["decoded"] == 64 + 55  # a full pass, then the window centred on 64 frames
        assert info["start_frame"] == 9
        assert [square_frame(f) for f in clip] == [9 + 3 * k for k in range(16)]


def test_decode_bad_inputs(tmp_path, vids):
    def reason(src, **kw):
        with pytest.raises(BadVideo) as e:
            decode_clip(src, **kw)
        assert e.value.reason in REASONS
        return e.value.reason

    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video\n" * 50)
    os.symlink(tmp_path / "gone.mp4", tmp_path / "link.mp4")
    data = vids["mp4"].read_bytes()
    assert reason(tmp_path / "nothing.mp4") == "missing"
    assert reason(tmp_path / "link.mp4") == "missing"
    assert reason(tmp_path / "empty.mp4") == "empty"
    assert reason(b"") == "empty"
    assert reason(tmp_path / "text.mp4") == "not_a_video"
    assert reason(data[: len(data) // 2]) == "corrupt"  # cut off: the moov atom is gone
    assert reason(vids["short"]) == "too_short"
    assert reason(vids["mp4"], frames=32, stride=3) == "too_short"
    assert reason(vids["mp4"], max_pixels=W * H - 1) == "too_large"
    assert reason(vids["mp4"], start=20) == "too_short"  # 20 + 46 > 64
    from PIL import Image

    Image.fromarray(frame_image(0)).save(tmp_path / "still.png")
    Image.fromarray(frame_image(0)).save(tmp_path / "still.jpg")
    assert reason((tmp_path / "still.png").read_bytes()) == "not_a_video"  # a still image is no video
    assert reason(tmp_path / "still.jpg") == "not_a_video"


# ----------------------------------------------------------------------------- ingestion


def test_ingest_counts_every_skip_reason(tmp_path, vids):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    write_video(src / "good1.mp4")
    write_video(src / "sub" / "good2.webm", codec="libvpx-vp9", fmt="webm")
    (src / "sub" / "good2.txt").write_text("a white square moves right\n")
    os.symlink(src / "gone.mp4", src / "broken.mp4")
    (src / "empty.mp4").write_bytes(b"")
    (src / "text.mp4").write_text("hello\n" * 100)
    data = vids["mp4"].read_bytes()
    (src / "trunc.mp4").write_bytes(data[: len(data) // 2])
    write_video(src / "short.mov", n=30)
    write_video(src / "large.mkv", w=128, h=96, fmt="matroska")
    (src / "notes.txt").write_text("ignored: not a video suffix")
    out = tmp_path / "part"
    report = ingest_part("ucf", src, "folder", out, frames=16, stride=3, size=32, shard_size=4,
                         max_pixels=W * H, files_per_unit=3)
    assert report["totals"] == {"seen": 8, "kept": 2, "missing": 1, "empty": 1, "not_a_video": 1, "corrupt": 1,
                                "too_short": 1, "too_large": 1}
    assert json.loads((out / "curation.json").read_text())["by_source"]["ucf"] == report["totals"]
    index = split_index(out)
    assert index["n"] == 2 and index["frames"] == 16 and index["stride"] == 3 and index["frame_size"] == [32, 32]
    clips = list(read_clips(out))
    assert [r["key"] for _, r in clips] == ["ucf/good1.mp4", "ucf/sub/good2.webm"]
    assert all(v.shape == (16, 32, 32, 3) for v, _ in clips)
    rec = clips[1][1]
    assert rec["caption"] == rec["short_caption"] == "a white square moves right"
    assert "caption" not in clips[0][1]
    assert rec["fps"] == pytest.approx(24.0) and rec["start_frame"] == 9 and rec["source"] == "ucf"
    assert (out / "preview.gif").exists() and (out / "preview.png").exists()


def test_webdataset_source_carries_keys_and_captions(tmp_path, vids):
    from webdataset import TarWriter

    shards = tmp_path / "wds"
    shards.mkdir()
    mp4 = vids["mp4"].read_bytes()
    with TarWriter(str(shards / "00000.tar")) as tar:
        tar.write({"__key__": "000000000", "mp4": mp4, "txt": b"a square slides", "json": b'{"url": "x"}'})
        tar.write({"__key__": "000000001", "mp4": mp4, "json": json.dumps({"caption": "from json"}).encode()})
    with TarWriter(str(shards / "00001.tar")) as tar:
        tar.write({"__key__": "000010000", "mp4": mp4})
        tar.write({"__key__": "000010001", "json": b"{}"})  # no video member
        tar.write({"__key__": "000010002", "mp4": mp4, "json": b"[1, 2]"})  # metadata not an object
    units = video_units(shards, "webdataset")
    assert [u.index for u in units] == [0, 1]
    items = list(iter_unit(units[0]))
    key, video, caption, meta = items[0]
    assert key == "00000/000000000" and video == mp4 and caption == "a square slides" and meta == {"url": "x"}
    out = tmp_path / "out"
    report = ingest_part("webvid", shards, "webdataset", out, size=32, shard_size=2, files_per_unit=1)
    assert report["totals"] == {"seen": 5, "kept": 3, "no_video": 1, "bad_json": 1}
    recs = read_records(out)
    assert [r["key"] for r in recs] == ["webvid/00000/000000000", "webvid/00000/000000001", "webvid/00001/000010000"]
    assert [r.get("caption") for r in recs] == ["a square slides", "from json", None]
    assert [r.get("short_caption") for r in recs] == ["a square slides", "from json", None]


def test_limit_stops_the_job(tmp_path, vids):
    src = tmp_path / "src"
    src.mkdir()
    for k in range(3):
        os.link(vids["mp4"], src / f"v{k}.mp4")
    report = ingest_part("x", src, "folder", tmp_path / "out", size=16, shard_size=8, limit=2, preview=False)
    assert report["totals"] == {"seen": 2, "kept": 2}


def test_parts_then_gather(tmp_path, vids):
    src = tmp_path / "src"
    src.mkdir()
    for k in range(5):
        write_video(src / f"v{k}.mp4", n=64 + 3 * k)  # different lengths: different start frames
    (src / "v5.mp4").write_bytes(b"")
    folder_units = video_units(src, "folder", files_per_unit=2)
    assert [u.files for u in folder_units] == [("v0.mp4", "v1.mp4"), ("v2.mp4", "v3.mp4"), ("v4.mp4", "v5.mp4")]
    parts = []
    for p in range(2):
        parts.append(tmp_path / f"part{p}")
        ingest_part("msrvtt", src, "folder", parts[-1], size=24, shard_size=2, part=p, parts=2, files_per_unit=2)
    assert [r["key"] for r in read_records(parts[0])] == ["msrvtt/v0.mp4", "msrvtt/v1.mp4", "msrvtt/v4.mp4"]
    assert [r["key"] for r in read_records(parts[1])] == ["msrvtt/v2.mp4", "msrvtt/v3.mp4"]
    out = tmp_path / "split"
    index = gather_video_parts(parts, out)
    keys = [r["key"] for _, r in read_clips(out)]
    assert keys == ["msrvtt/v0.mp4", "msrvtt/v1.mp4", "msrvtt/v4.mp4", "msrvtt/v2.mp4", "msrvtt/v3.mp4"]
    assert sorted(keys) == [f"msrvtt/v{k}.mp4" for k in range(5)]  # each clip exactly once
    assert index["n"] == 5 and index["frames"] == 16 and index["stride"] == 3 and index["frame_size"] == [24, 24]
    assert split_index(out)["frame_size"] == [24, 24] and split_index(out)["clip_frames"] == 46
    report = json.loads((out / "curation.json").read_text())
    assert report["totals"] == {"seen": 6, "kept": 5, "empty": 1}
    for (clip, rec) in read_clips(out):
        assert clip.shape == (16, 24, 24, 3)
        n = 64 + 3 * int(rec["key"][-5])
        assert rec["start_frame"] == (n - 46) // 2
    assert (out / "preview.gif").exists()
    # gather_split alone keeps the meta too (it copies a part's index), and cuts to a limit
    cut = gather_split([str(p) for p in parts], str(tmp_path / "cut"), limit=4, sheet=False)
    assert cut["n"] == 4 and cut["frames"] == 16 and cut["frame_size"] == [24, 24]
    assert [r["key"] for _, r in read_clips(tmp_path / "cut")] == keys[:4]
    assert json.loads((tmp_path / "cut" / "curation.json").read_text())["totals"]["over_n"] == 1


def test_variable_frame_rate_counts_frames_as_stored(tmp_path):
    """Irregular timestamps: frames are still picked every `stride` stored frames."""
    from fractions import Fraction

    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for i in range(64):
            f = av.VideoFrame.from_ndarray(frame_image(i), format="rgb24")
            f.pts, f.time_base = pts, Fraction(1, 1000)
            pts += (20, 50, 80)[i % 3]
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    clip = decode_clip(path, size=80, start="first")
    assert [square_frame(f) for f in clip] == [3 * k for k in range(16)]


def test_broken_shards_are_counted_not_raised(tmp_path, vids):
    from webdataset import TarWriter

    shards = tmp_path / "wds"
    shards.mkdir()
    with TarWriter(str(shards / "a.tar")) as tar:
        for k in range(3):
            tar.write({"__key__": f"{k:05d}", "mp4": vids["mp4"].read_bytes()})
    data, mp4 = (shards / "a.tar").read_bytes(), vids["mp4"].read_bytes()
    cut = data.find(mp4, data.find(mp4) + 1) + len(mp4) // 2
    (shards / "b.tar").write_bytes(data[:cut])  # cut off inside its second sample's video
    (shards / "c.tar").write_bytes(b"garbage" * 10)
    report = ingest_part("w", shards, "webdataset", tmp_path / "out", size=16, shard_size=8, preview=False)
    t = report["totals"]
    assert t["kept"] == 4 and t["bad_tar"] == 2  # a's 3 and b's first; b's cut sample and c are bad_tar
    assert t["seen"] == sum(v for k, v in t.items() if k != "seen")  # every sample has exactly one outcome

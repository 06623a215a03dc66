"""Real video datasets (WebVid-10M, OpenVid, UCF-101, MSR-VTT) streamed into the video split format.

A video split (`lumos.data.worlds.shapes_video`) stores each clip as ONE PNG strip (H, frames W, 3): its
``frames`` frames (16) sampled ``stride`` (3) apart (paper G.4), tiled left to right, in webdataset
tar shards (`lumos.data.shards.ShardWriter`), with ``frames``, ``stride`` and ``frame_size`` in the
index. This module brings real video into that same format, so features, training and metrics
read real and synthetic clips alike (DESIGN.md §9: shards in, shards out, memory flat):

- :func:`decode_clip` decodes one video (a path or its bytes) with PyAV: first video stream, frames
  decoded in order only as far as the window's last frame (nothing else is kept), the window
  centred in the video (``start="middle"``) or at its start, each picked frame turned upright
  (display-matrix rotation), centre-cropped to a square and resized like a curated image
  (`lumos.data.curate.center_crop_resize`: PIL bicubic, antialiased). Every bad input is a
  :class:`BadVideo` whose ``reason`` (one of :data:`REASONS`) is counted, never a crash.
- Sources: a folder of video files (:data:`VIDEO_SUFFIXES`, recursive, sorted; a caption in
  ``<video>.txt``) or webdataset tar shards as video2dataset writes them (``<key>.mp4|webm|avi`` +
  ``<key>.txt`` caption + ``<key>.json`` metadata). :func:`video_units` cuts a source into units
  (one tar shard, or ``files_per_unit`` files of a folder); :func:`iter_unit` streams one unit.
- :func:`ingest_part`: job ``part`` of ``parts`` takes every ``parts``-th unit, writes its kept
  clips to its own shards and counts every skip by reason in ``curation.json``;
  :func:`gather_video_parts` joins the parts (`lumos.data.curate.gather_split`) and draws the
  preview. One video is decoded at a time and one shard is open: memory does not grow with the
  data.

Frame indices count decoded frames in presentation order, so ``stride`` is in the video's native
frames (for a variable-frame-rate video, every ``stride``-th frame as stored).
"""

from __future__ import annotations

import io
import json
import numbers
import os
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lumos.data.sources import Skip, tar_items
from lumos.utils import log, progress

REASONS = ("missing", "empty", "not_a_video", "corrupt", "too_short", "too_large")
# Reasons a source's reading gives (not the video's decoding): a broken tar member, a sample
# without a video member, metadata that is not a JSON object.
SOURCE_REASONS = ("bad_tar", "no_video", "bad_json")

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mkv", ".mov")
WDS_VIDEO_KEYS = ("mp4", "webm", "avi", "mkv", "mov")
MAX_PIXELS = 1 << 24  # width * height of a frame: above 4K (8.8 Mpx), far below what breaks memory

# FFmpeg demuxers that open a still image or text as a "video": not videos to us (the still-image
# demuxers are all named `<codec>_pipe`, plus image2 for numbered files).
_NOT_VIDEO_FORMATS = ("tty", "image2", "image2pipe", "lrc", "srt", "ass", "webvtt")


def _not_video_format(name: str) -> bool:
    return any(n in _NOT_VIDEO_FORMATS or n.endswith("_pipe") for n in name.split(","))


class BadVideo(Exception):
    """A video ingestion skips; ``.reason`` (one of :data:`REASONS`) is counted in curation.json."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# -----------------------------------------------------------------------------
# Decoding
# -----------------------------------------------------------------------------


def window(frames: int, stride: int) -> int:
    """How many consecutive frames a clip of ``frames`` frames ``stride`` apart spans."""
    return (frames - 1) * stride + 1


def _looks_like_video(head: bytes) -> bool:
    """Whether a file's first bytes carry a video container's signature (so that a file FFmpeg
    cannot open is ``corrupt``, e.g. a cut-off mp4 without its moov atom, not ``not_a_video``)."""
    return (head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
            or head[:4] == b"\x1a\x45\xdf\xa3"  # Matroska / WebM (EBML)
            or (head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"))
            or head[:3] == b"FLV"
            or head[:4] == b"\x00\x00\x01\xba"  # MPEG program stream
            or head[:4] == b"\x30\x26\xb2\x75"  # ASF / WMV
            or (len(head) > 188 and head[0] == 0x47 and head[188] == 0x47))  # MPEG transport stream


def _open_input(source):
    """A file object or path PyAV can open, and the first bytes (for sniffing); BadVideo for a
    missing or empty input."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise BadVideo("empty")
        return io.BytesIO(data), data[:256]
    path = Path(source)
    try:
        st = path.stat()  # follows symlinks: a broken one is "missing"
    except (FileNotFoundError, NotADirectoryError):
        raise BadVideo("missing", str(path)) from None
    except OSError as e:
        raise BadVideo("corrupt", f"{path}: {e}") from None
    if not path.is_file():
        raise BadVideo("not_a_video", f"{path}: not a regular file")
    if st.st_size == 0:
        raise BadVideo("empty", str(path))
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as e:
        raise BadVideo("corrupt", f"{path}: {e}") from None
    return str(path), head


def frame_rate(stream) -> float | None:
    """The stream's native frame rate (average, else guessed), None when unknown."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return None


def frame_count(stream, container) -> int | None:
    """How many frames the stream holds, from its header: the frame count, else its duration (or
    the container's) times the frame rate; None when unknown. An estimate: headers can be wrong."""
    import av

    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    fps = frame_rate(stream)
    if not fps:
        return None
    if stream.duration and stream.time_base:
        return int(round(float(stream.duration * stream.time_base) * fps))
    if container.duration and container.duration > 0:
        return int(round(container.duration / av.time_base * fps))
    return None


def _square(frame, size: int, rotation: int) -> np.ndarray:
    """A decoded frame -> uint8 (size, size, 3) RGB, upright, centre-cropped and resized as a
    curated image is."""
    from PIL import Image

    from lumos.data.curate import center_crop_resize

    rgb = frame.to_ndarray(format="rgb24")
    out = center_crop_resize(Image.fromarray(rgb), size)  # the square crop commutes with a quarter turn
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(out, k)) if k else out


def decode_clip(source, frames: int = 16, stride: int = 3, size: int = 256, start="middle",
                max_pixels: int = MAX_PIXELS, info: dict | None = None, threads: int = 1) -> np.ndarray:
    """``frames`` frames ``stride`` apart of one video as uint8 (frames, size, size, 3).

    ``source``: a path or the file's bytes. ``start``: ``"middle"`` (the window centred in the
    video, by the header's frame count or duration; the first frames when neither is known),
    ``"first"`` (frame 0) or a frame index. Frames are decoded in order up to the window's last
    one and only the picked ones are converted; if the header promised more frames than the video
    holds, the window is re-centred on the true count (a second pass). Raises :class:`BadVideo`.

    ``info``, if a dict, receives ``start_frame``, ``fps``, ``decoded`` (frames the decoder gave,
    over all passes), ``header_frames``, ``width``, ``height`` and ``rotation``. ``threads``: the
    decoder's threads (1: one job per core)."""
    import av

    if frames < 1 or stride < 1:
        raise ValueError(f"frames ({frames}) and stride ({stride}) must be >= 1")
    if isinstance(start, numbers.Integral) and not isinstance(start, bool) and start >= 0:
        start = int(start)
    elif start not in ("middle", "first"):
        raise ValueError(f"start must be 'middle', 'first' or a frame index >= 0, not {start!r}")
    span = window(frames, stride)
    target, head = _open_input(source)
    info = info if info is not None else {}
    info["decoded"] = 0
    total = None  # frame count learnt by decoding to the end
    for _ in range(2):
        if not isinstance(target, str):
            target.seek(0)
        out, total = _decode_pass(av, target, head, frames, stride, span, size, start, max_pixels, info, threads)
        if out is not None:
            return out
        start = max(0, (total - span) // 2)  # the header lied about the length: centre on the truth
    raise BadVideo("corrupt", "frame count changed between passes")


def _decode_pass(av, target, head, frames, stride, span, size, start, max_pixels, info, threads):
    """One decoding pass; (clip, None), or (None, true frame count) when a middle window placed by
    the header ran past the end of a video that still holds ``span`` frames."""
    try:
        container = av.open(target, "r", metadata_errors="ignore")
    except av.FFmpegError as e:
        reason = "corrupt" if _looks_like_video(head) else "not_a_video"
        raise BadVideo(reason, f"{type(e).__name__}: {e}") from None
    except (OSError, ValueError, EOFError, UnicodeDecodeError) as e:
        raise BadVideo("corrupt", f"{type(e).__name__}: {e}") from None
    with container:
        if not container.streams.video or _not_video_format(container.format.name):
            raise BadVideo("not_a_video", f"format {container.format.name}, no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise BadVideo("corrupt", f"video stream without a frame size ({width}x{height})")
        if width * height > max_pixels:
            raise BadVideo("too_large", f"{width}x{height} > {max_pixels} pixels")
        header = frame_count(stream, container)
        fps = frame_rate(stream)
        if start == "middle":
            first = max(0, (header - span) // 2) if header else 0
        else:
            first = 0 if start == "first" else int(start)
        last = first + (frames - 1) * stride
        info.update(start_frame=first, fps=fps, header_frames=header, width=width, height=height, rotation=0)
        ctx.thread_count = threads
        out = np.empty((frames, size, size, 3), np.uint8)
        idx = -1
        try:
            for frame in container.decode(stream):
                idx += 1
                info["decoded"] += 1
                if idx >= first and (idx - first) % stride == 0:
                    if idx == first:
                        info["rotation"] = int(frame.rotation or 0)
                    out[(idx - first) // stride] = _square(frame, size, info["rotation"])
                    if idx == last:
                        return out, None
        except av.FFmpegError as e:
            raise BadVideo("corrupt", f"frame {idx + 1}: {type(e).__name__}: {e}") from None
        except (OSError, ValueError, EOFError, MemoryError) as e:
            raise BadVideo("corrupt", f"frame {idx + 1}: {type(e).__name__}: {e}") from None
    n = idx + 1
    if n == 0:
        raise BadVideo("corrupt", "no frame could be decoded")
    if n < span:
        raise BadVideo("too_short", f"{n} frames < {span} ({frames} frames, stride {stride})")
    if start == "middle" and first > 0:
        return None, n
    raise BadVideo("too_short", f"{n} frames: start {first} + {span} frames runs past the end")


# -----------------------------------------------------------------------------
# Sources
# -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoUnit:
    """A unit of work: one tar shard (``shard``) or a run of folder files (``files``, relative to
    ``root``)."""

    format: str
    root: str
    index: int
    shard: str | None = None
    files: tuple = ()


@dataclass
class VideoItem:
    """One readable sample: its key, the video (a Path or bytes), its caption and its metadata."""

    key: str
    video: object
    caption: str | None = None
    meta: dict | None = None

    def __iter__(self):  # unpacks as (key, video, caption, meta)
        return iter((self.key, self.video, self.caption, self.meta if self.meta is not None else {}))


def _walk(root: Path):
    """Video files under ``root`` in sorted order, one directory listed at a time (links included,
    broken ones too: reading them is a counted skip)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(VIDEO_SUFFIXES):
                yield Path(dirpath) / name


def video_units(root, format: str = "folder", files_per_unit: int = 1000) -> list[VideoUnit]:
    """A source cut into units: one per tar shard (``format="webdataset"``: ``root`` is a folder of
    ``*.tar``, sorted, or one tar), or one per ``files_per_unit`` video files of a folder (the
    listing is held: fine for UCF-101 / MSR-VTT size folders; paper-scale sets come as shards)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"video source '{root}' not found")
    if format == "webdataset":
        shards = sorted(root.glob("*.tar")) if root.is_dir() else [root]
        return [VideoUnit(format, str(root), u, shard=str(s)) for u, s in enumerate(shards)]
    if format != "folder":
        raise ValueError(f"video source format must be 'folder' or 'webdataset', not '{format}'")
    if files_per_unit < 1:
        raise ValueError(f"files_per_unit must be >= 1, not {files_per_unit}")
    units, run = [], []
    for path in _walk(root):
        run.append(path.relative_to(root).as_posix())
        if len(run) == files_per_unit:
            units.append(VideoUnit(format, str(root), len(units), files=tuple(run)))
            run = []
    if run:
        units.append(VideoUnit(format, str(root), len(units), files=tuple(run)))
    return units


def iter_unit(unit: VideoUnit):
    """Stream a unit's samples: :class:`VideoItem` (unpacks as ``(key, video, caption, meta)``;
    ``video`` a Path for a folder, bytes for a shard) or a :class:`lumos.data.sources.Skip`
    (reason in :data:`SOURCE_REASONS`) for a sample that cannot be read. Keys: the file's path
    relative to the root, or ``<shard stem>/<sample key>``."""
    if unit.format == "folder":
        root = Path(unit.root)
        for rel in unit.files:
            path = root / rel
            txt = path.with_suffix(".txt")
            try:
                caption = (txt.read_text(errors="replace").strip() or None) if txt.is_file() else None
            except OSError:
                caption = None
            yield VideoItem(rel, path, caption, {})
    else:
        yield from _iter_tar(Path(unit.shard))


def _iter_tar(shard: Path):
    """The samples of one video2dataset shard (`lumos.data.sources.tar_items`) as VideoItems; a
    shard the tar reader cannot go on with is one more `bad_tar` Skip."""
    try:
        for item in tar_items(shard, WDS_VIDEO_KEYS, "no_video"):
            if isinstance(item, Skip):
                yield item
                continue
            key, video, meta, caption = item
            yield VideoItem(key, video, caption if isinstance(caption, str) and caption else None, meta)
    except (tarfile.TarError, OSError, ValueError) as err:  # what the member handler does not cover
        yield Skip("bad_tar", f"{shard}: {err}")


# -----------------------------------------------------------------------------
# Ingestion jobs
# -----------------------------------------------------------------------------


def ingest_part(name: str, root, format: str, out_dir, frames: int = 16, stride: int = 3, size: int = 256,
                shard_size: int = 100, part: int = 0, parts: int = 1, limit: int | None = None,
                max_pixels: int = MAX_PIXELS, files_per_unit: int = 1000, start="middle",
                source: str | None = None, preview: bool = True) -> dict:
    """Ingest job ``part`` of ``parts`` of video split ``name`` from the video source at ``root``.

    The job reads units ``part, part + parts, ...`` of :func:`video_units`, decodes each video
    (:func:`decode_clip`) and writes each kept clip as a (size, frames size, 3) PNG strip with its
    record (``key`` = ``<source>/<sample key>``, ``index`` = its place among the job's clips,
    ``frames``, ``stride``, ``frame_size``, ``source``, ``fps``, ``start_frame``, and
    ``caption`` / ``short_caption`` when the sample has one) to its own shards in ``out_dir``,
    keeping at most ``limit`` clips. Every sample is counted in ``curation.json`` (the layout
    `lumos.data.curate.gather_split` sums): ``seen``, ``kept`` and one count per skip reason
    (:data:`REASONS`, :data:`SOURCE_REASONS`). Returns that report."""
    from lumos.data.worlds.shapes_video import tile_frames
    from lumos.data.shards import ShardWriter

    if not 0 <= part < parts:
        raise ValueError(f"part {part} outside 0..{parts - 1}")
    source = source or name
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    units = video_units(root, format, files_per_unit)[part::parts]
    writer = ShardWriter(out, shard_size, "png", source="videos", split=name, frames=frames, stride=stride,
                         frame_size=[size, size], clip_frames=window(frames, stride), video_source=source)
    counts = Counter()
    bar = progress(desc=f"ingest {name} part {part}/{parts}", unit="clip")
    done = False
    for unit in units:
        for item in iter_unit(unit):
            if limit is not None and counts["kept"] >= limit:
                done = True
                break
            counts["seen"] += 1
            bar.update()
            if isinstance(item, Skip):
                counts[item.reason] += 1
                log.warning("skipped (%s) %s", item.reason, item.detail)
                continue
            key, video, caption, meta = item
            info: dict = {}
            try:
                clip = decode_clip(video, frames, stride, size, start, max_pixels, info)
            except BadVideo as bad:
                counts[bad.reason] += 1
                log.warning("skipped (%s) %s/%s: %s", bad.reason, source, key, bad.detail)
                continue
            record = {"key": f"{source}/{key}", "index": int(counts["kept"]), "frames": int(frames),
                      "stride": int(stride), "frame_size": [int(size), int(size)], "source": source,
                      "fps": info.get("fps"), "start_frame": int(info["start_frame"]), "part": int(part)}
            if caption:
                record.update(caption=caption, short_caption=caption)
            writer.write(tile_frames(clip), record)
            counts["kept"] += 1
        if done:
            break
    bar.close()
    index = writer.close()
    counts.setdefault("kept", 0)
    report = {"split": name, "part": part, "parts": parts, "totals": dict(counts), "by_source": {source: dict(counts)}}
    (out / "curation.json").write_text(json.dumps(report, indent=1))
    if preview and index["n"]:
        from lumos.data.worlds.shapes_video import preview as draw_preview

        draw_preview(out, out / "preview.gif")
    log.info("%s part %d/%d: %s", name, part, parts, dict(counts))
    return report


def gather_video_parts(parts: list, out_dir, limit: int | None = None, preview: bool = True) -> dict:
    """Join ingest parts into one video split (`lumos.data.curate.gather_split`: shards linked in
    part order and renumbered, ``curation.json`` summed, cut to ``limit`` clips), without its
    contact sheet (strips are 16 frames wide) but with the video ``preview.gif`` / ``.png``; the
    index keeps ``frames``, ``stride`` and ``frame_size`` (taken from a part that kept clips)."""
    from lumos.data.curate import gather_split
    from lumos.data.shards import split_index

    index = gather_split([str(p) for p in parts], str(out_dir), limit, sheet=False)
    metas = [split_index(p) for p in parts]
    sized = [m for m in metas if m.get("image_size")] or metas
    keep = ("frames", "stride", "frame_size", "clip_frames", "video_source", "source", "split")
    missing = {k: sized[0][k] for k in keep if k in sized[0] and k not in index}
    if missing:  # gather_split copies the first sized part's index; restore whatever it dropped
        index.update(missing)
        (Path(out_dir) / "index.json").write_text(json.dumps(index, indent=1))
    if preview and index.get("n"):
        from lumos.data.worlds.shapes_video import preview as draw_preview

        draw_preview(out_dir, Path(out_dir) / "preview.gif")
    return index

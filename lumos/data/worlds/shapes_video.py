"""The video Shapes world: clips of moving Shapes-world objects, for image-to-video (I2V).

A clip is a Shapes-world scene (a static background plus 1-2 objects) whose objects move over
``CLIP_FRAMES`` = 48 frames. Each object draws one or two motions from its split's motion mix:

- ``translate``: a straight line from a start to an end point, both inside the image;
- ``bounce``: a constant velocity, reflected off the image borders;
- ``rotate``: a constant angular velocity (only shapes whose rotation is visible: not circles);
- ``scale``: the half-extent grows or shrinks linearly;
- ``colour``: the colour blends linearly from one palette colour to another.

A motion mix is a dict of motion weights plus an optional ``speed`` factor that scales every
rate (translation length, velocity, angular velocity, size change). The three splits follow the
paper's video data (Sec. 4.2.3, G.4): ``video_train`` in WebVid's role (all motions evenly),
``ucf`` in UCF-101's role (large fast motions: translation and rotation) and ``msrvtt`` in
MSR-VTT's role (slower motion: scaling and colour change).

Frame ``f`` of clip ``i`` is a pure function of ``(seed, split_id, i, f)``: the clip's parameters
come from ``np.random.default_rng([seed, split_id, i])`` and each frame is rendered from them
alone. Models see 16 frames sampled with a stride of 3 (G.4). A stored sample is one clip, its
16 frames tiled left to right into one (H, 16 W, 3) PNG strip, so the ordinary shard reader
(`lumos.data.shards`) reads video splits unchanged.

Geometry follows `lumos.data.worlds.shapes`: an object with centre ``(cx, cy)`` and half-extent
``size`` spans ``[cx - size, cx + size)``, pixels are sampled at their centres, and at integer
centre and size with no rotation an object renders exactly as in a still image. Here centres
and sizes are floats so objects move smoothly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lumos.data.worlds.shapes import (
    COLOURS,
    SHAPES,
    Scene,
    ShapeObject,
    _texture_mask,
    choose,
    overlap_ok,
    render_background,
    sample_background,
    sample_texture,
    shade,
    shape_mask,
    short_caption,
    size_range,
)
from lumos.utils import log, progress

# -----------------------------------------------------------------------------
# Vocabulary and splits
# -----------------------------------------------------------------------------

MOTIONS = ("translate", "bounce", "rotate", "scale", "colour")

# Shapes whose rotation changes their mask (a circle looks the same at every angle).
ROTATING_SHAPES = tuple(s for s in SHAPES if s != "circle")

# Farthest point of each unit shape from its centre: how far a turning object reaches.
SHAPE_RADIUS = {"circle": 1.0, "square": math.sqrt(2), "triangle": math.sqrt(2), "diamond": 1.0,
                "cross": math.hypot(1.0, 0.35)}

CLIP_FRAMES = 48  # frames in a clip (G.4: 16 frames with a stride of 3 come from 48)
FRAMES_USED = 16  # frames a model sees
STRIDE = 3  # frame interval between them

# Split ids: apart from the image splits' (`lumos.data.build.SPLIT_IDS`, 0..7) and the 3D ones (20, 21).
VIDEO_SPLITS = {
    "video_train": {  # WebVid's role: every motion equally often, normal speed
        "split_id": 30,
        "motions": {"translate": 1.0, "bounce": 1.0, "rotate": 1.0, "scale": 1.0, "colour": 1.0, "speed": 1.0},
    },
    "ucf": {  # UCF-101's role: large fast motions, translation and rotation dominate
        "split_id": 31,
        "motions": {"translate": 3.0, "bounce": 3.0, "rotate": 3.0, "scale": 0.5, "colour": 0.5, "speed": 1.6},
    },
    "msrvtt": {  # MSR-VTT's role: slower motion, scaling and colour change dominate
        "split_id": 32,
        "motions": {"translate": 0.5, "bounce": 0.5, "rotate": 0.5, "scale": 3.0, "colour": 3.0, "speed": 0.6},
    },
}

# Rates at speed 1 (the motion mix's `speed` multiplies them; colour always blends over the clip).
TRANSLATE_LENGTH = (0.35, 0.6)  # line length, as a fraction of the image width
BOUNCE_SPEED = (0.6, 1.0)  # pixels per frame at 32 px (scales with the image size)
ROTATE_SPEED = (2.5, 5.0)  # degrees per frame
SCALE_CHANGE = (0.4, 0.8)  # the larger size is (1 + this) times the smaller


# -----------------------------------------------------------------------------
# Ground truth
# -----------------------------------------------------------------------------


@dataclass
class MovingObject:
    """One moving object: its look at frame 0 plus the parameters of its motions.

    ``path`` is ``"static"``, ``"line"`` (``(cx, cy)`` + ``f * (vx, vy)``, inside the image by
    construction) or ``"bounce"`` (the same, reflected off the borders). The half-extent goes
    linearly from ``size`` to ``size_end``, the angle from 0 at ``omega`` degrees per frame and the
    colour from ``colour`` to ``colour_end`` over the clip."""

    shape: str
    colour: str
    texture: str
    size: float
    cx: float
    cy: float
    motions: list = field(default_factory=list)
    path: str = "static"
    vx: float = 0.0
    vy: float = 0.0
    omega: float = 0.0
    size_end: float | None = None
    colour_end: str | None = None

    @property
    def max_size(self) -> float:
        """The largest half-extent the object reaches in the clip."""
        return max(self.size, self.size_end if self.size_end is not None else self.size)

    @property
    def reach(self) -> float:
        """How far the object extends from its centre at most: its largest half-extent, times
        the shape's :data:`SHAPE_RADIUS` if it turns."""
        return self.max_size * (SHAPE_RADIUS[self.shape] if self.omega else 1.0)

    @property
    def name(self) -> str:
        """Colour and shape at frame 0, e.g. ``"red circle"``."""
        return f"{self.colour} {self.shape}"

    def to_dict(self) -> dict:
        """JSON-safe dict of the fields (floats exact: JSON keeps a float's shortest repr)."""
        return {k: (float(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "MovingObject":
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


@dataclass
class Clip:
    """A clip: a static square background and moving objects (in drawing order) over ``frames``."""

    image_size: int
    background: str
    background_colours: list
    objects: list
    frames: int = CLIP_FRAMES

    def to_dict(self) -> dict:
        """JSON-safe dict: background, frame count and every object's motion parameters."""
        return {
            "image_size": int(self.image_size),
            "frames": int(self.frames),
            "background": self.background,
            "background_colours": [[int(c) for c in rgb] for rgb in self.background_colours],
            "objects": [o.to_dict() for o in self.objects],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Clip":
        """Inverse of :meth:`to_dict` (a stored record's ``clip`` renders the same frames)."""
        return cls(
            image_size=int(d["image_size"]),
            background=d["background"],
            background_colours=[tuple(int(c) for c in rgb) for rgb in d["background_colours"]],
            objects=[MovingObject.from_dict(o) for o in d["objects"]],
            frames=int(d["frames"]),
        )


# -----------------------------------------------------------------------------
# Motion over time
# -----------------------------------------------------------------------------


def fold(p: float, lo: float, hi: float) -> float:
    """Reflect coordinate ``p`` into ``[lo, hi]`` as a point bouncing between two walls."""
    span = hi - lo
    if span <= 0:
        return (lo + hi) / 2
    q = (p - lo) % (2 * span)
    return lo + (q if q <= span else 2 * span - q)


def bounds(reach: float, image_size: int) -> tuple[float, float]:
    """Range of centre coordinates that keeps an object of ``reach`` inside the image (the
    image centre if it is too large to fit)."""
    lo, hi = reach, image_size - reach
    return (lo, hi) if lo <= hi else (image_size / 2, image_size / 2)


def progress_at(f: int, frames: int) -> float:
    """Fraction of the clip elapsed at frame ``f``: 0 at the first frame, 1 at the last."""
    return f / max(1, frames - 1)


def centre_at(obj: MovingObject, f: int, image_size: int) -> tuple[float, float]:
    """The object's centre at frame ``f``."""
    x, y = obj.cx + f * obj.vx, obj.cy + f * obj.vy
    if obj.path == "bounce":
        lo, hi = bounds(obj.reach, image_size)
        x, y = fold(x, lo, hi), fold(y, lo, hi)
    return x, y


def size_at(obj: MovingObject, f: int, frames: int) -> float:
    """The object's half-extent at frame ``f`` (linear from ``size`` to ``size_end``)."""
    if obj.size_end is None:
        return obj.size
    t = progress_at(f, frames)
    return (1 - t) * obj.size + t * obj.size_end


def rgb_at(obj: MovingObject, f: int, frames: int) -> tuple[int, int, int]:
    """The object's colour at frame ``f`` (linear blend from ``colour`` to ``colour_end``)."""
    a = np.array(COLOURS[obj.colour], float)
    if obj.colour_end is None:
        return tuple(int(c) for c in a)
    t = progress_at(f, frames)
    b = np.array(COLOURS[obj.colour_end], float)
    return tuple(int(c) for c in np.rint((1 - t) * a + t * b))


def angle_at(obj: MovingObject, f: int) -> float:
    """The object's rotation at frame ``f`` in degrees (counter-clockwise on screen)."""
    return obj.omega * f


# -----------------------------------------------------------------------------
# Sampling
# -----------------------------------------------------------------------------


def motion_weights(motions: dict) -> tuple[np.ndarray, float]:
    """A motion mix's probabilities over :data:`MOTIONS` and its ``speed`` (default 1)."""
    unknown = set(motions) - set(MOTIONS) - {"speed"}
    if unknown:
        raise ValueError(f"unknown motions {sorted(unknown)}: known are {MOTIONS} and 'speed'")
    w = np.array([float(motions.get(m, 0.0)) for m in MOTIONS])
    if w.sum() <= 0:
        raise ValueError(f"motion mix {motions} has no positive weight")
    return w / w.sum(), float(motions.get("speed", 1.0))


def sample_motions(rng: np.random.Generator, probs: np.ndarray) -> list[str]:
    """One or two distinct motions drawn with ``probs``; never both ``translate`` and ``bounce``
    (both move the centre: the first drawn is kept)."""
    k = min(int(rng.integers(1, 3)), int((probs > 0).sum()))
    drawn = [MOTIONS[i] for i in rng.choice(len(MOTIONS), size=k, replace=False, p=probs)]
    if "translate" in drawn and "bounce" in drawn:
        drawn.remove("bounce" if drawn.index("translate") < drawn.index("bounce") else "translate")
    return drawn


def sample_sizes(rng: np.random.Generator, image_size: int, scale: bool, speed: float,
                 cap: float) -> tuple[float, float | None]:
    """Start and end half-extents: a Shapes-world size, and for ``scale`` a second size
    ``1 + speed * U(SCALE_CHANGE)`` times larger or smaller (growing or shrinking at random),
    the smaller at least 2 px where ``cap`` allows, the larger at most ``cap``."""
    lo, hi = size_range(image_size)
    size = float(rng.integers(lo, hi + 1))
    if not scale:
        return size, None
    ratio = 1.0 + speed * rng.uniform(*SCALE_CHANGE)
    small = min(max(2.0, size / math.sqrt(ratio)), cap / ratio)
    large = small * ratio
    return (small, large) if rng.random() < 0.5 else (large, small)


def sample_line(rng: np.random.Generator, image_size: int, reach: float, speed: float,
                frames: int = CLIP_FRAMES) -> tuple:
    """A straight path inside the image for an object of ``reach`` (:attr:`MovingObject.reach`):
    start ``(x, y)`` and velocity ``(vx, vy)`` per frame over ``frames``; the length is
    ``speed * U(TRANSLATE_LENGTH)`` of the image, shortened where the room along its direction
    is less."""
    lo, hi = bounds(reach, image_size)
    theta = rng.uniform(0, 2 * math.pi)
    dx, dy = math.cos(theta), math.sin(theta)
    length = speed * rng.uniform(*TRANSLATE_LENGTH) * image_size
    room = min((hi - lo) / max(abs(dx), 1e-9), (hi - lo) / max(abs(dy), 1e-9))
    length = min(length, room)
    x0, x1 = lo - min(0.0, dx * length), hi - max(0.0, dx * length)
    y0, y1 = lo - min(0.0, dy * length), hi - max(0.0, dy * length)
    x, y = rng.uniform(x0, max(x0, x1)), rng.uniform(y0, max(y0, y1))  # max: float round-off
    steps = max(1, frames - 1)
    return x, y, dx * length / steps, dy * length / steps


def sample_path(rng: np.random.Generator, image_size: int, reach: float, motions: list, speed: float,
                frames: int = CLIP_FRAMES) -> tuple:
    """Start centre, velocity and path kind ``(x, y, vx, vy, path)`` of an object of maximum
    ``reach``, for its motions over ``frames``."""
    if "translate" in motions:
        return (*sample_line(rng, image_size, reach, speed, frames), "line")
    x, y = (float(v) for v in rng.uniform(*bounds(reach, image_size), size=2))
    if "bounce" in motions:
        v = speed * rng.uniform(*BOUNCE_SPEED) * image_size / 32
        theta = rng.uniform(0, 2 * math.pi)
        return x, y, v * math.cos(theta), v * math.sin(theta), "bounce"
    return x, y, 0.0, 0.0, "static"


def start_box(obj: MovingObject) -> tuple[float, float, float, float]:
    """The object's box ``(x0, y0, x1, y1)`` at frame 0."""
    return obj.cx - obj.size, obj.cy - obj.size, obj.cx + obj.size, obj.cy + obj.size


def sample_object(
    rng: np.random.Generator, image_size: int, probs: np.ndarray, speed: float, taken: list, boxes: list,
    frames: int = CLIP_FRAMES, tries: int = 20,
) -> MovingObject:
    """One moving object whose (shape, colour) pairs at the start and the end are not in
    ``taken`` (the pairs of earlier objects, so two objects never look alike); its start box is
    redrawn (up to ``tries`` times) until it overlaps ``boxes`` by at most 20 %."""
    motions = sample_motions(rng, probs)
    shapes = ROTATING_SHAPES if "rotate" in motions else SHAPES
    shape, colour = choose(rng, [(s, c) for s in shapes for c in COLOURS if (s, c) not in taken])
    texture = sample_texture(rng)
    cap = image_size / 3 / (SHAPE_RADIUS[shape] if "rotate" in motions else 1.0)  # turning shapes reach farther
    size, size_end = sample_sizes(rng, image_size, "scale" in motions, speed, cap)
    omega = speed * rng.uniform(*ROTATE_SPEED) * choose(rng, (-1, 1)) if "rotate" in motions else 0.0
    ends = [c for c in COLOURS if c != colour and (shape, c) not in taken]
    colour_end = choose(rng, ends) if "colour" in motions else None
    obj = MovingObject(shape, colour, texture, size, 0.0, 0.0, motions, omega=float(omega), size_end=size_end,
                       colour_end=colour_end)
    for _ in range(tries):
        obj.cx, obj.cy, obj.vx, obj.vy, obj.path = sample_path(rng, image_size, obj.reach, motions, speed, frames)
        if overlap_ok(start_box(obj), boxes, 0.2):
            break
    return obj


def sample_clip(rng: np.random.Generator, image_size: int, motions: dict[str, float], frames: int = CLIP_FRAMES,
                min_objects: int = 1, max_objects: int = 2) -> Clip:
    """A random clip: a Shapes-world background and ``min_objects``..``max_objects`` objects,
    each with one or two motions drawn from the motion mix ``motions`` (weights over
    :data:`MOTIONS` plus an optional ``speed`` factor)."""
    probs, speed = motion_weights(motions)
    kind, colours = sample_background(rng)
    n = int(rng.integers(min_objects, max_objects + 1))
    objects, taken, boxes = [], [], []
    for _ in range(n):
        obj = sample_object(rng, image_size, probs, speed, taken, boxes, frames)
        objects.append(obj)
        taken += [(obj.shape, obj.colour), (obj.shape, obj.colour_end or obj.colour)]
        boxes.append(start_box(obj))
    return Clip(image_size, kind, colours, objects, frames)


def generate_clip(seed: int, i: int, name: str = "video_train", image_size: int = 32,
                  frames: int = CLIP_FRAMES) -> Clip:
    """Clip ``i`` of split ``name`` (a key of :data:`VIDEO_SPLITS`): drawn from
    ``np.random.default_rng([seed, split_id, i])``, so it depends on nothing else."""
    if name not in VIDEO_SPLITS:
        raise ValueError(f"unknown video split '{name}': known splits are {sorted(VIDEO_SPLITS)}")
    split = VIDEO_SPLITS[name]
    rng = np.random.default_rng([seed, split["split_id"], i])
    return sample_clip(rng, image_size, split["motions"], frames)


# -----------------------------------------------------------------------------
# Rendering
# -----------------------------------------------------------------------------


def _object_window(obj: MovingObject, clip: Clip, f: int):
    """Pixel window ``(x0, y0, x1, y1)`` that can hold the object at frame ``f`` plus its
    normalised object coordinates ``u, v`` there (rotated with the object) and its size."""
    n = clip.image_size
    cx, cy = centre_at(obj, f, n)
    size = size_at(obj, f, clip.frames)
    reach = size * (SHAPE_RADIUS[obj.shape] if obj.omega else 1.0)  # turning corners reach farther
    x0, y0 = max(0, math.floor(cx - reach)), max(0, math.floor(cy - reach))
    x1, y1 = min(n, math.ceil(cx + reach)), min(n, math.ceil(cy + reach))
    dx = (np.arange(x0, x1) + 0.5 - cx)[None, :]
    dy = (np.arange(y0, y1) + 0.5 - cy)[:, None]
    a = math.radians(angle_at(obj, f))
    ca, sa = math.cos(a), math.sin(a)
    u = (ca * dx - sa * dy) / size  # screen -> object frame: rotate by -angle (y points down)
    v = (sa * dx + ca * dy) / size
    return (x0, y0, x1, y1), np.broadcast_to(u, (y1 - y0, x1 - x0)), np.broadcast_to(v, (y1 - y0, x1 - x0)), size


def unit_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of a unit shape at object coordinates ``u, v``, limited to its box
    ``[-1, 1]^2`` (a still image's box does that clipping; a turned object's window is larger)."""
    return shape_mask(shape, u, v) & (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)


def object_mask_at(clip: Clip, k: int, f: int) -> np.ndarray:
    """Boolean (H, W) mask of object ``k`` at frame ``f`` (ignoring occlusion)."""
    mask = np.zeros((clip.image_size, clip.image_size), bool)
    (x0, y0, x1, y1), u, v, _ = _object_window(clip.objects[k], clip, f)
    if x1 > x0 and y1 > y0:
        mask[y0:y1, x0:x1] = unit_mask(clip.objects[k].shape, u, v)
    return mask


def draw_object(img: np.ndarray, clip: Clip, obj: MovingObject, f: int) -> None:
    """Paint ``obj`` at frame ``f`` onto uint8 ``img`` in place: its shape in its current colour,
    the texture (fixed to the object, so it moves, turns and keeps its stroke width) in the
    darker shade."""
    (x0, y0, x1, y1), u, v, size = _object_window(obj, clip, f)
    if x1 <= x0 or y1 <= y0:
        return
    m = unit_mask(obj.shape, u, v)
    lx = np.floor((u + 1.0) * size).astype(int)  # object-local pixel coords, as in a still image
    ly = np.floor((v + 1.0) * size).astype(int)
    t = _texture_mask(obj.texture, lx, ly, clip.image_size)
    rgb = rgb_at(obj, f, clip.frames)
    patch = img[y0:y1, x0:x1]
    patch[m & ~t] = rgb
    patch[m & t] = shade(rgb)


def clip_background(clip: Clip) -> np.ndarray:
    """The clip's static background as a uint8 (H, W, 3) image."""
    scene = Scene(clip.image_size, clip.background, clip.background_colours, [])
    return np.rint(render_background(scene)).astype(np.uint8)


def render_frame(clip: Clip, f: int, background: np.ndarray | None = None) -> np.ndarray:
    """Frame ``f`` of ``clip`` as uint8 (H, W, 3); ``background`` (from :func:`clip_background`)
    saves re-rendering it for every frame."""
    if not 0 <= f < clip.frames:
        raise ValueError(f"frame {f} outside the clip's {clip.frames} frames")
    img = (clip_background(clip) if background is None else background).copy()
    for obj in clip.objects:
        draw_object(img, clip, obj, f)
    return img


def frame_indices(stride: int = STRIDE, frames_used: int = FRAMES_USED) -> list[int]:
    """The clip frames a model sees: ``0, stride, 2 stride, ...`` (``frames_used`` of them)."""
    return [k * stride for k in range(frames_used)]


def render_clip(clip: Clip, stride: int = STRIDE, frames_used: int = FRAMES_USED) -> np.ndarray:
    """``frames_used`` frames sampled with ``stride`` from the clip, uint8 (frames_used, H, W, 3)."""
    idx = frame_indices(stride, frames_used)
    if idx[-1] >= clip.frames:
        raise ValueError(f"{frames_used} frames with stride {stride} need {idx[-1] + 1} frames, clip has {clip.frames}")
    bg = clip_background(clip)
    return np.stack([render_frame(clip, f, bg) for f in idx])


# -----------------------------------------------------------------------------
# Captions
# -----------------------------------------------------------------------------


def first_scene(clip: Clip) -> Scene:
    """The clip's frame 0 as a still :class:`Scene` (centres and sizes rounded), for captions."""
    n = clip.image_size
    objects = [ShapeObject(o.shape, o.colour, o.texture, max(1, round(o.size)), round(o.cx), round(o.cy), n)
               for o in clip.objects]
    return Scene(n, clip.background, clip.background_colours, objects)


def _direction(vx: float, vy: float) -> str:
    """Compass word of a screen velocity (y points down): ``"right"``, ``"up"``, ..."""
    if abs(vx) >= abs(vy):
        return "right" if vx > 0 else "left"
    return "down" if vy > 0 else "up"


def motion_phrase(obj: MovingObject) -> str:
    """What the object does, e.g. ``"red circle moves left and turns blue"``."""
    parts = []
    if obj.path == "line":
        parts.append(f"moves {_direction(obj.vx, obj.vy)}")
    elif obj.path == "bounce":
        parts.append("bounces around")
    if obj.omega:
        parts.append("spins " + ("clockwise" if obj.omega < 0 else "counterclockwise"))
    if obj.size_end is not None:
        parts.append("grows" if obj.size_end > obj.size else "shrinks")
    if obj.colour_end is not None:
        parts.append(f"turns {obj.colour_end}")
    return f"{obj.name} " + (" and ".join(parts) or "stays still")


def motion_caption(clip: Clip) -> str:
    """One line describing every object's motion, e.g. ``"a red circle moves left; a ..."``."""
    return "; ".join(f"{'an' if o.colour[0] in 'aeiou' else 'a'} {motion_phrase(o)}" for o in clip.objects)


# -----------------------------------------------------------------------------
# Storage
# -----------------------------------------------------------------------------


def tile_frames(frames: np.ndarray) -> np.ndarray:
    """Frames (T, H, W, 3) -> one strip (H, T W, 3), frame 0 on the left."""
    t, h, w, c = frames.shape
    return np.ascontiguousarray(frames.transpose(1, 0, 2, 3).reshape(h, t * w, c))


def split_frames(strip: np.ndarray, frames: int) -> np.ndarray:
    """Inverse of :func:`tile_frames`: a strip (H, frames W, 3) -> (frames, H, W, 3)."""
    h, tw, c = strip.shape
    if tw % frames:
        raise ValueError(f"strip width {tw} is not a multiple of {frames} frames")
    return np.ascontiguousarray(strip.reshape(h, frames, tw // frames, c).transpose(1, 0, 2, 3))


def clip_record(name: str, i: int, clip: Clip, frames: int, stride: int) -> dict:
    """The JSON record stored with clip ``i`` of split ``name``."""
    return {
        "key": f"shapes_video/{name}/{i}",
        "index": int(i),
        "frames": int(frames),
        "stride": int(stride),
        "frame_size": [int(clip.image_size), int(clip.image_size)],
        "clip": clip.to_dict(),
        "short_caption": short_caption(first_scene(clip)),
        "motion_caption": motion_caption(clip),
    }


def build_video_split(name: str, n_clips: int, image_size: int, seed: int, shard_size: int, out_dir,
                      frames: int = FRAMES_USED, stride: int = STRIDE) -> dict:
    """Generate video split ``name`` (a key of :data:`VIDEO_SPLITS`) deterministically, clip by
    clip, into tar shards: each sample is one clip's ``frames`` frames (``stride`` apart) as a
    (H, frames W, 3) PNG strip with its record; then ``preview.gif`` and ``preview.png``.
    Returns a summary dict."""
    from lumos.data.shards import ShardWriter

    clip_frames = max(CLIP_FRAMES, (frames - 1) * stride + 1)
    split = VIDEO_SPLITS.get(name)
    if split is None:
        raise ValueError(f"unknown video split '{name}': known splits are {sorted(VIDEO_SPLITS)}")
    writer = ShardWriter(out_dir, shard_size, "png", source="shapes_video", split=name, seed=seed,
                         frames=frames, stride=stride, frame_size=[image_size, image_size], clip_frames=clip_frames,
                         motions=split["motions"])
    for i in progress(range(n_clips), desc=f"generate {name}"):
        clip = generate_clip(seed, i, name, image_size, clip_frames)
        writer.write(tile_frames(render_clip(clip, stride, frames)), clip_record(name, i, clip, frames, stride))
    index = writer.close()
    if n_clips:
        preview(out_dir, Path(out_dir) / "preview.gif")
    log.info("%s: %d clips of %d frames at %dpx written to %s", name, n_clips, frames, image_size, out_dir)
    return {"n": int(n_clips), "frames": frames, "stride": stride, "shards": len(index["shards"])}


def read_clips(split_dir, limit: int | None = None):
    """Stream a video split's clips in order: ``(frames (T, H, W, 3) uint8, record)``, the first
    ``limit`` only if given."""
    from lumos.data.shards import iter_shards

    count = 0
    for _, strips, records in iter_shards(split_dir, limit=limit):
        for strip, record in zip(strips, records):
            if limit is not None and count >= limit:
                return
            yield split_frames(strip, record["frames"]), record
            count += 1


# -----------------------------------------------------------------------------
# Preview
# -----------------------------------------------------------------------------


def _timeline(width: int, t: int, frames: int, height: int = 3) -> np.ndarray:
    """A bar (height, width, 3) filled up to frame ``t`` of ``frames``: shows time in the GIF
    (and keeps every GIF frame distinct, so none is merged away)."""
    bar = np.full((height, width, 3), 255, np.uint8)
    bar[:, : round(width * (t + 1) / frames)] = (60, 60, 60)
    return bar


def preview(split_dir, out_path, clips: int = 8, scale: int | None = None, duration_ms: int = 150) -> Path:
    """``out_path``: an animated GIF of the split's first ``clips`` clips side by side (one GIF
    frame per clip frame, a time bar below); beside it a still ``.png`` with the first, middle
    and last frame of each clip (one row per clip)."""
    from PIL import Image

    from lumos.viz import image_grid, save_grid

    videos = [v for v, _ in read_clips(split_dir, limit=clips)]
    t, h = videos[0].shape[:2]
    scale = scale or max(1, 96 // h)
    gif = []
    for k in range(t):
        grid = np.asarray(image_grid([v[k] for v in videos], ncols=len(videos), scale=scale))
        gif.append(Image.fromarray(np.concatenate([grid, _timeline(grid.shape[1], k, t)])))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    gif[0].save(out_path, save_all=True, append_images=gif[1:], duration=duration_ms, loop=0)
    stills = [v[k] for v in videos for k in (0, t // 2, t - 1)]
    save_grid(out_path.with_suffix(".png"), stills, ncols=3, scale=scale)
    return out_path

"""The Shapes world: a procedural universe of coloured, textured shapes.

Every image is generated deterministically from a seed and carries its full ground truth
(a :class:`Scene`: background plus an ordered list of :class:`ShapeObject`). From the scene we
render pixels, per-object masks, a terse "raw" caption and a long detailed caption.

Geometry convention: an object with centre ``(cx, cy)`` and half-extent ``size`` covers the
pixel box ``[cx - size, cx + size)`` in both axes. Pixel ``(x, y)`` is sampled at its centre
``(x + 0.5, y + 0.5)``, so shapes are symmetric inside their box.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace

import numpy as np

# -----------------------------------------------------------------------------
# Vocabulary
# -----------------------------------------------------------------------------

SHAPES = ("circle", "square", "triangle", "diamond", "cross")

# Saturated, mutually distinct palette (name -> RGB). Order defines class indices.
COLOURS = OrderedDict(
    [
        ("red", (220, 40, 40)),
        ("green", (40, 180, 60)),
        ("blue", (40, 80, 220)),
        ("yellow", (240, 220, 30)),
        ("purple", (150, 60, 200)),
        ("orange", (245, 130, 20)),
        ("cyan", (40, 200, 210)),
        ("pink", (240, 110, 180)),
    ]
)

TEXTURES = ("plain", "striped", "dotted")
BACKGROUNDS = ("plain", "gradient", "textured")

NUM_CLASSES = len(SHAPES) * len(COLOURS)

# Texture patterns use a darker shade of the object's colour.
SHADE = 0.55

# Low-saturation background bases (greys, beiges, dark slate): never confusable with COLOURS.
_NEUTRALS = (
    (200, 200, 200),  # light grey
    (128, 128, 128),  # grey
    (70, 70, 72),  # dark grey
    (215, 205, 185),  # beige
    (50, 62, 72),  # dark slate
    (150, 140, 125),  # taupe
    (232, 230, 224),  # off-white
    (105, 110, 100),  # olive grey
)

# Number words for counts in captions and prompts ("three objects", "two red circles").
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")


def shade(rgb, factor: float = SHADE) -> tuple:
    """Return ``rgb`` scaled by ``factor`` (the darker texture colour of an object)."""
    return tuple(int(round(c * factor)) for c in rgb)


def size_range(image_size: int) -> tuple[int, int]:
    """Inclusive range of object half-extents for an image size (4..8 at 32 px)."""
    lo = max(2, int(round(image_size / 8)))
    hi = max(lo, int(round(image_size / 4)))
    return lo, hi


# -----------------------------------------------------------------------------
# Ground truth
# -----------------------------------------------------------------------------


@dataclass
class ShapeObject:
    """One object: a shape with a palette colour, a texture, a half-extent and a centre."""

    shape: str
    colour: str
    texture: str
    size: int
    cx: int
    cy: int
    image_size: int = 32
    image_width: int | None = None  # None: a square image (the aspect-ratio buckets of Table S1 set it)

    @property
    def width(self) -> int:
        """Image width in pixels (``image_size`` is the height)."""
        return self.image_width or self.image_size

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Pixel box ``(x0, y0, x1, y1)``, inclusive-exclusive, clipped to the image."""
        return (
            max(0, self.cx - self.size),
            max(0, self.cy - self.size),
            min(self.width, self.cx + self.size),
            min(self.image_size, self.cy + self.size),
        )

    @property
    def rgb(self) -> tuple[int, int, int]:
        """Palette RGB of the object's colour."""
        return COLOURS[self.colour]

    @property
    def size_name(self) -> str:
        """Size bin: ``"small"``, ``"medium"`` or ``"large"`` (thirds of the size range)."""
        lo, hi = size_range(min(self.image_size, self.width))
        t = (self.size - lo) / max(1, hi - lo)
        return "small" if t < 0.4 else ("medium" if t < 0.6 else "large")

    @property
    def horizontal_word(self) -> str:
        """Horizontal position: ``"left"``, ``"center"`` or ``"right"`` (image thirds)."""
        return _third(self.cx, self.width, ("left", "center", "right"))

    @property
    def vertical_word(self) -> str:
        """Vertical position: ``"top"``, ``"middle"`` or ``"bottom"`` (image thirds)."""
        return _third(self.cy, self.image_size, ("top", "middle", "bottom"))

    @property
    def position_phrase(self) -> str:
        """Position as a phrase, e.g. ``"at the top left"``, ``"on the right"``, ``"in the center"``."""
        v, h = self.vertical_word, self.horizontal_word
        if v == "middle" and h == "center":
            return "in the center"
        if v == "middle":
            return f"on the {h}"
        if h == "center":
            return f"at the {v}"
        return f"at the {v} {h}"

    @property
    def name(self) -> str:
        """Colour and shape, e.g. ``"red circle"`` (unique within a scene)."""
        return f"{self.colour} {self.shape}"

    def to_dict(self) -> dict:
        """JSON-serialisable dict of the fields (``image_width`` only for a non-square image)."""
        return {k: (int(v) if not isinstance(v, str) else v) for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> "ShapeObject":
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


def _third(v: int, n: int, words: tuple[str, str, str]) -> str:
    if 3 * v < n:
        return words[0]
    if 3 * v > 2 * n:
        return words[2]
    return words[1]


@dataclass
class Scene:
    """A full image description: background kind and colours plus objects in drawing order."""

    image_size: int  # the height; the width too unless `image_width` is set
    background: str
    background_colours: list = field(default_factory=list)
    objects: list = field(default_factory=list)
    image_width: int | None = None

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return self.image_width or self.image_size

    def to_dict(self) -> dict:
        """JSON-serialisable dict (python ints, strs and lists only)."""
        d = {
            "image_size": int(self.image_size),
            "background": self.background,
            "background_colours": [[int(c) for c in rgb] for rgb in self.background_colours],
            "objects": [o.to_dict() for o in self.objects],
        }
        if self.image_width is not None:
            d["image_width"] = int(self.image_width)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        """Inverse of :meth:`to_dict`."""
        return cls(
            image_size=int(d["image_size"]),
            background=d["background"],
            background_colours=[tuple(int(c) for c in rgb) for rgb in d["background_colours"]],
            objects=[ShapeObject.from_dict(o) for o in d["objects"]],
            image_width=d.get("image_width"),
        )


# -----------------------------------------------------------------------------
# Sampling
# -----------------------------------------------------------------------------


def choose(rng: np.random.Generator, seq):
    """One element of ``seq``, uniformly (one ``rng.integers`` draw)."""
    return seq[int(rng.integers(len(seq)))]


def choose_distinct(rng: np.random.Generator, seq, k: int = 1) -> list:
    """``k`` distinct elements of ``seq`` in random order (one ``rng.choice`` draw)."""
    return [seq[int(i)] for i in rng.choice(len(seq), size=k, replace=False)]


def sample_texture(rng: np.random.Generator) -> str:
    """A texture from :data:`TEXTURES`, uniformly."""
    return choose(rng, TEXTURES)


def sample_neutral(rng: np.random.Generator) -> np.ndarray:
    """A Shapes-world background tone: a base from ``_NEUTRALS`` shifted in brightness by up to
    +-20 and per channel by up to +-5 (an int RGB array in 0..255)."""
    base = np.array(choose(rng, _NEUTRALS))
    rgb = base + rng.integers(-20, 21) + rng.integers(-5, 6, size=3)
    return np.clip(rgb, 0, 255)


def sample_background(rng: np.random.Generator) -> tuple[str, list]:
    """A Shapes-world background: its kind (uniform over :data:`BACKGROUNDS`) and its colours,
    one RGB tuple for ``plain``, two for ``gradient`` (top, bottom; visibly different) and
    ``textured`` (the two checkerboard tones of one hue)."""
    kind = choose(rng, BACKGROUNDS)
    c0 = sample_neutral(rng)
    if kind == "plain":
        cols = [c0]
    elif kind == "gradient":
        c1 = sample_neutral(rng)
        while np.abs(c1 - c0).sum() < 60:  # make the gradient visible
            c1 = sample_neutral(rng)
        cols = [c0, c1]
    else:  # textured: same hue, a brightness step towards mid-grey
        step = int(rng.integers(30, 51))
        c1 = np.clip(c0 + (step if c0.mean() < 128 else -step), 0, 255)
        cols = [c0, c1]
    return kind, [tuple(int(c) for c in rgb) for rgb in cols]


def sample_background_colours(rng: np.random.Generator, kind: str) -> list:
    """The colours of a :func:`sample_background` of the given ``kind`` (redrawn until the kind
    matches, so the tones are distributed as for that kind)."""
    drawn, cols = sample_background(rng)
    while drawn != kind:
        drawn, cols = sample_background(rng)
    return cols


def sample_tinted_grey(rng: np.random.Generator) -> tuple:
    """A low-saturation colour: a grey level in 60..235 with a per-channel tint of up to +-8."""
    g = int(rng.integers(60, 236))
    return tuple(int(np.clip(g + t, 0, 255)) for t in rng.integers(-8, 9, size=3))


def sample_grey_background(rng: np.random.Generator) -> tuple[str, list]:
    """A background of tinted greys (:func:`sample_tinted_grey`): ``plain`` or a vertical
    ``gradient``, with equal probability. Returns ``(kind, colours)``."""
    if rng.random() < 0.5:
        return "plain", [sample_tinted_grey(rng)]
    return "gradient", [sample_tinted_grey(rng), sample_tinted_grey(rng)]


# Placement. Two box conventions: corners ``(x0, y0, x1, y1)`` for :func:`overlap_ok`, and
# ``(cx, cy, size)`` (centre and half-extent) for the evaluation scenes' :func:`place_apart`.


def sample_centre(rng: np.random.Generator, size: int, height: int, width: int | None = None) -> tuple[int, int]:
    """A centre ``(cx, cy)`` (x drawn first) that keeps a box of half-extent ``size`` inside a
    ``height`` x ``width`` image (square by default)."""
    cx = int(rng.integers(size, (width or height) - size + 1))
    cy = int(rng.integers(size, height - size + 1))
    return cx, cy


def overlap_ok(box, boxes, max_overlap: float) -> bool:
    """Whether corner box ``box`` overlaps each of ``boxes`` by at most ``max_overlap`` of the
    smaller box's area."""
    x0, y0, x1, y1 = box
    area = (x1 - x0) * (y1 - y0)
    for bx0, by0, bx1, by1 in boxes:
        iw = min(x1, bx1) - max(x0, bx0)
        ih = min(y1, by1) - max(y0, by0)
        if iw > 0 and ih > 0:
            smaller = min(area, (bx1 - bx0) * (by1 - by0))
            if iw * ih > max_overlap * smaller:
                return False
    return True


def size_bins(image_size: int, image_width: int | None = None) -> list[list[int]]:
    """The half-extents of :func:`size_range` grouped by size name (small, medium, large)."""
    lo, hi = size_range(min(image_size, image_width or image_size))
    bins = {}
    for s in range(lo, hi + 1):
        bins.setdefault(ShapeObject("", "", "", s, 0, 0, image_size, image_width).size_name, []).append(s)
    return list(bins.values())


def min_gap(image_size: int) -> int:
    """Free pixels :func:`place_apart` keeps between boxes (2 at 32 px, 4 at 64 px)."""
    return max(2, image_size // 16)


def box_gap(a: tuple, b: tuple) -> int:
    """Free pixels between boxes ``(cx, cy, size)`` ``a`` and ``b`` along the axis on which they
    are farthest apart (zero or less when the boxes touch or overlap)."""
    return max(abs(a[0] - b[0]), abs(a[1] - b[1])) - a[2] - b[2]


def separated(rel: str, a: tuple, b: tuple, gap: int) -> bool:
    """Whether box ``a`` is ``rel`` (``"left of"``, ``"right of"``, ``"above"``, ``"below"``) box
    ``b`` with at least ``gap`` free pixels between them along the relation's axis (boxes are
    ``(cx, cy, size)``)."""
    (ax, ay, sa), (bx, by, sb) = a, b
    need = sa + sb + gap
    return {
        "left of": bx - ax >= need,
        "right of": ax - bx >= need,
        "above": by - ay >= need,
        "below": ay - by >= need,
    }[rel]


def _draw_boxes(rng: np.random.Generator, k: int, image_size: int, lo: int, cap: int, sizes_first: bool) -> list:
    """``k`` boxes ``(cx, cy, size)`` inside the image, sizes uniform in ``lo..cap``. With
    ``sizes_first`` all sizes are drawn before the centres, otherwise box by box."""
    if sizes_first:
        sizes = [int(rng.integers(lo, cap + 1)) for _ in range(k)]
        return [(*sample_centre(rng, s, image_size), s) for s in sizes]
    boxes = []
    for _ in range(k):
        s = int(rng.integers(lo, cap + 1))
        boxes.append((*sample_centre(rng, s, image_size), s))
    return boxes


def place_apart(
    rng: np.random.Generator, k: int, image_size: int, relation: tuple[str, int, int] | None = None,
    sizes_first: bool = False, attempts: int = 2000,
) -> list | None:
    """Place ``k`` boxes ``(cx, cy, size)`` in a square image with at least
    :func:`min_gap` free pixels between any two; with ``relation = (rel, a, b)`` box ``a`` must
    also be :func:`separated` from box ``b`` by ``rel``. Every attempt redraws all boxes; the
    size cap drops by one pixel every 200 failed attempts so crowded scenes still fit.

    ``sizes_first`` picks the order of the random draws (GenEval's ground truth draws all sizes
    first, DPG's scenes box by box); it changes which layout a seed gives, not their
    distribution. Returns None if all ``attempts`` fail."""
    lo, hi = size_range(image_size)
    gap = min_gap(image_size)
    for attempt in range(attempts):
        cap = max(lo, hi - attempt // 200)
        boxes = _draw_boxes(rng, k, image_size, lo, cap, sizes_first)
        if not all(box_gap(a, b) >= gap for i, a in enumerate(boxes) for b in boxes[i + 1 :]):
            continue
        if relation is None or separated(relation[0], boxes[relation[1]], boxes[relation[2]], gap):
            return boxes
    return None


def objects_in_boxes(specs, boxes: list, image_size: int) -> list[ShapeObject]:
    """One :class:`ShapeObject` per ``(shape, colour, texture)`` in ``specs``, filling the
    matching box ``(cx, cy, size)`` of ``boxes`` (as returned by :func:`place_apart`)."""
    return [
        ShapeObject(shape, colour, texture, size, cx, cy, image_size)
        for (shape, colour, texture), (cx, cy, size) in zip(specs, boxes)
    ]


def sample_scene(
    rng: np.random.Generator,
    image_size: int = 32,
    min_objects: int = 1,
    max_objects: int = 4,
    shapes=SHAPES,
    colours=tuple(COLOURS),
    max_overlap: float = 0.2,
    tries: int = 100,
    image_width: int | None = None,
) -> Scene:
    """Sample a random scene.

    The object count is uniform in ``[min_objects, max_objects]``; objects have distinct
    (shape, colour) pairs, lie fully inside the image, and no two boxes overlap by more than
    ``max_overlap`` of the smaller box. When a position cannot be found the object shrinks
    (every 10 tries, by a quarter of the size range); it is dropped only if all ``tries`` fail.
    ``image_size`` is the height; ``image_width`` (default: square) the width, and object sizes
    follow the shorter side.
    """
    kind, bg_cols = sample_background(rng)
    width = image_width or image_size
    lo, hi = size_range(min(image_size, width))
    step = max(1, (hi - lo) // 4)
    pairs = [(shape, colour) for shape in shapes for colour in colours]
    n = int(rng.integers(min_objects, max_objects + 1))
    chosen = choose_distinct(rng, pairs, min(n, len(pairs)))
    bins = size_bins(image_size, image_width)

    objects, boxes = [], []
    for shape, colour in chosen:
        texture = sample_texture(rng)
        sizes = choose(rng, bins)  # a size bin uniformly, then a size within the bin
        size = int(choose(rng, sizes))
        for attempt in range(tries):
            if attempt and attempt % 10 == 0:
                size = max(lo, size - step)
            cx, cy = sample_centre(rng, size, image_size, width)
            box = (cx - size, cy - size, cx + size, cy + size)
            if overlap_ok(box, boxes, max_overlap):
                objects.append(ShapeObject(shape, colour, texture, size, cx, cy, image_size, image_width))
                boxes.append(box)
                break
    return Scene(image_size, kind, bg_cols, objects, image_width)


# -----------------------------------------------------------------------------
# Rasterisation
# -----------------------------------------------------------------------------


def _local_grid(obj: ShapeObject):
    """Box-local integer pixel coords (relative to the unclipped box corner) and normalised
    coords ``u, v`` in (-1, 1) for the clipped box."""
    x0, y0, x1, y1 = obj.box
    lx = np.arange(x0, x1) - (obj.cx - obj.size)
    ly = np.arange(y0, y1) - (obj.cy - obj.size)
    u = (lx + 0.5) / obj.size - 1.0
    v = (ly + 0.5) / obj.size - 1.0
    return lx[None, :], ly[:, None], u[None, :], v[:, None]


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of a unit shape at normalised coordinates u, v in [-1, 1] (bool array)."""
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        m = u * u + v * v <= 1.0
    elif shape == "square":
        m = (au <= 1.0) & (av <= 1.0)
    elif shape == "triangle":  # apex up, base along the bottom edge
        m = 2.0 * au <= v + 1.0
    elif shape == "diamond":
        m = au + av <= 1.0
    elif shape == "cross":
        m = ((au <= 0.35) & (av <= 1.0)) | ((av <= 0.35) & (au <= 1.0))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.broadcast_to(m, (v.shape[0], u.shape[1]))


def _texture_mask(texture: str, lx: np.ndarray, ly: np.ndarray, image_size: int) -> np.ndarray:
    w = max(1, image_size // 32)  # stroke width scales with resolution
    if texture == "plain":
        m = np.zeros((ly.shape[0], lx.shape[1]), bool)
    elif texture == "striped":  # diagonal stripes covering 1/3 of the object
        m = ((lx + ly) // w) % 3 == 0
    elif texture == "dotted":  # dots on a 3w grid covering 1/9 of the object
        m = ((lx // w) % 3 == 1) & ((ly // w) % 3 == 1)
    else:
        raise ValueError(f"unknown texture {texture!r}")
    return m


def object_mask(obj: ShapeObject, image_size: int | None = None) -> np.ndarray:
    """Boolean (H, W) mask of every pixel the object covers (ignoring occlusion)."""
    if image_size is not None and image_size != obj.image_size:
        obj = replace(obj, image_size=image_size)
    mask = np.zeros((obj.image_size, obj.width), bool)
    x0, y0, x1, y1 = obj.box
    if x1 > x0 and y1 > y0:
        _, _, u, v = _local_grid(obj)
        mask[y0:y1, x0:x1] = shape_mask(obj.shape, u, v)
    return mask


def render_background(scene: Scene) -> np.ndarray:
    """Render only the background of a scene as a float (H, W, 3) array."""
    n, w, cols = scene.image_size, scene.width, np.asarray(scene.background_colours, np.float32)
    if scene.background == "plain":
        return np.broadcast_to(cols[0], (n, w, 3)).copy()
    if scene.background == "gradient":  # vertical: first colour at the top
        t = ((np.arange(n, dtype=np.float32) + 0.5) / n)[:, None, None]
        return np.broadcast_to((1 - t) * cols[0] + t * cols[1], (n, w, 3)).copy()
    if scene.background == "textured":  # checkerboard of two close neutral tones
        cell = max(2, min(n, w) // 16)
        checker = (np.arange(n)[:, None] // cell + np.arange(w)[None, :] // cell) % 2
        return cols[checker]
    raise ValueError(f"unknown background {scene.background!r}")


def render(scene: Scene) -> np.ndarray:
    """Render a scene to a uint8 (H, W, 3) image: background, then objects in order."""
    img = np.rint(render_background(scene)).astype(np.uint8)
    for obj in scene.objects:
        x0, y0, x1, y1 = obj.box
        if x1 <= x0 or y1 <= y0:
            continue
        lx, ly, u, v = _local_grid(obj)
        m = shape_mask(obj.shape, u, v)
        t = _texture_mask(obj.texture, lx, ly, min(scene.image_size, scene.width))
        patch = img[y0:y1, x0:x1]
        patch[m & ~t] = obj.rgb
        patch[m & t] = shade(obj.rgb)
    return img


def visible_mask(scene: Scene, k: int) -> np.ndarray:
    """Pixels of object ``k`` not covered by any later (drawn on top) object."""
    mask = object_mask(scene.objects[k], scene.image_size)
    for obj in scene.objects[k + 1 :]:
        mask &= ~object_mask(obj, scene.image_size)
    return mask


# -----------------------------------------------------------------------------
# Captions and labels
# -----------------------------------------------------------------------------


def article(word: str) -> str:
    """The indefinite article of ``word``: ``"an"`` before a vowel, else ``"a"``."""
    return "an" if word[0] in "aeiou" else "a"


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _count_phrase(n: int, noun: str = "object") -> str:
    word = NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)
    return f"{word} {noun}" + ("" if n == 1 else "s")


def relation(a: ShapeObject, b: ShapeObject) -> str:
    """Spatial relation of ``a`` to ``b`` along the dominant axis:
    ``"to the left of"``, ``"to the right of"``, ``"above"`` or ``"below"``."""
    dx, dy = a.cx - b.cx, a.cy - b.cy
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def short_caption(scene: Scene) -> str:
    """Terse raw caption naming the objects, e.g. ``"a red circle and a blue square"``."""
    if not scene.objects:
        return "an empty picture"
    return _join([f"{article(o.name)} {o.name}" for o in scene.objects])


def long_caption(scene: Scene) -> str:
    """Detailed caption: background kind, object count, every object with its size, texture,
    colour, shape and position, and the relation of every pair of objects."""
    objs = scene.objects
    parts = [f"A picture of {_count_phrase(len(objs))} on a {scene.background} background."]
    for o in objs:
        parts.append(f"A {o.size_name} {o.texture} {o.name} {o.position_phrase}.")
    for i in range(len(objs)):
        for j in range(i + 1, len(objs)):
            parts.append(f"The {objs[i].name} is {relation(objs[i], objs[j])} the {objs[j].name}.")
    return " ".join(parts)


def class_index(shape: str, colour: str) -> int:
    """Class index of a (shape, colour) pair: ``SHAPES.index(shape) * len(COLOURS) + colour index``."""
    return SHAPES.index(shape) * len(COLOURS) + list(COLOURS).index(colour)


def class_label(scene: Scene) -> int:
    """Class label of a single-object scene (raises ``ValueError`` otherwise)."""
    if len(scene.objects) != 1:
        raise ValueError(f"class_label needs exactly one object, got {len(scene.objects)}")
    o = scene.objects[0]
    return class_index(o.shape, o.colour)


def class_name(label: int) -> str:
    """Human-readable name of a class label, e.g. ``"red circle"``."""
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label {label} out of range [0, {NUM_CLASSES})")
    shape, colour = divmod(int(label), len(COLOURS))
    return f"{list(COLOURS)[colour]} {SHAPES[shape]}"


# -----------------------------------------------------------------------------
# Splits
# -----------------------------------------------------------------------------


def generate_item(
    seed: int, i: int, image_size: int = 32, min_objects: int = 1, max_objects: int = 4, split_id: int = 0,
    image_width: int | None = None,
) -> tuple[np.ndarray, dict]:
    """Generate item ``i`` of a split: its image and record. Depends only on its arguments.

    ``image_width`` renders the scene on an ``image_size`` x ``image_width`` canvas (height x width)."""
    rng = np.random.default_rng([seed, split_id, i])
    scene = sample_scene(rng, image_size, min_objects, max_objects, image_width=image_width)
    record = {
        "index": int(i),
        "scene": scene.to_dict(),
        "short_caption": short_caption(scene),
        "long_caption": long_caption(scene),
        "label": class_label(scene) if len(scene.objects) == 1 else None,
    }
    return render(scene), record


def generate_split(
    n: int, seed: int, image_size: int = 32, min_objects: int = 1, max_objects: int = 4, split_id: int = 0
) -> tuple[np.ndarray, list[dict]]:
    """Generate ``n`` items: images (n, H, W, 3) uint8 and one record dict per image.

    Item ``i`` uses ``np.random.default_rng([seed, split_id, i])``, so it does not depend on ``n``.
    Records hold ``index``, ``scene`` (a :meth:`Scene.to_dict`), ``short_caption``,
    ``long_caption`` and ``label`` (the class label, or None for multi-object scenes).
    """
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    records = []
    for i in range(n):
        images[i], rec = generate_item(seed, i, image_size, min_objects, max_objects, split_id)
        records.append(rec)
    return images, records

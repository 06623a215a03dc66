"""GenEval analogue on the Shapes world: prompts, ground-truth renders, a pixel detector, scoring.

GenEval (Ghosh et al., 2023) asks a text-to-image model for images in six task families and scores
each image with an object detector. Here the "objects" are Shapes-world shapes, so the detector is
exact and cheap: pixels are assigned to the nearest palette colour (or its darker texture shade)
within a distance threshold, connected components of each colour are objects, and each
component's shape is the Shapes-world template (fitted to its bounding box) it overlaps best.

Families (GenEval's names in brackets):

- ``single_object`` (Object/Single): "a photo of a red circle"; the (shape, colour) is present.
- ``two_object`` (Object/Two): "a photo of a red circle and a blue square"; both present.
  Two distinct shapes; the colours are drawn independently and may coincide.
- ``counting``: "a photo of three green triangles" (2-4); exactly that many of the (shape, colour).
- ``colors``: "a photo of a yellow cross"; the shape is present and every instance of it has
  the named colour.
- ``position``: "a photo of a red circle left of a blue square"; both present and the relation
  holds between the centroids of the largest instance of each, with a margin.
- ``color_attr`` (Color Attribution): "a photo of a red circle and a blue square" with distinct
  shapes and distinct colours, so binding the colours to the wrong shapes fails.

``geneval_scores`` reports each family's accuracy over its images and ``overall``, the mean of
the family accuracies (GenEval's overall is the mean over tasks).
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy import ndimage

from lumos.data.worlds import shapes as S

FAMILIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
RELATIONS = ("left of", "right of", "above", "below")
COUNT_RANGE = (2, 4)

# Detector defaults (tuned on ground-truth renders; see tests/test_geneval.py).
COLOUR_THRESHOLD = 45.0  # max RGB distance to a palette colour or its shade
MIN_CHROMA = 40.0  # min (max - min) of a pixel's RGB: palette colours and shades have >= 71
POSITION_MARGIN = 0.1  # relation needs |centroid offset| > margin * (extent_a + extent_b) ...
MIN_MARGIN_PX = 2.0  # ... and > this many pixels
MIN_SHAPE_IOU = 0.75  # a component is an object only if a shape template fits it this well (the
# detector's confidence threshold; ground-truth renders fit at >= 0.88 in 99% of cases, blobs and
# noise from untrained models mostly below)

_COLOUR_NAMES = tuple(S.COLOURS)
# References: every palette colour, then every shade; reference k belongs to colour k % n.
_REFS = np.array(
    [S.COLOURS[c] for c in _COLOUR_NAMES] + [S.shade(S.COLOURS[c]) for c in _COLOUR_NAMES], np.float32
)


# -----------------------------------------------------------------------------
# Prompts
# -----------------------------------------------------------------------------


def _obj(shape: str, colour: str, count: int = 1) -> dict:
    return {"shape": shape, "colour": colour, "count": int(count)}


def _phrase(o: dict) -> str:
    if o["count"] == 1:
        name = f"{o['colour']} {o['shape']}"
        return f"{S.article(name)} {name}"
    word = S.NUMBER_WORDS[o["count"]]
    plural = o["shape"] + ("es" if o["shape"].endswith("s") else "s")
    return f"{word} {o['colour']} {plural}"


def _make_one(family: str, rng: np.random.Generator) -> dict:
    def pick(seq, k=1):
        """``k`` distinct items of ``seq`` (one draw from ``rng``)."""
        return S.choose_distinct(rng, seq, k)

    relation = None
    if family in ("single_object", "colors"):
        objects = [_obj(pick(S.SHAPES)[0], pick(_COLOUR_NAMES)[0])]
    elif family == "counting":
        n = int(rng.integers(COUNT_RANGE[0], COUNT_RANGE[1] + 1))
        objects = [_obj(pick(S.SHAPES)[0], pick(_COLOUR_NAMES)[0], n)]
    elif family == "two_object":
        sa, sb = pick(S.SHAPES, 2)
        objects = [_obj(sa, pick(_COLOUR_NAMES)[0]), _obj(sb, pick(_COLOUR_NAMES)[0])]
    elif family in ("color_attr", "position"):
        sa, sb = pick(S.SHAPES, 2)
        ca, cb = pick(_COLOUR_NAMES, 2)
        objects = [_obj(sa, ca), _obj(sb, cb)]
        if family == "position":
            relation = {"a": 0, "b": 1, "rel": S.choose(rng, RELATIONS)}
    else:
        raise ValueError(f"unknown family {family!r}")

    if relation is not None:
        text = f"{_phrase(objects[0])} {relation['rel']} {_phrase(objects[1])}"
    else:
        text = " and ".join(_phrase(o) for o in objects)
    return {"family": family, "prompt": f"a photo of {text}", "objects": objects, "relation": relation}


def make_prompts(n_per_family: int, seed: int, image_size: int = 32) -> list[dict]:
    """A deterministic prompt set: ``n_per_family`` prompts of each family, grouped by family
    in :data:`FAMILIES` order. Prompt ``i`` of a family depends only on (seed, family, i).
    ``image_size`` is accepted for API symmetry; the prompts do not depend on it."""
    prompts = []
    for f, family in enumerate(FAMILIES):
        for i in range(n_per_family):
            prompts.append(_make_one(family, np.random.default_rng([seed, f, i])))
    return prompts


# -----------------------------------------------------------------------------
# Ground truth
# -----------------------------------------------------------------------------


def render_ground_truth(prompt: dict, seed: int, image_size: int = 32) -> np.ndarray:
    """Render a Shapes-world scene that satisfies ``prompt`` as a uint8 (H, W, 3) image.

    Objects (``count`` copies of each prompt object, random textures) have pairwise
    disjoint boxes with at least a 2-pixel gap; for ``position`` the two boxes are also
    separated along the relation's axis (:func:`lumos.data.worlds.shapes.place_apart`). The background
    is a plain or vertical-gradient neutral. Deterministic in (prompt text, seed, image_size).
    """
    rng = np.random.default_rng([seed, zlib.crc32(prompt["prompt"].encode()), image_size])
    specs = [(o["shape"], o["colour"]) for o in prompt["objects"] for _ in range(int(o["count"]))]
    rel = prompt.get("relation")
    bg, cols = S.sample_grey_background(rng)
    relation = None if rel is None else (rel["rel"], rel["a"], rel["b"])
    placed = S.place_apart(rng, len(specs), image_size, relation, sizes_first=True)
    if placed is None:
        raise RuntimeError(f"could not place {prompt['prompt']!r} at {image_size}px")
    textured = [(shape, colour, S.sample_texture(rng)) for shape, colour in specs]  # drawn after placing
    return S.render(S.Scene(image_size, bg, cols, S.objects_in_boxes(textured, placed, image_size)))


# -----------------------------------------------------------------------------
# Detector
# -----------------------------------------------------------------------------


def _template(shape: str, h: int, w: int) -> np.ndarray:
    """Boolean (h, w) mask of ``shape`` stretched over an h x w box (Shapes-world geometry)."""
    u = ((np.arange(w) + 0.5) / w * 2.0 - 1.0)[None, :]
    v = ((np.arange(h) + 0.5) / h * 2.0 - 1.0)[:, None]
    return np.asarray(S.shape_mask(shape, u, v))


def _classify(mask: np.ndarray) -> tuple[str, float]:
    """Shape whose box-fitted template has the highest IoU with ``mask`` (cropped to its box)."""
    h, w = mask.shape
    best, best_iou = S.SHAPES[0], -1.0
    for shape in S.SHAPES:
        t = _template(shape, h, w)
        iou = (t & mask).sum() / max(1, (t | mask).sum())
        if iou > best_iou:
            best, best_iou = shape, float(iou)
    return best, best_iou


def colour_map(image: np.ndarray, threshold: float = COLOUR_THRESHOLD, min_chroma: float = MIN_CHROMA) -> np.ndarray:
    """(H, W) int map: index into ``COLOURS`` of each pixel's nearest palette colour or shade,
    or -1 where no reference lies within ``threshold`` (RGB Euclidean distance) or the pixel's
    chroma (max - min channel) is below ``min_chroma`` (neutral backgrounds have <= ~16)."""
    img = np.asarray(image, np.float32)[..., :3]
    d = np.linalg.norm(img[:, :, None, :] - _REFS[None, None], axis=-1)
    k = d.argmin(-1)
    out = (k % len(_COLOUR_NAMES)).astype(np.int64)
    out[np.take_along_axis(d, k[..., None], -1)[..., 0] > threshold] = -1
    out[img.max(-1) - img.min(-1) < min_chroma] = -1
    return out


def detect(image: np.ndarray, threshold: float = COLOUR_THRESHOLD, min_area: int | None = None,
           min_iou: float = MIN_SHAPE_IOU) -> list[dict]:
    """Detect Shapes-world objects in a uint8 (H, W, 3) image from its pixels alone.

    Each 8-connected component (holes filled) of at least ``min_area`` pixels of one palette
    colour is an object (default ``min_area``: 8 px at 32x32, scaled with the image area) if
    its best shape template overlaps it with IoU >= ``min_iou`` (a detector's confidence
    threshold: shapeless blobs are not detected as any shape).
    Returns ``[{"shape", "colour", "box": (x0, y0, x1, y1), "centroid": (x, y), "area",
    "iou"}]`` where ``box`` is inclusive-exclusive, ``centroid`` is in pixel-centre
    coordinates and ``iou`` is the overlap with the chosen shape template.
    """
    image = np.asarray(image)
    h, w = image.shape[:2]
    if min_area is None:
        min_area = max(4, int(round(8 * h * w / 1024)))
    cmap = colour_map(image, threshold)
    out = []
    for ci, colour in enumerate(_COLOUR_NAMES):
        labels, n = ndimage.label(cmap == ci, structure=np.ones((3, 3), bool))
        if n == 0:
            continue
        for k, sl in enumerate(ndimage.find_objects(labels), start=1):
            mask = ndimage.binary_fill_holes(labels[sl] == k)
            area = int(mask.sum())
            if area < min_area:
                continue
            ys, xs = np.nonzero(mask)
            shape, iou = _classify(mask)
            if iou < min_iou:
                continue
            out.append(
                {
                    "shape": shape,
                    "colour": colour,
                    "box": (int(sl[1].start), int(sl[0].start), int(sl[1].stop), int(sl[0].stop)),
                    "centroid": (float(xs.mean() + sl[1].start + 0.5), float(ys.mean() + sl[0].start + 0.5)),
                    "area": area,
                    "iou": iou,
                }
            )
    return out


# -----------------------------------------------------------------------------
# Scoring
# -----------------------------------------------------------------------------


def _matches(dets: list[dict], shape: str, colour: str | None = None) -> list[dict]:
    return [d for d in dets if d["shape"] == shape and (colour is None or d["colour"] == colour)]


def relation_holds(rel: str, a: dict, b: dict, margin: float = POSITION_MARGIN, min_px: float = MIN_MARGIN_PX) -> bool:
    """Whether detection ``a`` is ``rel`` detection ``b``: the centroid offset along the
    relation's axis exceeds ``max(min_px, margin * (extent_a + extent_b))`` in the right
    direction (GenEval-style; the other axis is unconstrained)."""
    (ax, ay), (bx, by) = a["centroid"], b["centroid"]
    horizontal = rel in ("left of", "right of")
    axis = 0 if horizontal else 1
    ext = (a["box"][axis + 2] - a["box"][axis]) + (b["box"][axis + 2] - b["box"][axis])
    thr = max(min_px, margin * ext)
    d = (ax - bx) if horizontal else (ay - by)
    if rel in ("left of", "above"):
        return d < -thr
    if rel in ("right of", "below"):
        return d > thr
    raise ValueError(f"unknown relation {rel!r}")


def score_image(prompt: dict, detections: list[dict]) -> bool:
    """GenEval-style correctness of one image (given its detections) for ``prompt``."""
    fam, objs = prompt["family"], prompt["objects"]
    if fam == "single_object":
        return len(_matches(detections, objs[0]["shape"], objs[0]["colour"])) >= 1
    if fam == "colors":
        same_shape = _matches(detections, objs[0]["shape"])
        return bool(same_shape) and all(d["colour"] == objs[0]["colour"] for d in same_shape)
    if fam in ("two_object", "color_attr"):
        return all(_matches(detections, o["shape"], o["colour"]) for o in objs)
    if fam == "counting":
        return len(_matches(detections, objs[0]["shape"], objs[0]["colour"])) == objs[0]["count"]
    if fam == "position":
        rel = prompt["relation"]
        ma = _matches(detections, objs[rel["a"]]["shape"], objs[rel["a"]]["colour"])
        mb = _matches(detections, objs[rel["b"]]["shape"], objs[rel["b"]]["colour"])
        if not ma or not mb:
            return False
        a = max(ma, key=lambda d: d["area"])
        b = max(mb, key=lambda d: d["area"])
        return relation_holds(rel["rel"], a, b)
    raise ValueError(f"unknown family {fam!r}")


def geneval_scores(prompts: list[dict], images_per_prompt: list[list[np.ndarray]]) -> dict:
    """Per-family accuracy (mean over all images of the family's prompts) and ``overall``, the
    mean of the family accuracies present (all six for a :func:`make_prompts` set)."""
    if len(prompts) != len(images_per_prompt):
        raise ValueError(f"{len(prompts)} prompts but {len(images_per_prompt)} image lists")
    hits: dict[str, list[bool]] = {}
    for p, imgs in zip(prompts, images_per_prompt):
        for img in imgs:
            hits.setdefault(p["family"], []).append(score_image(p, detect(img)))
    scores = {f: float(np.mean(hits[f])) for f in FAMILIES if hits.get(f)}
    scores["overall"] = float(np.mean(list(scores.values()))) if scores else 0.0
    return scores

"""DPG-Bench analogue on the Shapes world: dense prompts, question graphs, pixel-checked answers.

DPG-Bench (Hu et al., 2024, "ELLA") pairs each long, dense prompt with yes/no questions in five
categories (global, entity, attribute, relation, other) that form a dependency graph: a child
question ("is the circle red?") is scored 0 whenever one of its parents ("is there a circle?")
is answered "no". A VQA model answers the questions on each generated image; a prompt's score is
the mean of its dependency-adjusted question scores averaged over its images, and the headline
"Average" is the mean prompt score over all prompts (x100).

Here the VQA model is replaced by the exact pixel detector of :mod:`lumos.eval.geneval` plus
simple pixel statistics, and every question carries a structured ``check`` it is answered from:

- prompt: a 2-3 object Shapes-world scene (distinct shapes, distinct colours, random textures
  and background kind) described by :func:`lumos.data.worlds.shapes.long_caption` plus a sentence on
  the background; the scene is stored (``Scene.to_dict``) so it can be rendered.
- global: "Is the background <plain|gradient|textured>?" -- background pixels (those the
  detector's colour map leaves unassigned) are textured if horizontally adjacent ones differ
  (the checkerboard), else a gradient if the top and bottom quarters differ, else plain.
- entity: "Is there a <shape>?" -- some detection has that shape. The *referent* of a shape in
  the child questions is its largest detection (as in geneval's position task).
- attribute (parent: the entity): "Is the <shape> <colour>?" -- the referent's colour; "Is the
  <shape> <texture>?" -- the fraction of the referent's pixels in the darker texture shade
  (plain ~0, dotted 0.07-0.18, striped 0.27-0.38 at every shape and size).
- relation (parents: both entities): "Is the <a> to the left of the <b>?" (or right of, above,
  below; the dominant-axis relation of :func:`lumos.data.worlds.shapes.relation`), checked with
  :func:`lumos.eval.geneval.relation_holds` on the referents' centroids.
- other: "Are there exactly N objects?" -- the number of detections.

Following DPG-Bench's scorer, a question scores 0 if any of its parents' *raw* answers is "no"
(the graph is one level deep here, so raw and adjusted parent answers give the same result).
"""

from __future__ import annotations

import numpy as np

from lumos.data.worlds import shapes as S
from lumos.eval.geneval import colour_map, detect, relation_holds

CATEGORIES = ("global", "entity", "attribute", "relation", "other")
OBJECT_RANGE = (2, 3)

# Texture and background thresholds (measured on renders at 32 and 64 px; see module docstring).
DOTTED_MIN, STRIPED_MIN = 0.035, 0.22  # shade-pixel fraction bounds of dotted / striped
TEXTURE_STEP, TEXTURED_MIN_FRAC = 12.0, 0.15  # checkerboard: >= 15% of horizontal neighbours
# (both background) differ by > TEXTURE_STEP (RGB mean); the tones differ by 30-50 per channel
GRADIENT_MIN_DIFF = 8.0  # mean |top quarter - bottom quarter| (RGB mean) of a gradient

_BACKGROUND_SENTENCES = {
    "plain": "The backdrop is a single flat, uniform neutral tone.",
    "gradient": "The backdrop is a smooth vertical gradient between two neutral tones.",
    "textured": "The backdrop is a fine checkerboard of two close neutral tones.",
}
_RELATIONS = {"to the left of": "left of", "to the right of": "right of", "above": "above", "below": "below"}


# -----------------------------------------------------------------------------
# Prompts
# -----------------------------------------------------------------------------


def _sample_scene(rng: np.random.Generator, image_size: int) -> S.Scene:
    """2-3 objects of distinct shapes and colours with pairwise disjoint boxes (gap >= 2 px)."""
    kind, bg_cols = S.sample_background(rng)
    k = int(rng.integers(OBJECT_RANGE[0], OBJECT_RANGE[1] + 1))
    shapes = S.choose_distinct(rng, S.SHAPES, k)
    colours = S.choose_distinct(rng, tuple(S.COLOURS), k)
    textures = [S.sample_texture(rng) for _ in range(k)]
    boxes = S.place_apart(rng, k, image_size)
    if boxes is None:
        raise RuntimeError(f"could not place {k} objects at {image_size}px")
    objects = S.objects_in_boxes(zip(shapes, colours, textures), boxes, image_size)
    return S.Scene(image_size, kind, bg_cols, objects)


def build_prompt(scene: S.Scene, index: int = 0) -> dict:
    """The DPG prompt of a scene whose objects have distinct shapes: ``{"index", "prompt",
    "scene", "questions"}``; each question is ``{"id", "category", "text", "parents", "check"}``
    with ids ``0..n-1`` in order global, entities, attributes, relations, count."""
    objs = scene.objects
    if len({o.shape for o in objs}) != len(objs):
        raise ValueError("DPG prompts need objects of distinct shapes")
    questions: list[dict] = []

    def add(category: str, text: str, check: dict, parents=()) -> int:
        q = {"id": len(questions), "category": category, "text": text, "parents": list(parents), "check": check}
        questions.append(q)
        return len(questions) - 1

    add("global", f"Is the background {scene.background}?", {"type": "background", "kind": scene.background})
    ent = {o.shape: add("entity", f"Is there a {o.shape}?", {"type": "exists", "shape": o.shape}) for o in objs}
    for o in objs:
        for attr in ("colour", "texture"):
            value = getattr(o, attr)
            check = {"type": attr, "shape": o.shape, attr: value}
            add("attribute", f"Is the {o.shape} {value}?", check, [ent[o.shape]])
    for i, a in enumerate(objs):
        for b in objs[i + 1 :]:
            rel = S.relation(a, b)
            check = {"type": "relation", "a": a.shape, "b": b.shape, "rel": _RELATIONS[rel]}
            add("relation", f"Is the {a.shape} {rel} the {b.shape}?", check, [ent[a.shape], ent[b.shape]])
    add("other", f"Are there exactly {len(objs)} objects?", {"type": "count", "n": len(objs)})
    text = f"{S.long_caption(scene)} {_BACKGROUND_SENTENCES[scene.background]}"
    return {"index": int(index), "prompt": text, "scene": scene.to_dict(), "questions": questions}


def make_dpg_prompts(n: int, seed: int, image_size: int = 32) -> list[dict]:
    """``n`` deterministic dense prompts (see :func:`build_prompt` for the format). Prompt ``i``
    depends only on ``(seed, i, image_size)``."""
    return [build_prompt(_sample_scene(np.random.default_rng([seed, i]), image_size), i) for i in range(n)]


def render_dpg_ground_truth(prompt: dict, seed: int = 0) -> np.ndarray:
    """Render the prompt's scene as a uint8 (H, W, 3) image. ``seed=0`` gives the stored scene;
    other seeds redraw the background's neutral tones (same kind), which the prompt leaves open."""
    scene = S.Scene.from_dict(prompt["scene"])
    if seed:
        rng = np.random.default_rng([seed, int(prompt.get("index", 0))])
        scene.background_colours = S.sample_background_colours(rng, scene.background)
    return S.render(scene)


# -----------------------------------------------------------------------------
# Answering
# -----------------------------------------------------------------------------


def background_kind(image: np.ndarray, cmap: np.ndarray | None = None) -> str:
    """Classify the background of a uint8 image as ``"plain"``, ``"gradient"`` or ``"textured"``
    from the pixels the detector's colour map leaves unassigned (``cmap``, computed if None):
    textured if enough horizontally adjacent background pixels differ sharply (the
    checkerboard's cell edges; plain and vertical-gradient backgrounds are constant along rows),
    else gradient if the top and bottom quarters' mean colours differ, else plain."""
    img = np.asarray(image, np.float32)[..., :3]
    bg = (colour_map(image) if cmap is None else cmap) < 0
    pair = bg[:, 1:] & bg[:, :-1]
    step = np.abs(img[:, 1:] - img[:, :-1]).mean(-1)[pair]
    if len(step) and (step > TEXTURE_STEP).mean() > TEXTURED_MIN_FRAC:
        return "textured"
    q = max(1, img.shape[0] // 4)
    top, bottom = img[:q][bg[:q]], img[-q:][bg[-q:]]
    if len(top) and len(bottom) and np.abs(top.mean(0) - bottom.mean(0)).mean() > GRADIENT_MIN_DIFF:
        return "gradient"
    return "plain"


def texture_of(image: np.ndarray, det: dict, cmap: np.ndarray | None = None) -> str:
    """Texture of a detection: the fraction of its colour's pixels (within its box) that are
    nearer the darker texture shade than the base colour decides plain / dotted / striped."""
    cmap = colour_map(image) if cmap is None else cmap
    x0, y0, x1, y1 = det["box"]
    ci = list(S.COLOURS).index(det["colour"])
    px = np.asarray(image, np.float32)[y0:y1, x0:x1, :3][cmap[y0:y1, x0:x1] == ci]
    if len(px) == 0:
        return "plain"
    base, dark = (np.asarray(c, np.float32) for c in (S.COLOURS[det["colour"]], S.shade(S.COLOURS[det["colour"]])))
    frac = float((np.linalg.norm(px - dark, axis=-1) < np.linalg.norm(px - base, axis=-1)).mean())
    return "plain" if frac < DOTTED_MIN else ("dotted" if frac < STRIPED_MIN else "striped")


def answer_questions(prompt: dict, image: np.ndarray) -> dict:
    """Raw yes/no answers ``{question id: bool}`` for one image, from its pixels alone."""
    cmap = colour_map(image)
    dets = detect(image)
    referent = {}  # shape -> its largest detection
    for d in dets:
        if d["shape"] not in referent or d["area"] > referent[d["shape"]]["area"]:
            referent[d["shape"]] = d
    answers = {}
    for q in prompt["questions"]:
        c = q["check"]
        kind = c["type"]
        if kind == "background":
            ok = background_kind(image, cmap) == c["kind"]
        elif kind == "exists":
            ok = c["shape"] in referent
        elif kind == "colour":
            ok = c["shape"] in referent and referent[c["shape"]]["colour"] == c["colour"]
        elif kind == "texture":
            ok = c["shape"] in referent and texture_of(image, referent[c["shape"]], cmap) == c["texture"]
        elif kind == "relation":
            a, b = referent.get(c["a"]), referent.get(c["b"])
            ok = a is not None and b is not None and relation_holds(c["rel"], a, b)
        elif kind == "count":
            ok = len(dets) == c["n"]
        else:
            raise ValueError(f"unknown check type {kind!r}")
        answers[q["id"]] = bool(ok)
    return answers


# -----------------------------------------------------------------------------
# Scoring
# -----------------------------------------------------------------------------


def score_prompt(prompt: dict, image: np.ndarray) -> dict:
    """Score one image: ``{"answers": raw {id: bool}, "scores": {id: 0.0 or 1.0}, "score": mean
    of scores}``. A question scores 0 if any parent's raw answer is "no" (DPG-Bench's rule)."""
    answers = answer_questions(prompt, image)
    scores = {
        q["id"]: float(answers[q["id"]] and all(answers[p] for p in q["parents"])) for q in prompt["questions"]
    }
    return {"answers": answers, "scores": scores, "score": float(np.mean(list(scores.values())))}


def dpg_scores(prompts: list[dict], images_per_prompt: list[list[np.ndarray]]) -> dict:
    """DPG-Bench scores (x100): ``average``, the mean over prompts of the prompt score (mean
    over its images of :func:`score_prompt`'s ``score``), and one score per category, the mean
    adjusted score over every (question of that category, image) pair (NaN if none). ``counts``
    holds the number of prompts, images and (question, image) pairs per category."""
    if len(prompts) != len(images_per_prompt):
        raise ValueError(f"{len(prompts)} prompts but {len(images_per_prompt)} image lists")
    per_cat: dict[str, list[float]] = {c: [] for c in CATEGORIES}
    prompt_scores, n_images = [], 0
    for p, imgs in zip(prompts, images_per_prompt):
        if not imgs:
            raise ValueError(f"prompt {p.get('index')} has no images")
        cat = {q["id"]: q["category"] for q in p["questions"]}
        image_scores = []
        for img in imgs:
            r = score_prompt(p, img)
            image_scores.append(r["score"])
            for qid, s in r["scores"].items():
                per_cat[cat[qid]].append(s)
        prompt_scores.append(float(np.mean(image_scores)))
        n_images += len(imgs)
    out = {c: 100.0 * float(np.mean(v)) if v else float("nan") for c, v in per_cat.items()}
    out["average"] = 100.0 * float(np.mean(prompt_scores)) if prompt_scores else float("nan")
    out["counts"] = {"prompts": len(prompts), "images": n_images, **{c: len(v) for c, v in per_cat.items()}}
    return out

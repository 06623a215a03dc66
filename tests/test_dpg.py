"""DPG-Bench analogue: dense prompts, question graphs, pixel answers and DPG scoring rules."""

import dataclasses

import numpy as np
import pytest

from lumos.data.worlds import shapes as S
from lumos.eval.dpg import (
    CATEGORIES,
    answer_questions,
    background_kind,
    build_prompt,
    dpg_scores,
    make_dpg_prompts,
    render_dpg_ground_truth,
    score_prompt,
)

N = 32
BG = [(128, 128, 128)]
TWO = [("circle", "red", "plain", 5, 8, 16), ("square", "blue", "striped", 5, 24, 16)]
THREE = [
    ("circle", "red", "dotted", 5, 8, 8),
    ("square", "blue", "plain", 5, 24, 8),
    ("triangle", "green", "striped", 5, 16, 24),
]


def _scene(objs, background="plain", cols=BG):
    """A hand-placed scene of (shape, colour, texture, size, cx, cy) objects."""
    return S.Scene(N, background, list(cols), [S.ShapeObject(*o, image_size=N) for o in objs])


def _qid(prompt, text):
    (q,) = [q for q in prompt["questions"] if q["text"] == text]
    return q["id"]


def test_prompts_deterministic_and_well_formed():
    a = make_dpg_prompts(30, seed=3)
    assert a == make_dpg_prompts(30, seed=3)
    assert a != make_dpg_prompts(30, seed=4)
    assert make_dpg_prompts(5, seed=3) == a[:5]  # prompt i does not depend on n
    assert len({p["prompt"] for p in a}) == 30
    assert {p["scene"]["background"] for p in a} == set(S.BACKGROUNDS)
    for i, p in enumerate(a):
        scene = S.Scene.from_dict(p["scene"])
        objs = scene.objects
        assert p["index"] == i and scene.image_size == N and 2 <= len(objs) <= 3
        assert len({o.shape for o in objs}) == len(objs) and len({o.colour for o in objs}) == len(objs)
        for o in objs:  # every detail the questions ask about is stated in the dense prompt
            assert f"{o.texture} {o.colour} {o.shape}" in p["prompt"]
        assert f"{scene.background} background" in p["prompt"]
        qs = p["questions"]
        assert [q["id"] for q in qs] == list(range(len(qs)))
        cats = [q["category"] for q in qs]
        k = len(objs)
        assert [cats.count(c) for c in CATEGORIES] == [1, k, 2 * k, k * (k - 1) // 2, 1]
        entity = {q["check"]["shape"]: q["id"] for q in qs if q["category"] == "entity"}
        for q in qs:
            if q["category"] == "attribute":
                assert q["parents"] == [entity[q["check"]["shape"]]]
            elif q["category"] == "relation":
                c = q["check"]
                assert q["parents"] == [entity[c["a"]], entity[c["b"]]]
                oa, ob = (next(o for o in objs if o.shape == s) for s in (c["a"], c["b"]))
                assert S.relation(oa, ob).endswith(c["rel"])  # stated relation matches positions
            else:
                assert q["parents"] == []
    assert S.Scene.from_dict(make_dpg_prompts(1, seed=3, image_size=64)[0]["scene"]).image_size == 64


def test_ground_truth_render():
    p = make_dpg_prompts(3, seed=0)[1]
    img = render_dpg_ground_truth(p)
    assert img.dtype == np.uint8 and img.shape == (N, N, 3)
    assert np.array_equal(img, S.render(S.Scene.from_dict(p["scene"])))
    other = render_dpg_ground_truth(p, seed=1)  # same scene, redrawn background tones
    assert np.array_equal(other, render_dpg_ground_truth(p, seed=1))
    assert not np.array_equal(img, other)
    assert all(answer_questions(p, other).values())


def test_scores_on_ground_truth_renders():
    # Measured: 100.0 for every category and the average (60 prompts x 2 renders at 32 px; also
    # 200 prompts x 2 renders at 32 and 64 px). Tolerance: average >= 95, categories >= 90.
    prompts = make_dpg_prompts(60, seed=0)
    scores = dpg_scores(prompts, [[render_dpg_ground_truth(p, s) for s in (0, 1)] for p in prompts])
    print({k: v if isinstance(v, dict) else round(v, 2) for k, v in scores.items()})
    assert scores["average"] >= 95
    assert min(scores[c] for c in CATEGORIES) >= 90
    assert scores["counts"]["prompts"] == 60 and scores["counts"]["images"] == 120


@pytest.mark.parametrize("kind", S.BACKGROUNDS)
def test_background_kind(kind):
    rng = np.random.default_rng(7)
    for _ in range(10):
        cols = S.sample_background_colours(rng, kind)
        for size in (32, 64):
            assert background_kind(S.render(S.Scene(size, kind, cols, []))) == kind
    p = build_prompt(_scene(TWO, kind, [(200, 200, 200), (140, 140, 140)]))
    assert answer_questions(p, render_dpg_ground_truth(p))[0]  # the global question


def test_wrong_colour_or_texture_fails_only_that_attribute():
    p = build_prompt(_scene(TWO))
    assert all(answer_questions(p, render_dpg_ground_truth(p)).values())
    recoloured = _scene([("circle", "green", *TWO[0][2:]), TWO[1]])
    r = score_prompt(p, S.render(recoloured))
    assert r["scores"][_qid(p, "Is the circle red?")] == 0.0
    wrong = {q for q, s in r["scores"].items() if s == 0.0}
    assert wrong == {_qid(p, "Is the circle red?")}  # entity, texture, relation, count all kept
    assert r["score"] == pytest.approx(8 / 9)
    retextured = _scene([TWO[0], ("square", "blue", "dotted", *TWO[1][3:])])
    r = score_prompt(p, S.render(retextured))
    assert {q for q, s in r["scores"].items() if s == 0.0} == {_qid(p, "Is the square striped?")}


def test_missing_entity_zeroes_its_children():
    p = build_prompt(_scene(THREE))
    r = score_prompt(p, S.render(_scene([THREE[0], THREE[2]])))  # the square is missing
    sq = _qid(p, "Is there a square?")
    children = {q["id"] for q in p["questions"] if sq in q["parents"]}
    assert len(children) == 4  # colour, texture, two relations
    assert not r["answers"][sq]
    assert all(r["scores"][c] == 0.0 for c in children)
    zero = {q for q, s in r["scores"].items() if s == 0.0}
    assert zero == children | {sq, _qid(p, "Are there exactly 3 objects?")}
    # The rule itself: a child whose own answer is "yes" still scores 0 under a "no" parent.
    p2 = dict(p, questions=[dict(q, parents=[sq]) if q["category"] == "global" else q for q in p["questions"]])
    r2 = score_prompt(p2, S.render(_scene([THREE[0], THREE[2]])))
    assert r2["answers"][0] and r2["scores"][0] == 0.0


@pytest.mark.parametrize("axis", ["horizontal", "vertical"])
def test_swapped_relation_fails(axis):
    a, b = ((8, 16), (24, 16)) if axis == "horizontal" else ((16, 8), (16, 24))
    objs = [("circle", "red", "plain", 5, *a), ("diamond", "yellow", "dotted", 5, *b)]
    p = build_prompt(_scene(objs))
    text = "Is the circle to the left of the diamond?" if axis == "horizontal" else "Is the circle above the diamond?"
    rel = _qid(p, text)
    swapped = _scene([(*objs[0][:4], *b), (*objs[1][:4], *a)])
    r = score_prompt(p, S.render(swapped))
    assert {q for q, s in r["scores"].items() if s == 0.0} == {rel}
    assert score_prompt(p, render_dpg_ground_truth(p))["score"] == 1.0


def test_blank_image_scores_zero_on_entities():
    prompts = make_dpg_prompts(20, seed=1)
    blanks = [[S.render(dataclasses.replace(S.Scene.from_dict(p["scene"]), objects=[]))] for p in prompts]
    s = dpg_scores(prompts, blanks)
    assert s["entity"] == 0.0 and s["attribute"] == 0.0 and s["relation"] == 0.0 and s["other"] == 0.0
    assert s["global"] == 100.0  # the background is still right
    assert s["average"] == pytest.approx(100 * np.mean([1 / len(p["questions"]) for p in prompts]))


def test_dpg_scores_arithmetic():
    pa, pb = build_prompt(_scene(TWO), 0), build_prompt(_scene(THREE), 1)  # 9 and 14 questions
    wrong_colour = S.render(_scene([("circle", "green", *TWO[0][2:]), TWO[1]]))  # 8 of 9 right
    blank = S.render(_scene([]))  # only the global question right: 1 of 14
    s = dpg_scores([pa, pb], [[render_dpg_ground_truth(pa), wrong_colour], [blank]])
    assert s["average"] == pytest.approx(100 * ((1 + 8 / 9) / 2 + 1 / 14) / 2)
    assert s["global"] == pytest.approx(100.0)
    assert s["entity"] == pytest.approx(100 * 4 / 7)  # 2 + 2 right for A, 0 of 3 for B
    assert s["attribute"] == pytest.approx(100 * 7 / 14)  # 4 + 3 for A, 0 of 6 for B
    assert s["relation"] == pytest.approx(100 * 2 / 5)  # 1 + 1 for A, 0 of 3 for B
    assert s["other"] == pytest.approx(100 * 2 / 3)
    counts = {"prompts": 2, "images": 3, "global": 3, "entity": 7, "attribute": 14, "relation": 5, "other": 3}
    assert s["counts"] == counts
    with pytest.raises(ValueError):
        dpg_scores([pa, pb], [[blank]])
    with pytest.raises(ValueError):
        dpg_scores([pa], [[]])

"""Text encoders: Shapes-world tokenizer, tiny T5 and CLIP saved/loaded through the pretrained
component path, padding invariance, CLIP training and the CLIP score."""

import numpy as np
import pytest
import torch

from lumos.components import text as T
from lumos.components.loading import MissingWeightsError
from lumos.data.worlds.shapes import generate_split
from lumos.eval.geneval import make_prompts

T5_CFG = {"d_model": 32, "num_layers": 2, "num_heads": 4, "d_kv": 8, "d_ff": 64}
CLIP_CFG = {"steps": 150, "batch_size": 64, "lr": 1e-3, "hidden_size": 64, "layers": 2, "heads": 4,
            "patch_size": 8, "projection_dim": 64, "max_length": 8, "max_positions": 64}


def _texts():
    _, recs = generate_split(30, 0, image_size=32, min_objects=0, max_objects=4)
    prompts = [p["prompt"] for p in make_prompts(5, 0)]
    return [r["short_caption"] for r in recs] + [r["long_caption"] for r in recs] + prompts


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("t5")
    meta = T.train_t5(T5_CFG, str(out), seed=0)
    assert meta["vocab_size"] == len(T.build_tokenizer())
    return out


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    """Tiny CLIP trained on 600 single-object images (40 shape-colour captions)."""
    out = tmp_path_factory.mktemp("clip")
    images, records = generate_split(600, 0, image_size=32, min_objects=1, max_objects=1, split_id=6)
    meta = T.train_clip(images, [r["short_caption"] for r in records], CLIP_CFG, str(out), seed=0)
    return out, meta


@pytest.fixture(scope="module")
def held_out():
    """32 held-out images (another seed) with pairwise distinct captions: chance is 1/32."""
    images, records = generate_split(400, 1, image_size=32, min_objects=1, max_objects=1, split_id=6)
    first = {}
    for i, r in enumerate(records):
        first.setdefault(r["short_caption"], i)
    idx = list(first.values())[:32]
    assert len(idx) == 32
    return images[idx], [records[i]["short_caption"] for i in idx]


def test_tokenizer_round_trip_and_unknown_words(tmp_path):
    from transformers import AutoTokenizer

    tok = T.build_tokenizer()
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    texts = _texts() + ["an empty picture", "A Photo of 12 Red Circles , above 3 crosses."]
    for text in texts:
        ids = tok(text).input_ids
        assert ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids, text
        assert tok.decode(ids, skip_special_tokens=True) == T.normalise_text(text)
    tokens = tok.convert_ids_to_tokens(tok("a Zebra circle!").input_ids)
    assert tokens == ["a", "<unk>", "circle", "<unk>", "</s>"]
    assert "zebra" not in tok.get_vocab() and "zebra" in T.build_tokenizer(["A Zebra."]).get_vocab()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    batch = loaded(texts[:5], padding="max_length", max_length=T.T5_MAX_LENGTH, truncation=True)
    assert batch["input_ids"] == tok(texts[:5], padding="max_length", max_length=T.T5_MAX_LENGTH).input_ids
    assert all(row[-1] == 0 for row in batch["input_ids"])  # padded with <pad>


def test_t5_save_load_round_trip(t5_dir, tmp_path):
    from transformers import T5Config, T5EncoderModel

    enc = T.load_text_encoder({"pretrained": str(t5_dir), "kind": "t5", "max_length": 120}, "t5")
    texts = _texts()[:6]
    tokens, mask = enc(texts)
    assert tokens.shape == (6, 120, T5_CFG["d_model"]) and tokens.dtype == torch.float32
    assert mask.dtype == torch.bool and enc.dim == T5_CFG["d_model"]
    torch.manual_seed(0)  # the same fixed-seed random init, rebuilt in memory
    fresh = T.TextEncoder(T5EncoderModel(T5Config.from_pretrained(t5_dir)), T.build_tokenizer(), "t5", 120)
    assert torch.allclose(fresh(texts)[0], tokens, atol=1e-6)
    T.train_t5(T5_CFG, str(tmp_path), seed=1)  # another seed gives other weights
    other = T.load_text_encoder({"pretrained": str(tmp_path), "kind": "t5"}, "t5")
    assert not torch.allclose(other(texts)[0], tokens, atol=1e-3)


def test_clip_text_tower_save_load_round_trip(clip_run):
    from transformers import AutoTokenizer, CLIPModel

    out, _ = clip_run
    enc = T.load_text_encoder({"pretrained": str(out), "kind": "clip", "max_length": 120}, "clip")
    assert enc.max_length == CLIP_CFG["max_positions"]  # capped at the model's positions
    texts = ["a red circle", "a photo of three green triangles", "a blue square"]
    tokens, mask = enc(texts)
    full = CLIPModel.from_pretrained(out).eval()
    ids = AutoTokenizer.from_pretrained(out)(texts, padding="max_length", max_length=64, return_tensors="pt")
    with torch.no_grad():
        ref = full.text_model(**ids).last_hidden_state
    assert tokens.shape == (3, 64, CLIP_CFG["hidden_size"])
    assert torch.allclose(tokens, ref, atol=1e-6) and torch.equal(mask, ids["attention_mask"].bool())


@pytest.mark.parametrize("kind", ["t5", "clip"])
def test_padding_does_not_change_real_tokens(t5_dir, clip_run, kind):
    folder, tok = (t5_dir if kind == "t5" else clip_run[0]), T.build_tokenizer()
    if kind == "t5":  # the longest caption that leaves room for the shorter padding
        text = max((t for t in _texts() if len(tok(t).input_ids) <= 100), key=lambda t: len(tok(t).input_ids))
    else:
        text = "a photo of a red circle left of a blue square"
    n = len(tok(text).input_ids)  # real tokens incl. </s>
    assert n > 8
    long = T.load_text_encoder({"pretrained": str(folder), "kind": kind, "max_length": 120}, kind)
    short = T.load_text_encoder({"pretrained": str(folder), "kind": kind, "max_length": n + 5}, kind)
    (a, ma), (b, mb) = long([text]), short([text])
    assert b.shape[1] == n + 5 and a.shape[1] == (120 if kind == "t5" else 64)
    for m in (ma[0], mb[0]):
        assert m[:n].all() and not m[n:].any()
    assert torch.allclose(a[0, :n], b[0, :n], atol=1e-5)


def test_train_clip_learns_to_match_images_and_captions(clip_run, held_out):
    out, meta = clip_run
    # measured: loss 4.51 -> 2.00 in 150 steps (~7 s on one CPU thread)
    assert np.isfinite(meta["final_loss"]) and meta["final_loss"] < 0.7 * meta["first_loss"]
    assert meta["retrieval_acc"] > 0.25  # last training batch of 64 (measured 0.52)
    scorer = T.load_clip_scorer({"pretrained": str(out), "input_size": 32}, name="clip")
    images, captions = held_out
    # held-out text->image top-1 among 32 distinct captions: chance 1/32; measured 0.34, need 4x chance
    assert scorer.retrieval_accuracy(images, captions) >= 4 / 32
    # the colour word alone is learned almost perfectly (chance 1/8; measured 1.0)
    best = (scorer.text_embeds(captions) @ scorer.image_embeds(images).t()).argmax(1).tolist()
    assert np.mean([captions[i].split()[1] == captions[j].split()[1] for i, j in enumerate(best)]) > 0.6
    matched = scorer.clip_score(images, captions)
    mismatched = scorer.clip_score(images, captions[1:] + captions[:1])
    assert matched.shape == (32,) and (matched >= 0).all() and (matched <= 100).all()
    assert matched.mean() > mismatched.mean() + 10  # measured 78 vs 22


def test_clip_nan_loss_is_a_clear_error(tmp_path):
    images, records = generate_split(16, 0, image_size=32, min_objects=1, max_objects=1, split_id=6)
    cfg = {**CLIP_CFG, "steps": 2, "batch_size": 8, "std": [0.0] * 3}  # x / 0: non-finite pixels
    with pytest.raises(FloatingPointError, match="CLIP loss"):
        T.train_clip(images, [r["short_caption"] for r in records], cfg, str(tmp_path))


def test_missing_weights_name_the_config_key(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"components\.t5\.pretrained"):
        T.load_text_encoder({"pretrained": str(tmp_path / "absent"), "kind": "t5"}, "t5")
    with pytest.raises(MissingWeightsError, match=r"components\.clip\.pretrained"):
        T.load_clip_scorer({"pretrained": str(tmp_path / "absent")}, name="clip")
    with pytest.raises(MissingWeightsError, match=r"components\.t5_xxl\.pretrained"):
        T.load_text_encoder({"pretrained": "lumos-offline/no-such-t5", "kind": "t5"}, "t5_xxl")
    with pytest.raises(ValueError, match="kind"):
        T.load_text_encoder({"pretrained": str(tmp_path), "kind": "bert"}, "t5")

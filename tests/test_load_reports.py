"""Loading a pretrained component from a checkpoint that holds more than the component (DINO's
pooler, a full CLIP for one tower, a Flan-T5 with its decoder) prints no transformers load report;
keys outside the expected ones, and missing keys, are logged by lumos at WARNING."""

import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from lumos.components import text as T
from lumos.components.aesthetic import load_clip_vision
from lumos.components.encoders import load_encoder

HF_LOGGER = "transformers.modeling_utils"  # where transformers logs its "<Model> LOAD REPORT"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny random stand-ins saved like the hub checkpoints: ViTModel with a pooler
    (facebook/dino-vitb16), full CLIPModel (openai/clip-vit-large-patch14), and
    T5ForConditionalGeneration with an untied LM head (google/flan-t5-xxl)."""
    from transformers import (CLIPConfig, CLIPModel, T5Config, T5ForConditionalGeneration, ViTConfig,
                              ViTModel)

    root = tmp_path_factory.mktemp("ckpt")
    tokenizer = T.build_tokenizer()
    torch.manual_seed(0)
    vit = ViTConfig(image_size=32, patch_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32)
    ViTModel(vit, add_pooling_layer=True).save_pretrained(root / "dino")
    common = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, projection_dim=8)
    text = dict(vocab_size=len(tokenizer), max_position_embeddings=16, pad_token_id=0, bos_token_id=1,
                eos_token_id=1, **common)
    clip = CLIPConfig(text_config=text, vision_config=dict(image_size=32, patch_size=16, **common), projection_dim=8)
    CLIPModel(clip).save_pretrained(root / "clip")
    t5 = T5Config(vocab_size=len(tokenizer), d_model=16, num_layers=1, num_heads=2, d_kv=8, d_ff=32,
                  tie_word_embeddings=False, decoder_start_token_id=0)
    T5ForConditionalGeneration(t5).save_pretrained(root / "t5")
    state = load_file(root / "t5" / "model.safetensors")  # flan-t5-xxl's file holds its untied LM head
    state.setdefault("lm_head.weight", torch.zeros(len(tokenizer), 16))
    save_file(state, root / "t5" / "model.safetensors", metadata={"format": "pt"})
    for name in ("clip", "t5"):
        tokenizer.save_pretrained(root / name)
    return root


@pytest.fixture
def warnings(caplog):
    """The WARNING+ messages of lumos and of transformers' model loading (which does not propagate)."""
    hf = logging.getLogger(HF_LOGGER)
    hf.addHandler(caplog.handler)
    with caplog.at_level(logging.WARNING):
        yield lambda: [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    hf.removeHandler(caplog.handler)


def _edit_weights(src, dst, edit):
    """A copy of checkpoint folder `src` at `dst` with its state dict changed by `edit`."""
    shutil.copytree(src, dst)
    state = load_file(dst / "model.safetensors")
    edit(state)
    save_file(state, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def _loaders(root):
    return {
        "dino": lambda: load_encoder({"pretrained": str(root / "dino"), "input_size": 32}, "dino"),
        "clip_image_tower": lambda: load_encoder({"pretrained": str(root / "clip"), "kind": "clip"}, "clip"),
        "clip_text": lambda: T.load_text_encoder({"pretrained": str(root / "clip"), "kind": "clip"}, "clip_text"),
        "t5": lambda: T.load_text_encoder({"pretrained": str(root / "t5"), "kind": "t5"}, "t5"),
        "aesthetic_clip": lambda: load_clip_vision(str(root / "clip"), "aesthetic.model.clip"),
    }


def test_transformers_report_is_seen_here(checkpoints, warnings):
    """The capture works: a plain load of DINO's checkpoint without its pooler does report."""
    from transformers import ViTModel

    ViTModel.from_pretrained(checkpoints / "dino", add_pooling_layer=False)
    assert any("LOAD REPORT" in m and "pooler" in m for m in warnings())


@pytest.mark.parametrize("component", ["dino", "clip_image_tower", "clip_text", "t5", "aesthetic_clip"])
def test_expected_extra_weights_are_quiet(checkpoints, warnings, capfd, component):
    _loaders(checkpoints)[component]()
    assert warnings() == []
    assert "UNEXPECTED" not in "".join(capfd.readouterr())


def test_other_unexpected_and_missing_weights_are_warned(checkpoints, tmp_path, warnings):
    def edit(state):
        state["encoder.extra.weight"] = torch.zeros(3)
        del state["layernorm.weight"]

    folder = _edit_weights(checkpoints / "dino", tmp_path / "dino", edit)
    load_encoder({"pretrained": str(folder), "input_size": 32}, "dino")
    messages = warnings()
    assert all("LOAD REPORT" not in m for m in messages)
    assert any("dino vision encoder" in m and "encoder.extra.weight" in m and "unexpected" in m for m in messages)
    assert any("dino vision encoder" in m and "layernorm.weight" in m and "missing" in m for m in messages)
    assert all("pooler" not in m for m in messages)


def test_long_key_lists_are_truncated(checkpoints, tmp_path, warnings):
    def edit(state):
        state.update({f"encoder.extra.{i}.weight": torch.zeros(1) for i in range(20)})

    folder = _edit_weights(checkpoints / "clip", tmp_path / "clip", edit)
    T.load_text_encoder({"pretrained": str(folder), "kind": "clip"}, "clip_text")
    (message,) = warnings()
    assert "20 unexpected" in message and "(20 in all)" in message and "vision_model" not in message

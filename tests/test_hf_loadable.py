"""Component folders load as Hugging Face loads them: `AutoImageProcessor` beside every vision
encoder gives the pixels `VisionEncoder.preprocess` gives, and the saved tokenizer records a class
every allowed transformers (>= 4.50) resolves, with the same ids."""

import json
import shutil

import numpy as np
import pytest
import torch

from lumos.components import encoders as E
from lumos.components import text as T

ENC = {"steps": 2, "batch_size": 8, "lr": 1e-3, "hidden_size": 16, "layers": 1, "heads": 2, "patch_size": 8,
       "out_dim": 16, "momentum": 0.9, "temperature": 0.2}
CLIP = {"steps": 2, "batch_size": 8, "lr": 1e-3, "hidden_size": 16, "layers": 1, "heads": 2, "patch_size": 8,
        "projection_dim": 8, "max_length": 8, "mean": T.CLIP_MEAN, "std": T.CLIP_STD}
TEXTS = ["A red circle on the left.", "two blue squares , above 3 crosses", "a zebra!", ""]


def smooth_images(n: int, h: int, w: int) -> np.ndarray:
    """Smooth uint8 images (no bicubic overshoot past 0 or 255)."""
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(h * w)
    out = [127 + 60 * np.sin(xx[..., None] / 5.0 + rng.uniform(0, 6, 3)) * np.cos(yy[..., None] / 7.0
                                                                                  + rng.uniform(0, 6, 3))
           for _ in range(n)]
    return np.stack(out).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folders(small_split, tmp_path_factory):
    """dino, moco and clip trained two steps, and t5, saved as the DAG saves them."""
    _, images, records = small_split
    root = tmp_path_factory.mktemp("components")
    E.train_dino(images, ENC, str(root / "dino"))
    E.train_moco(images, ENC, str(root / "moco"))
    T.train_clip(images, [r["short_caption"] for r in records], CLIP, str(root / "clip"))
    T.train_t5({"d_model": 16, "num_layers": 1, "num_heads": 2, "d_kv": 8, "d_ff": 32}, str(root / "t5"))
    return root


ENCODERS = {"dino": ({"input_size": 32}, "BitImageProcessor"), "moco": ({"input_size": 32}, "BitImageProcessor"),
            "clip": ({"kind": "clip", "mean": T.CLIP_MEAN, "std": T.CLIP_STD}, "CLIPImageProcessor")}


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_auto_image_processor_gives_the_encoders_pixels(folders, small_split, name):
    """At the encoder's input size (every split the DAG feeds it) the processor's tensor equals
    ours within float rounding (atol 1e-6; measured 2.4e-7), with both transformers backends. On
    larger images transformers resizes to uint8: within 1.5 grey levels of 255 per pixel and 0.5 on
    average (measured 1.02 and 0.31; the same with transformers 4.50 and 4.57)."""
    from transformers import AutoImageProcessor

    spec, cls = ENCODERS[name]
    folder = folders / name
    config = json.loads((folder / "preprocessor_config.json").read_text())
    assert config["image_processor_type"] == cls and config["resample"] == 3  # PIL bicubic
    encoder = E.load_encoder({"pretrained": str(folder), **spec}, name)
    _, images, _ = small_split
    for backend in ("torchvision", "pil"):
        processor = AutoImageProcessor.from_pretrained(folder, backend=backend)
        got = processor(list(images[:6]), return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(got, encoder.preprocess(images[:6]), atol=1e-6, rtol=0)
        for h, w in ((64, 96), (48, 48), (40, 64)):
            big = smooth_images(3, h, w)
            levels = ((processor(list(big), return_tensors="pt")["pixel_values"] - encoder.preprocess(big))
                      * encoder.std.view(1, 3, 1, 1) * 255).abs()
            assert levels.max() < 1.5 and levels.mean() < 0.5, (backend, h, w, float(levels.max()))


def test_a_folder_without_processor_config_loads_as_before(folders, small_split, tmp_path):
    """The loaders never read the processor config: a hub-style folder without one (or with the
    hub's own) gives the same tokens; mean, std and size come from the config block as before."""
    _, images, _ = small_split
    bare = tmp_path / "dino"
    shutil.copytree(folders / "dino", bare)
    (bare / "preprocessor_config.json").unlink()
    a = E.load_encoder({"pretrained": str(folders / "dino"), "input_size": 32}, "dino")(images[:4])
    b = E.load_encoder({"pretrained": str(bare), "input_size": 32}, "dino")(images[:4])
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_image_processor_for_the_released_bilinear_preprocessing():
    processor = E.image_processor(224, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], resize="bilinear")
    assert processor.resample == 2 and processor.size == {"shortest_edge": 224}
    with pytest.raises(ValueError, match="resize filter"):
        E.image_processor(224, [0.5] * 3, [0.5] * 3, resize="nearest")


@pytest.mark.parametrize("name", ["t5", "clip"])
def test_saved_tokenizer_loads_in_transformers_4_and_5_with_the_same_ids(folders, name):
    """tokenizer_config.json records `PreTrainedTokenizerFast` (4.50+ and 5.x resolve it; 5.x's own
    name for it, `TokenizersBackend`, is unknown to 4.x); AutoTokenizer gives the built tokenizer's ids.
    (Checked by hand with transformers 4.50.0 and 4.57.3 too: same ids.)"""
    from transformers import AutoTokenizer

    config = json.loads((folders / name / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == T.PORTABLE_TOKENIZER_CLASS == "PreTrainedTokenizerFast"
    loaded, built = AutoTokenizer.from_pretrained(folders / name), T.build_tokenizer()
    kwargs = {"padding": "max_length", "truncation": True, "max_length": 16}
    assert loaded(TEXTS, **kwargs)["input_ids"] == built(TEXTS, **kwargs)["input_ids"]
    assert loaded(TEXTS)["input_ids"] == built(TEXTS)["input_ids"]
    assert loaded.decode(loaded(TEXTS[0])["input_ids"], skip_special_tokens=True) == T.normalise_text(TEXTS[0])


def test_portable_tokenizer_class_keeps_named_classes(tmp_path):
    assert T.portable_tokenizer_class("TokenizersBackend") == "PreTrainedTokenizerFast"
    assert T.portable_tokenizer_class("T5Tokenizer") == "T5Tokenizer"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CLIPTokenizer"}))
    T.make_tokenizer_portable(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text()) == {"tokenizer_class": "CLIPTokenizer"}


def test_a_pipeline_with_the_tokenizer_records_the_portable_class(tmp_path):
    """`make_pipeline_tokenizer_portable` on a saved diffusers pipeline: model_index.json and the
    tokenizer folder name `PreTrainedTokenizerFast`, and the pipeline loads with the same ids."""
    from diffusers import DiffusionPipeline

    class TokenizerPipeline(DiffusionPipeline):
        def __init__(self, tokenizer):
            super().__init__()
            self.register_modules(tokenizer=tokenizer)

    TokenizerPipeline(T.build_tokenizer()).save_pretrained(tmp_path)
    T.make_pipeline_tokenizer_portable(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["tokenizer"] == [
        "transformers", "PreTrainedTokenizerFast"]
    config = json.loads((tmp_path / "tokenizer" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    loaded = TokenizerPipeline.from_pretrained(tmp_path).tokenizer
    assert loaded(TEXTS)["input_ids"] == T.build_tokenizer()(TEXTS)["input_ids"]

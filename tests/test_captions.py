"""Long captions by a VLM (`lumos caption`): keys, counts, skips, resume, and the DAG's plan.

The VLM is a tiny randomly initialised InternVL (transformers' native class, the family of the
paper preset's suggestion) built here from a config, with a byte-level tokenizer made on the spot:
nothing is downloaded. Its captions are gibberish; the tests check the plumbing, not the text.
"""

import json

import numpy as np
import pytest
from PIL import Image

from lumos.data.captions import (CaptionerSettings, assign_planned_long_captions, caption_source, planned_long_captions,
                                 resume_progress, work_folder)
from lumos.data.sources import Item, Source, read_source

SETTINGS = dict(prompt="Describe this image in detail.", max_new_tokens=6, batch_size=2)


def build_tiny_vlm(folder):
    """Save a tiny random InternVL (vision 28 px -> one image token, a 1-layer Qwen2) and its
    processor (byte-level BPE tokenizer with InternVL's image tokens, a chat template) to `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration,
                              InternVLProcessor, PreTrainedTokenizerFast)
    from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
    vocab = {c: i for i, c in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    vocab.update({s: len(vocab) + i for i, s in enumerate(specials)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={"start_image_token": "<img>", "end_image_token": "</img>",
                              "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<IMG_CONTEXT>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
                "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    processor = InternVLProcessor(image_processor=GotOcr2ImageProcessor(size={"height": 28, "width": 28},
                                                                        crop_to_patches=False),
                                  tokenizer=tokenizer, video_processor=InternVLVideoProcessor(), image_seq_length=1,
                                  chat_template=template)
    config = InternVLConfig(
        vision_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                           image_size=28, patch_size=14),
        text_config=dict(model_type="qwen2", hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=32, vocab_size=len(tokenizer),
                         max_position_embeddings=256, initializer_range=1.0,  # large weights: varied bytes
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        image_token_id=tokenizer.context_image_token_id, image_seq_length=1, downsample_ratio=0.5)
    torch.manual_seed(0)
    InternVLForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp("vlm"))


def _coco(root, n=7, broken=(2,), missing=(5,)):
    """A COCO-format source of n images: `broken` ones are not images, `missing` ones absent."""
    images = root / "val2014"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    entries, annotations = [], []
    for i in range(n):
        name = f"COCO_val2014_{i:012d}.jpg"
        if i in broken:
            (images / name).write_bytes(b"not a jpeg")
        elif i not in missing:
            size = (20 + 3 * i, 30)
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(images / name)
        entries.append({"id": i, "file_name": name})
        annotations.append({"image_id": i, "caption": f"raw caption {i}"})
    (root / "captions.json").write_text(json.dumps({"images": entries, "annotations": annotations}))
    return Source(name="coco", path=str(images), format="coco", annotations=str(root / "captions.json"))


def test_captions_of_a_coco_source_are_the_json_it_reads(tmp_path, tiny_vlm):
    """Every readable image gets a caption under its file name; the broken and the missing one are
    counted by reason; curation's reader then finds each written caption as the long caption."""
    source = _coco(tmp_path / "coco")
    out = tmp_path / "captions" / "coco.json"
    summary = caption_source(source, CaptionerSettings(model=tiny_vlm, **SETTINGS), str(out), str(tmp_path / "work"))
    captions = json.loads(out.read_text())
    assert sorted(captions) == [f"COCO_val2014_{i:012d}.jpg" for i in (0, 1, 3, 4, 6)]
    assert all(isinstance(c, str) and c for c in captions.values())
    assert summary["skipped"] == {"missing": 1, "not_an_image": 1} and summary["captioned"] == 5
    assert json.loads((tmp_path / "captions" / "coco.summary.json").read_text())["captioned"] == 5
    curated = Source(**{**vars(source), "long_captions": str(out)})
    read = [i for i in read_source(curated, 0, 1, 100) if isinstance(i, Item)]
    assert {i.key.split("/", 1)[1]: i.long_caption for i in read if i.long_caption} == captions


class Scripted:
    """A stand-in captioner: 'grey <level>' for each image (its top-left red value), '' for the
    n-th image it sees when n is in `empty`, and a crash once `crash_after` images were captioned."""

    def __init__(self, empty=(), crash_after=None):
        self.seen, self.empty, self.crash_after = 0, set(empty), crash_after

    def __call__(self, images):
        if self.crash_after is not None and self.seen + len(images) > self.crash_after:
            raise RuntimeError("killed")
        out = ["" if self.seen + k in self.empty else f"grey {image.getpixel((0, 0))[0]}"
               for k, image in enumerate(images)]
        self.seen += len(images)
        return out


def _folder(root, n=9):
    root.mkdir()
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(root / f"{i:02d}.png")
    (root / "03.png").write_bytes(b"")  # an empty file
    return Source(name="images", path=str(root))


def test_a_killed_job_resumes_where_its_progress_file_ends(tmp_path):
    """A crash after two batches, plus a torn last line, then a rerun: the JSON equals an
    uninterrupted run's, and the rerun captions only the images left."""
    source, settings = _folder(tmp_path / "images"), CaptionerSettings(model="unused", **SETTINGS)
    whole = caption_source(source, settings, str(tmp_path / "whole.json"), str(tmp_path / "w1"), captioner=Scripted())
    with pytest.raises(RuntimeError, match="killed"):
        caption_source(source, settings, str(tmp_path / "out.json"), str(tmp_path / "w2"),
                       captioner=Scripted(crash_after=4))
    progress = work_folder(tmp_path / "w2", source, settings, 0) / "progress.jsonl"
    recorded = resume_progress(progress)
    assert recorded == 5  # two batches of two images, and the empty file between them
    with open(progress, "a") as f:
        f.write('{"key": "07.png", "capt')  # torn by the kill
    second = Scripted()
    again = caption_source(source, settings, str(tmp_path / "out.json"), str(tmp_path / "w2"), captioner=second)
    assert again["resumed_after"] == 5 and second.seen == 4
    assert again["captioned"] == whole["captioned"] == 8 and again["skipped"] == whole["skipped"] == {"empty": 1}
    resumed, uninterrupted = (json.loads((tmp_path / name).read_text()) for name in ("out.json", "whole.json"))
    assert resumed == uninterrupted and resumed["08.png"] == "grey 80"


def test_empty_captions_are_skipped_and_counted(tmp_path, caplog):
    source, settings = _folder(tmp_path / "images", n=5), CaptionerSettings(model="unused", **SETTINGS)
    with caplog.at_level("WARNING", logger="lumos"):
        summary = caption_source(source, settings, str(tmp_path / "out.json"), str(tmp_path / "w"),
                                 captioner=Scripted(empty={0, 2}))
    assert summary["captioned"] == 2 and summary["skipped"] == {"empty": 1, "empty_caption": 2}
    # every skip is named: the unreadable image and each empty caption
    assert "skipped (empty)" in caplog.text and caplog.text.count("skipped (empty_caption)") == 2
    assert sorted(json.loads((tmp_path / "out.json").read_text())) == ["01.png", "04.png"]


def test_the_caption_command_on_a_folder(tmp_path, tiny_vlm):
    """`lumos caption --images`: the tiny VLM loaded from its folder, keys are paths under it."""
    from lumos.cli import main

    _folder(tmp_path / "images", n=4)
    cfg = json.dumps({"data.captioner": {"model": tiny_vlm, "max_new_tokens": 4, "batch_size": 3}})
    main(["caption", "--cfg", cfg, "--images", str(tmp_path / "images"), "--out", str(tmp_path / "c.json"),
          "--work", str(tmp_path / "work"), "--threads", "1"])
    assert sorted(json.loads((tmp_path / "c.json").read_text())) == ["00.png", "01.png", "02.png"]
    assert json.loads((tmp_path / "c.summary.json").read_text())["skipped"] == {"empty": 1}


def test_without_a_captioner_the_command_names_the_key(tmp_path):
    from lumos.cli import main

    with pytest.raises(SystemExit):
        main(["caption", "--images", str(tmp_path), "--out", str(tmp_path / "c.json")])


def test_the_dag_captions_coco_sources_without_long_captions():
    data = {"captioner": {"model": "m"},
            "sources": {"coco": [{"name": "coco", "format": "coco", "path": "/c"}],
                        "pairs": [{"name": "sam", "path": "/s"}],
                        "coco_ref": [{"name": "given", "format": "coco", "path": "/c", "long_captions": "/l.json"}]}}
    assert planned_long_captions(data) == {("coco", 0): "results/captions/coco/coco.json"}
    assert planned_long_captions({**data, "captioner": None}) == {}
    assign_planned_long_captions(data)
    assert data["sources"]["coco"][0]["long_captions"] == "results/captions/coco/coco.json"
    assert data["sources"]["coco_ref"][0]["long_captions"] == "/l.json"

"""Text encoders for text-to-image fine-tuning, and a CLIP scorer.

Tiny/smoke: a word-level tokenizer over the Shapes-world vocabulary (`build_tokenizer`), a small
`transformers.T5EncoderModel` with fixed-seed random weights (`train_t5`; a random T5 still gives
distinct, deterministic tokens per word and position) and a small `transformers.CLIPModel`
trained image-text contrastively in the DAG (`train_clip`). Paper: `google/flan-t5-xxl` and
`openai/clip-vit-large-patch14`. Every load goes through `loading.from_pretrained`, so a missing
folder or hub id names the config key `components.<name>.pretrained`.

Image preprocessing (training and `ClipScorer` alike) is `VisionEncoder.preprocess`: uint8 ->
[0, 1], bicubic resize of the shorter side to `input_size`, centre crop, `(x - mean) / std`.
The tiny default mean = std = 0.5 maps pixels to [-1, 1]; for the paper CLIP set `input_size: 224`
and `mean: CLIP_MEAN, std: CLIP_STD` in the spec (what CLIPImageProcessor does).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lumos.components.encoders import VisionEncoder, image_processor
from lumos.components.loading import from_pretrained
from lumos.data.worlds import shapes as S
from lumos.utils import log, optimiser_step, progress

T5_MAX_LENGTH = 120  # the paper's T5 token budget (the schema default of components.t5.max_length)

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2

# Words of the caption and prompt templates (shapes.py, geneval.py) beyond the world's constants.
_TEMPLATE_WORDS = """a an the of on at in is to and with picture photo image empty object objects
background small medium large top middle bottom left center right above below there are""".split()


def _plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def vocabulary(extra_texts=()) -> list[str]:
    """The fixed word list: specials, template words, Shapes-world constants, plurals, number
    words and numerals 0-99, punctuation, then any new words of `extra_texts` (lower-cased)."""
    from tokenizers.pre_tokenizers import Whitespace

    words = [*SPECIALS, *_TEMPLATE_WORDS, *S.SHAPES, *map(_plural, S.SHAPES), *S.COLOURS, *S.TEXTURES,
             *S.BACKGROUNDS, *S.NUMBER_WORDS, *(str(i) for i in range(100)), ".", ",", "'", ":", ";", "-"]
    for text in extra_texts:
        words += [w for w, _ in Whitespace().pre_tokenize_str(text.lower())]
    return list(dict.fromkeys(words))


def build_tokenizer(extra_texts=()):
    """A word-level `PreTrainedTokenizerFast` over `vocabulary(extra_texts)`: NFKC + lowercase
    normaliser, whitespace/punctuation pre-tokenizer, `</s>` appended to every sequence, `<pad>`
    id 0, unknown words -> `<unk>`. Decoding rejoins ``.`` and ``,`` to the previous word, so
    `decode(encode(t), skip_special_tokens=True) == normalise_text(t)` for in-vocabulary text."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary(extra_texts))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # only for its " ." -> "." cleanup
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


# The tokenizer class saved folders record: transformers 5 names a `PreTrainedTokenizerFast` object
# `TokenizersBackend` (its new name; `PreTrainedTokenizerFast` stays an alias), which 4.x cannot
# resolve; `PreTrainedTokenizerFast` loads the same tokenizer.json in 4.50+ and 5.x alike.
PORTABLE_TOKENIZER_CLASS = "PreTrainedTokenizerFast"
_V5_ONLY_TOKENIZER_CLASSES = ("TokenizersBackend",)


def portable_tokenizer_class(name: str) -> str:
    """`name`, or `PORTABLE_TOKENIZER_CLASS` for a class only transformers 5 knows (for the
    tokenizer entry of a diffusers `model_index.json`)."""
    return PORTABLE_TOKENIZER_CLASS if name in _V5_ONLY_TOKENIZER_CLASSES else name


def make_tokenizer_portable(folder) -> None:
    """Rewrite `tokenizer_class` in `folder`/tokenizer_config.json with `portable_tokenizer_class`."""
    path = Path(folder) / "tokenizer_config.json"
    config = json.loads(path.read_text())
    name = config.get("tokenizer_class")
    if name is not None and portable_tokenizer_class(name) != name:
        config["tokenizer_class"] = portable_tokenizer_class(name)
        path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def make_pipeline_tokenizer_portable(folder, component: str = "tokenizer") -> None:
    """The same for a saved diffusers pipeline: its `component` entry in model_index.json (diffusers
    records the object's class, `TokenizersBackend` under transformers 5) and that subfolder."""
    path = Path(folder) / "model_index.json"
    index = json.loads(path.read_text())
    if component not in index:
        return
    library, name = index[component]
    if portable_tokenizer_class(name) != name:
        index[component] = [library, portable_tokenizer_class(name)]
        path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    make_tokenizer_portable(Path(folder) / component)


def save_tokenizer(tokenizer, folder) -> None:
    """`tokenizer.save_pretrained(folder)`, loadable by every transformers the package allows."""
    tokenizer.save_pretrained(folder)
    make_tokenizer_portable(folder)


def normalise_text(text: str) -> str:
    """What the tokenizer round trip returns: lower case, single spaces, no space before . or ,."""
    text = " ".join(text.lower().split())
    return text.replace(" .", ".").replace(" ,", ",")


def train_t5(cfg: dict, out_dir: str, seed: int = 0) -> dict:
    """A small T5 encoder (cfg: d_model, num_layers, num_heads, d_kv, d_ff, optional
    feed_forward_proj), randomly initialised with `seed`, saved with its tokenizer."""
    from transformers import T5Config, T5EncoderModel

    tokenizer = build_tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer), d_model=cfg["d_model"], num_layers=cfg["num_layers"], num_heads=cfg["num_heads"],
        d_kv=cfg["d_kv"], d_ff=cfg["d_ff"], feed_forward_proj=cfg.get("feed_forward_proj", "gated-gelu"),
        dropout_rate=0.0, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = T5EncoderModel(config)
    model.save_pretrained(out_dir)
    save_tokenizer(tokenizer, out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("t5: random encoder with %d parameters saved to %s", n_params, out_dir)
    return {"kind": "t5", "vocab_size": len(tokenizer), "params": n_params, "seed": seed, "trained": False}


def build_tiny_clip(vocab_size: int, image_size: int, cfg: dict, eos_id: int = 1, pad_id: int = 0):
    """A small CLIPModel: text and vision towers share hidden_size/layers/heads from `cfg`."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    h = cfg["hidden_size"]
    common = dict(hidden_size=h, intermediate_size=4 * h, num_hidden_layers=cfg["layers"],
                  num_attention_heads=cfg["heads"], projection_dim=cfg["projection_dim"])
    text = CLIPTextConfig(vocab_size=vocab_size, max_position_embeddings=cfg.get("max_positions", cfg["max_length"]),
                          pad_token_id=pad_id, bos_token_id=eos_id, eos_token_id=eos_id, **common)
    vision = CLIPVisionConfig(image_size=image_size, patch_size=cfg["patch_size"], **common)
    return CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                projection_dim=cfg["projection_dim"]))


def _embed_images(model, x: torch.Tensor) -> torch.Tensor:
    return F.normalize(model.visual_projection(model.vision_model(pixel_values=x).pooler_output), dim=-1)


def _embed_texts(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = model.text_model(input_ids=ids, attention_mask=mask).pooler_output  # the </s> token
    return F.normalize(model.text_projection(out), dim=-1)


def _retrieval_accuracy(t2i: torch.Tensor, texts: list[str]) -> float:
    """Text -> image top-1 accuracy of a (B, B) similarity matrix; retrieving an image whose
    own text is identical counts as a hit (batches may repeat a caption)."""
    best = t2i.argmax(dim=1).tolist()
    return float(np.mean([texts[j] == texts[i] for i, j in enumerate(best)]))


def train_clip(images: np.ndarray, captions: list[str], cfg: dict, out_dir: str, seed: int = 0) -> dict:
    """Train a tiny CLIP on (image, caption) pairs: symmetric InfoNCE with the learned logit
    scale (capped at 100), AdamW with linear warmup, `cfg['steps']` steps of `cfg['batch_size']`
    random pairs. Saves model + tokenizer; returns final loss and last-batch retrieval accuracy."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    model = build_tiny_clip(len(tokenizer), cfg.get("input_size", images.shape[1]), cfg,
                            tokenizer.eos_token_id, tokenizer.pad_token_id).train()
    mean, std = cfg.get("mean", [0.5] * 3), cfg.get("std", [0.5] * 3)
    pre = VisionEncoder(torch.nn.Identity(), "clip", model.config.vision_config.image_size, mean, std)
    enc = tokenizer(list(captions), padding="max_length", truncation=True, max_length=cfg["max_length"],
                    return_tensors="pt")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 0.1))
    warmup = max(1, cfg.get("warmup", cfg["steps"] // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    gen = torch.Generator().manual_seed(seed)
    start, first = time.time(), None
    for step in progress(range(cfg["steps"]), desc="clip"):
        idx = torch.randint(0, len(images), (cfg["batch_size"],), generator=gen)
        img = _embed_images(model, pre.preprocess(images[idx.numpy()]))
        txt = _embed_texts(model, enc["input_ids"][idx], enc["attention_mask"][idx])
        logits = model.logit_scale.exp().clamp(max=100.0) * txt @ img.t()  # (text, image)
        target = torch.arange(len(idx))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        optimiser_step(opt, loss, step, "CLIP", params, max_norm=3.0)
        sched.step()
        first = float(loss.item()) if first is None else first
    acc = _retrieval_accuracy(logits.detach(), [captions[i] for i in idx.tolist()])
    model.save_pretrained(out_dir)
    save_tokenizer(tokenizer, out_dir)
    image_processor(pre.input_size, mean, std, clip=True).save_pretrained(out_dir)  # as `pre` does
    log.info("clip: loss %.4f -> %.4f, last-batch text->image accuracy %.3f", first, loss.item(), acc)
    return {"kind": "clip", "first_loss": first, "final_loss": float(loss.item()), "retrieval_acc": acc,
            "logit_scale": float(model.logit_scale.detach().exp()), "steps": cfg["steps"],
            "seconds": time.time() - start}


class TextEncoder:
    """Wraps a T5 encoder or a CLIP text tower: texts in, (tokens (B, L, D), mask (B, L) bool) out."""

    def __init__(self, model, tokenizer, kind: str, max_length: int, device="cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.kind = kind
        self.device = device
        if kind == "clip":
            max_length = min(max_length, model.config.max_position_embeddings)
        self.max_length = max_length
        self.dim = model.config.d_model if kind == "t5" else model.config.hidden_size

    def tokenize(self, texts: list[str]) -> dict:
        """Token ids and attention mask, padded/truncated to `max_length`, on the device."""
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(self.device), "attention_mask": enc["attention_mask"].to(self.device)}

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenize(texts)
        out = self.model(**enc).last_hidden_state
        return out.float(), enc["attention_mask"].bool()


# Checkpoint keys the text encoder does not use: a Flan-T5's decoder and LM head, a full CLIP's
# image side (and its text projection: the encoder gives the hidden states).
EXPECTED_UNEXPECTED = {
    "t5": ("decoder.", "lm_head."),
    "clip": ("vision_model.", "visual_projection.", "text_projection.", "logit_scale"),
}


def load_text_encoder(spec: dict, name: str, device="cpu") -> TextEncoder:
    """Load the text encoder of config block `components.<name>` (keys: pretrained, kind 't5' or
    'clip', max_length). A full CLIP folder/hub id gives its text tower."""
    from transformers import AutoTokenizer, CLIPTextModel, T5EncoderModel

    from lumos.config import schema_defaults

    spec = {**schema_defaults("components.t5"), **spec}  # every text encoder block has this schema
    kind, key = spec["kind"], f"components.{name}.pretrained"
    cls = {"t5": T5EncoderModel, "clip": CLIPTextModel}.get(kind)
    if cls is None:
        raise ValueError(f"components.{name}.kind must be 't5' or 'clip', got {kind!r}")
    model = from_pretrained(cls, spec["pretrained"], f"{name} text encoder", key,
                            expected_unexpected=EXPECTED_UNEXPECTED[kind])
    tokenizer = from_pretrained(AutoTokenizer, spec["pretrained"], f"{name} tokenizer", key)
    return TextEncoder(model, tokenizer, kind, spec["max_length"], device)


class ClipScorer:
    """Joint image/text embeddings of a CLIPModel and the CLIP score of (image, text) pairs."""

    def __init__(self, model, tokenizer, input_size: int, mean, std, max_length: int = 77, device="cpu",
                 batch_size: int = 256):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.pre = VisionEncoder(torch.nn.Identity(), "clip", input_size, mean, std, device)
        self.max_length = min(max_length, model.config.text_config.max_position_embeddings)
        self.device = device
        self.batch_size = batch_size

    @torch.no_grad()
    def image_embeds(self, images) -> torch.Tensor:
        """Unit-norm image embeddings (B, P) of uint8 (B, H, W, 3) images."""
        images = np.asarray(images)
        chunks = [_embed_images(self.model, self.pre.preprocess(images[i : i + self.batch_size]))
                  for i in range(0, len(images), self.batch_size)]
        return torch.cat(chunks)

    @torch.no_grad()
    def text_embeds(self, texts: list[str]) -> torch.Tensor:
        """Unit-norm text embeddings (B, P)."""
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(list(texts[i : i + self.batch_size]), padding="max_length", truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            out.append(_embed_texts(self.model, enc["input_ids"], enc["attention_mask"]))
        return torch.cat(out)

    def clip_score(self, images, texts: list[str]) -> np.ndarray:
        """Per pair: 100 * max(cos(image, text), 0), as float64 (n,)."""
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        cos = (self.image_embeds(images) * self.text_embeds(texts)).sum(-1)
        return (100.0 * cos.clamp(min=0)).double().cpu().numpy()

    def retrieval_accuracy(self, images, texts: list[str]) -> float:
        """Text -> image top-1 accuracy within the set (identical texts count as hits)."""
        return _retrieval_accuracy(self.text_embeds(texts) @ self.image_embeds(images).t(), list(texts))


def load_clip_scorer(spec: dict, device="cpu", name: str = "clip") -> ClipScorer:
    """Load `components.<name>` (keys: pretrained, input_size, mean, std, max_length) as a
    ClipScorer. input_size defaults to the model's image size, mean/std to 0.5 ([-1, 1])."""
    from transformers import AutoTokenizer, CLIPModel

    key = f"components.{name}.pretrained"
    model = from_pretrained(CLIPModel, spec["pretrained"], f"{name} CLIP model", key)
    tokenizer = from_pretrained(AutoTokenizer, spec["pretrained"], f"{name} tokenizer", key)
    size = spec.get("input_size", model.config.vision_config.image_size)
    return ClipScorer(model, tokenizer, size, spec.get("mean", [0.5] * 3), spec.get("std", [0.5] * 3),
                      spec.get("max_length", 77), device)

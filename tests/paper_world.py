"""A small, offline stand-in for what the paper preset reads: its components and its data.

`build_world(root)` writes, deterministically (fixed seeds, no network):

* **components** with the classes and configs of the hub checkpoints config/paper.yaml names, random
  weights, in the layout lumos' loaders read (lumos/components/*.py):

  - `sd-vae-ft-mse/`: diffusers `AutoencoderKL` with stabilityai/sd-vae-ft-mse's config
    (block_out_channels 128-256-512-512, 2 layers per block, 4 latent channels; 84M parameters).
  - `dino-vitb16/`: transformers `ViTModel` with facebook/dino-vitb16's config, its pooler included
    as the hub checkpoint has it (lumos loads it with add_pooling_layer=False; 86M parameters).
  - `moco_v3/vit-b-300ep.pth.tar`: the MoCo v3 authors' file, `torch.save` of {'epoch', 'arch',
    'state_dict': {'module.base_encoder.*', 'module.momentum_encoder.*', 'module.predictor.*'}},
    the base encoder a timm vit_base_patch16_224 whose `head` is MoCo v3's 3-layer projector. The
    real file's optimizer and scaler states are left out: lumos never reads them.
  - `flan-t5-xxl/`: google/flan-t5-xxl's folder layout (`T5ForConditionalGeneration`, its widths:
    d_model 4096, d_ff 10240, 64 heads, d_kv 64, gated-gelu, vocab 32128, untied LM head) with **2 of
    its 24 encoder layers and 2 of its 24 decoder layers**. The full model is 11B parameters (45 GB
    in fp32), over this 24 GB machine's memory, and each encoder layer costs ~0.75 s of one core per
    120-token caption; 2 + 2 layers are 1.2B parameters (4.6 GB on disk), its encoder (what lumos
    loads, T5EncoderModel) 0.5B. Its tokenizer is a Unigram model trained with the `tokenizers`
    library on the world's captions, saved as transformers' T5 tokenizer with the 100 `<extra_id_*>`
    sentinels (AutoTokenizer loads it from the folder).
  - `clip-vit-large-patch14/`: openai/clip-vit-large-patch14 at full size (`CLIPModel`, 428M
    parameters) with a byte-level BPE tokenizer trained the same way. Table 2 needs it: the caption
    tokens of `pairs` and `coco` are cached for every text encoder of `t2i.figures` (Figure 11's
    CLIP too), whatever the target.
  - `inception/inception-2015-12-05.pt`: a TorchScript module with the interface of clean-fid's
    Inception (`module.layers(x)`: (B, 3, 299, 299) in [-1, 1] -> (B, 2048, 1, 1), non-negative;
    `module(x, return_features=True)` -> (B, 2048), resizing inside), a small random conv net. Where
    lumos is told to find it is `inception_config`.

  Tables 1-2 need no DINO ViT-S/16 or DINOv2-L (Figure S3 does), so neither is built; their config
  keys keep the hub ids, which no job of Tables 1-2 loads.

* **data**: real photographs (skimage.data's astronaut, chelsea, coffee, rocket, Hubble deep field,
  ...) cropped, mirrored and resized to web sizes (640x480 to 1500x1000), JPEG quality 90, in every
  layout config/paper.yaml's `data.sources` reads (lumos/data/sources.py): img2dataset webdataset
  output for LAION and COYO (`<key>.jpg` + `.txt` + `.json` with the aesthetic score under the
  source's key and, for the recaptioned pairs, `long_caption`; the `.parquet` and `_stats.json`
  img2dataset writes beside each tar), folders with `<image>.txt` / `<image>.long.txt` captions (SAM,
  JourneyDB, ImageNet pairs), ImageNet synset folders (train, val, a train subset), COCO val2014 with
  `captions_val2014.json` (five captions an image) and a long-captions JSON (Table 2's † row). Some
  images fail the paper's filters (shorter side 480 <= 512, aesthetic score at or under the minimum).

* **the override** (`override_config`) a user on a small machine writes on top of config/paper.yaml:
  device, sizes, steps, counts and paths only. What else the run needs is `WORKAROUNDS`, written to
  a second file: each entry a lumos defect, to delete once it is fixed.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np

SEED = 0

# ------------------------------------------------------------------------------------ components

# stabilityai/sd-vae-ft-mse config.json
SD_VAE_FT_MSE = dict(
    act_fn="silu",
    block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    norm_num_groups=32,
    sample_size=256,
    scaling_factor=0.18215,
)

# facebook/dino-vitb16 config.json (layer_norm_eps: DINO's own LayerNorm eps, 1e-6)
DINO_VITB16 = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    initializer_range=0.02,
    layer_norm_eps=1e-6,
    image_size=224,
    patch_size=16,
    num_channels=3,
    qkv_bias=True,
)

# google/flan-t5-xxl config.json, but T5_LAYERS of its 24 encoder and 24 decoder layers
T5_LAYERS = 2
FLAN_T5_XXL = dict(
    vocab_size=32128,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_heads=64,
    num_layers=24,
    num_decoder_layers=24,
    feed_forward_proj="gated-gelu",
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    dropout_rate=0.1,
    layer_norm_epsilon=1e-6,
    initializer_factor=1.0,
    tie_word_embeddings=False,
    is_encoder_decoder=True,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
)

INCEPTION_FILE = "inception-2015-12-05.pt"  # clean-fid's name for it


def build_sd_vae(out: Path) -> Path:
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(SEED)
    AutoencoderKL(**SD_VAE_FT_MSE).save_pretrained(out)
    return out


def build_dino_vitb16(out: Path) -> Path:
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(SEED + 1)
    config = ViTConfig(**DINO_VITB16, architectures=["ViTModel"])
    ViTModel(config, add_pooling_layer=True).save_pretrained(out)
    return out


def _mlp_state(prefix: str, dims: list[int], last_bn: bool, gen) -> dict:
    """State of MoCo v3's `_build_mlp` (moco-v3/moco/builder.py): per layer a Linear without bias,
    then BatchNorm1d + ReLU between layers, and after the last a BatchNorm1d without affine
    parameters when `last_bn` (the projector; the predictor has none)."""
    import torch

    state, k = {}, 0
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        state[f"{prefix}.{k}.weight"] = torch.randn(b, a, generator=gen) * a**-0.5
        if not last or last_bn:
            bn = f"{prefix}.{k + 1}"
            if not last:
                state[f"{bn}.weight"], state[f"{bn}.bias"] = torch.ones(b), torch.zeros(b)
            state[f"{bn}.running_mean"], state[f"{bn}.running_var"] = torch.zeros(b), torch.ones(b)
            state[f"{bn}.num_batches_tracked"] = torch.tensor(0)
        k += 3  # Linear, BatchNorm1d, ReLU
    return state


def build_moco_v3(out_file: Path) -> Path:
    """`vit-b-300ep.pth.tar` as the MoCo v3 authors saved it from DistributedDataParallel(MoCo_ViT):
    base encoder (timm ViT-B/16, its `head` the 3-layer projector), momentum encoder, predictor."""
    import timm
    import torch

    torch.manual_seed(SEED + 3)
    gen = torch.Generator().manual_seed(SEED + 3)
    base = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).state_dict()
    encoder = {**base, **_mlp_state("head", [768, 4096, 4096, 256], True, gen)}
    state = {f"module.base_encoder.{k}": v for k, v in encoder.items()}
    state.update({f"module.momentum_encoder.{k}": v.clone() for k, v in encoder.items()})
    state.update(_mlp_state("module.predictor", [256, 4096, 256], False, gen))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 300, "arch": "vit_base", "state_dict": state}, out_file)
    return out_file


def build_t5_tokenizer(texts: list[str]):
    """A T5 tokenizer (Unigram, `▁` word boundaries, `</s>` appended, 100 sentinels) whose pieces
    are trained on `texts` with the `tokenizers` library; pad 0, eos 1, unk 2 as T5's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5TokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
                                      shrinking_factor=0.75, max_piece_length=12)
    tok.train_from_iterator(texts, trainer)
    vocab = json.loads(tok.to_str())["model"]["vocab"]  # [[piece, log prob], ...], specials first
    return T5TokenizerFast(vocab=[(p, float(s)) for p, s in vocab], extra_ids=100, model_max_length=512)


def _fill_t5(model, seed: int) -> None:
    """T5's initialisation (T5PreTrainedModel._init_weights, factor 1), drawn in one pass: model
    built on the meta device, so no weight is drawn twice (transformers' own init of the 1.2B
    parameters takes ~25 s here, this ~8 s)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    c = model.config
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.fill_(1.0)
            elif name.endswith(("shared.weight", "lm_head.weight")):
                p.normal_(0.0, 1.0, generator=gen)
            elif name.endswith(".q.weight"):
                p.normal_(0.0, (c.d_model * c.d_kv) ** -0.5, generator=gen)
            elif name.endswith((".o.weight", ".wo.weight")):
                p.normal_(0.0, p.shape[1] ** -0.5, generator=gen)
            else:  # k, v, wi_0, wi_1, relative_attention_bias
                p.normal_(0.0, c.d_model ** -0.5, generator=gen)


def build_flan_t5_xxl(out: Path, texts: list[str]) -> Path:
    """The hub folder's files: config.json as google/flan-t5-xxl's (tie_word_embeddings false: its
    LM head is a weight of its own), model.safetensors with `shared`, the encoder, the decoder and
    `lm_head` (transformers 5 always ties T5's LM head when it saves, so the file is written here),
    generation_config.json and the tokenizer."""
    import torch
    from safetensors.torch import save_file
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(**{**FLAN_T5_XXL, "num_layers": T5_LAYERS, "num_decoder_layers": T5_LAYERS},
                      architectures=["T5ForConditionalGeneration"])
    with torch.device("meta"):
        model = T5ForConditionalGeneration(config)
    model = model.to_empty(device="cpu")
    model.tie_weights()  # the token embedding shared by encoder and decoder (to_empty unties it)
    _fill_t5(model, SEED + 4)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("embed_tokens.weight")}
    gen = torch.Generator().manual_seed(SEED + 5)
    state["lm_head.weight"] = torch.empty_like(state["shared.weight"]).normal_(0.0, 1.0, generator=gen)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    hub = {k: v for k, v in config.to_dict().items() if k not in ("scale_decoder_outputs", "transformers_version")}
    (out / "config.json").write_text(json.dumps({**hub, "tie_word_embeddings": False}, indent=2, sort_keys=True))
    model.generation_config.save_pretrained(out)
    del model, state
    build_t5_tokenizer(texts).save_pretrained(out)
    return out


# openai/clip-vit-large-patch14 config.json (text and vision towers)
CLIP_VIT_L14_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                         layer_norm_eps=1e-5, projection_dim=768, bos_token_id=0, eos_token_id=2, pad_token_id=1)
CLIP_VIT_L14_VISION = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=224, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                           projection_dim=768)


def _fill(model, seed: int, std: float = 0.02) -> None:
    """Random weights for a model built on the meta device, in one pass: norms 1 / 0, biases 0,
    matrices and embeddings normal(0, std), scalars (CLIP's logit scale) log(1 / 0.07)."""
    import math

    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 0:
                p.fill_(math.log(1 / 0.07))
            elif "norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, std, generator=gen)
        for name, b in model.named_buffers():  # position_ids
            if "position_ids" in name:
                b.copy_(torch.arange(b.shape[-1]).expand_as(b))


def build_clip_tokenizer(texts: list[str]):
    """A CLIP tokenizer (byte-level BPE, `</w>` word ends, lower-cased) trained on `texts` with the
    `tokenizers` library; `<|startoftext|>` and `<|endoftext|>` take the last two ids, as in
    openai/clip-vit-large-patch14 (its text tower pools at the highest id, the end token)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizerFast

    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    trainer = trainers.BpeTrainer(vocab_size=600, end_of_word_suffix="</w>", show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = dict(model["vocab"])
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return CLIPTokenizerFast(vocab=vocab, merges=merges, model_max_length=77)


def build_clip_vit_l14(out: Path, texts: list[str]) -> Path:
    """openai/clip-vit-large-patch14 at full size (428M parameters), random weights, and a tokenizer."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(text_config=CLIP_VIT_L14_TEXT, vision_config=CLIP_VIT_L14_VISION, projection_dim=768,
                        architectures=["CLIPModel"])
    with torch.device("meta"):
        model = CLIPModel(config)
    model = model.to_empty(device="cpu")
    _fill(model, SEED + 6)
    model.save_pretrained(out)
    del model
    build_clip_tokenizer(texts).save_pretrained(out)
    return out


def _inception_module():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Layers(nn.Module):
        """(B, 3, 299, 299) in [-1, 1] -> (B, 2048, 1, 1), non-negative as Inception's pool3."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, 8, stride=8)
            self.conv2 = nn.Conv2d(32, 2048, 3, stride=2)
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            return self.pool(F.relu(self.conv2(F.relu(self.conv1(x)))))

    class InceptionStandIn(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = Layers()

        def forward(self, x, return_features: bool = False):
            # clean-fid's legacy_tensorflow mode: images in [0, 255] of any size, resized inside
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            features = self.layers((x - 128.0) / 128.0).flatten(1)
            return features if return_features else features[:, :1008]

    torch.manual_seed(SEED + 5)
    return torch.jit.script(InceptionStandIn().eval())


def build_inception(out_dir: Path) -> Path:
    """The stand-in TorchScript file, named as clean-fid names the real one."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / INCEPTION_FILE
    torch.jit.save(_inception_module(), str(path))
    return path


def inception_config(path: Path) -> dict:
    """The config that points lumos at the Inception file `path` (config key `eval.inception`): the one
    place to change if lumos looks for it elsewhere."""
    return {"eval": {"inception": str(path)}}


def build_components(root: Path, texts: list[str]) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    return {
        "vae": build_sd_vae(root / "sd-vae-ft-mse"),
        "dino": build_dino_vitb16(root / "dino-vitb16"),
        "moco": build_moco_v3(root / "moco_v3" / "vit-b-300ep.pth.tar"),
        "t5": build_flan_t5_xxl(root / "flan-t5-xxl", texts),
        "clip": build_clip_vit_l14(root / "clip-vit-large-patch14", texts),
        "inception": build_inception(root / "inception"),
    }


# ------------------------------------------------------------------------------------------ data

# skimage.data's colour photographs (and a few grey ones made RGB), with what they show.
PHOTOS = {
    "astronaut": ("an astronaut in a white space suit", "a portrait of astronaut Eileen Collins in a white NASA "
                  "space suit, smiling, with the American flag and a model of the space shuttle behind her"),
    "chelsea": ("a tabby cat", "a close-up photo of a ginger tabby cat with green eyes looking to the left, its "
                "whiskers lit by soft daylight against a blurred background"),
    "coffee": ("a cup of coffee", "a white cup of coffee with latte art on a saucer with a spoon, on a wooden "
               "table, seen from above at an angle"),
    "rocket": ("a rocket on the launch pad", "a tall white rocket standing on a launch pad beside its service "
               "tower under a clear blue sky, with a flat green field in front"),
    "hubble_deep_field": ("galaxies in deep space", "the Hubble deep field: hundreds of small galaxies of many "
                          "colours and shapes scattered over the black of space"),
    "immunohistochemistry": ("a stained tissue sample", "a microscope image of tissue stained brown and blue, "
                             "cell nuclei dotting a pale background"),
    "retina": ("a photo of a retina", "a fundus photograph of a human retina: an orange disc with dark red blood "
               "vessels branching from the bright optic nerve head"),
    "colorwheel": ("a colour wheel", "a circular colour wheel with the hues of the spectrum around its edge "
                   "fading to white at the centre"),
    "camera": ("a man with a camera", "a black and white photo of a man in a coat looking through a camera on a "
               "tripod, buildings far behind him"),
    "coins": ("old coins", "a grey photo of two dozen old coins laid out in rows on a dark background"),
    "moon": ("the surface of the moon", "a grey close-up of the cratered surface of the moon with long shadows"),
    "brick": ("a brick wall", "a grey brick wall, the rows of bricks and their mortar lines filling the frame"),
}
# ImageNet synsets the photos stand in for (class folders of train / val)
SYNSETS = {"chelsea": "n02123045", "coffee": "n07920052", "rocket": "n04266014", "astronaut": "n09835506"}
WEB_SIZES = [(640, 480), (800, 600), (1024, 768), (1280, 720), (1200, 800), (1500, 1000), (1000, 1000), (768, 1024)]


def base_photo(name: str):
    """A skimage.data photo as an RGB PIL image."""
    import skimage.data
    from PIL import Image

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return Image.fromarray(img[..., :3].astype(np.uint8))


def web_photo(name: str, seed: int, size=None):
    """Photo `name` as a web image: a seeded crop at the target aspect ratio, maybe mirrored, resized
    (Lanczos) to one of WEB_SIZES (or `size`)."""
    from PIL import Image

    rng = np.random.default_rng([SEED, seed])
    img = base_photo(name)
    w, h = size or WEB_SIZES[rng.integers(len(WEB_SIZES))]
    scale = min(img.width / w, img.height / h) * rng.uniform(0.7, 1.0)
    cw, ch = max(1, round(w * scale)), max(1, round(h * scale))
    left, top = rng.integers(0, img.width - cw + 1), rng.integers(0, img.height - ch + 1)
    img = img.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img.resize((w, h), Image.LANCZOS)


def jpeg(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _items(source: str, n: int, names=None, sizes=None) -> list[dict]:
    """`n` web photos of a source: photo names cycle through `names` (default: all), seeds differ
    by source and index; captions from PHOTOS with the index, so none repeats."""
    names = list(names or PHOTOS)
    out = []
    for i in range(n):
        name = names[i % len(names)]
        seed = abs(hash_str(f"{source}/{i}"))
        img = web_photo(name, seed, sizes[i % len(sizes)] if sizes else None)
        short, long = PHOTOS[name]
        out.append({"name": name, "image": img, "jpeg": jpeg(img), "caption": f"{short}, photo {i + 1}",
                    "long_caption": f"{long} (photo {i + 1} of {source})"})
    return out


def hash_str(text: str) -> int:
    """A stable hash (Python's own is salted per process)."""
    import zlib

    return zlib.crc32(text.encode())


def write_img2dataset(folder: Path, items: list[dict], aesthetic_key: str, scores: list[float],
                      shard_size: int = 6, long_caption_key: str | None = None) -> Path:
    """img2dataset --output_format webdataset: `<shard>.tar` of `<key>.jpg` + `.txt` + `.json`
    (metadata with the aesthetic score under `aesthetic_key`, kept by --save_additional_columns),
    `<shard>.parquet` and `<shard>_stats.json` beside each tar; keys `<shard:05d><i:04d>`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(-(-len(items) // shard_size)):
        rows = []
        with tarfile.open(folder / f"{shard:05d}.tar", "w") as tar:
            for j, item in enumerate(items[shard * shard_size:(shard + 1) * shard_size]):
                i = shard * shard_size + j
                key = f"{shard:05d}{j:04d}"
                w, h = item["image"].size
                meta = {"url": f"https://images.example.org/{folder.name}/{i}.jpg", "caption": item["caption"],
                        "key": key, "status": "success", "error_message": None, "width": w, "height": h,
                        "original_width": w, "original_height": h, "exif": "{}",
                        aesthetic_key: scores[i % len(scores)]}
                if long_caption_key:
                    meta[long_caption_key] = item["long_caption"]
                for ext, data in (("jpg", item["jpeg"]), ("txt", item["caption"].encode()),
                                  ("json", json.dumps(meta).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size, info.mtime = len(data), 0
                    tar.addfile(info, io.BytesIO(data))
                rows.append(meta)
        columns = ["key", "url", "caption", "status", "error_message", "width", "height", "original_width",
                   "original_height", aesthetic_key]
        pq.write_table(pa.Table.from_pylist([{c: r[c] for c in columns} for r in rows]),
                       folder / f"{shard:05d}.parquet")
        stats = {"count": len(rows), "successes": len(rows), "failed_to_download": 0, "failed_to_resize": 0,
                 "status_dict": {"success": len(rows)}}
        (folder / f"{shard:05d}_stats.json").write_text(json.dumps(stats))
    return folder


def write_folder(folder: Path, items: list[dict], name, captions: bool, sub=None) -> Path:
    """Images named `name(item, i)` (in sub-folder `sub(item)` when given), with `<stem>.txt` and
    `<stem>.long.txt` captions beside each when `captions`."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(items):
        d = folder / sub(item) if sub else folder
        d.mkdir(parents=True, exist_ok=True)
        path = d / name(item, i)
        path.write_bytes(item["jpeg"])
        if captions:
            path.with_suffix(".txt").write_text(item["caption"] + "\n")
            path.with_suffix(".long.txt").write_text(item["long_caption"] + "\n")
    return folder


def numbered(prefix: str, ext: str = "jpg"):
    return lambda item, i: f"{prefix}{i + 1:06d}.{ext}"


def write_imagenet(folder: Path, items: list[dict], val: bool, captions: bool = False) -> Path:
    """ImageNet in synset folders: train `n02123045/n02123045_<i>.JPEG`, val
    `n02123045/ILSVRC2012_val_<i>.JPEG` (the val images sorted into their classes)."""
    name = (lambda it, i: f"ILSVRC2012_val_{i + 1:08d}.JPEG") if val else \
        (lambda it, i: f"{SYNSETS[it['name']]}_{1000 + i}.JPEG")
    return write_folder(folder, items, name, captions, sub=lambda it: SYNSETS[it["name"]])


def write_coco(images: Path, annotations: Path, long_captions: Path | None, items: list[dict],
               first_id: int = 42) -> None:
    """COCO val2014: `COCO_val2014_<id:012d>.jpg` + annotations/captions_val2014.json (five captions
    an image); `long_captions`: {file name: long caption} (the paper's InternVL captions' role)."""
    images.mkdir(parents=True, exist_ok=True)
    ann = {"info": {"description": "COCO 2014 Dataset (stand-in)", "year": 2014}, "licenses": [],
           "images": [], "annotations": []}
    long = {}
    for i, item in enumerate(items):
        image_id = first_id + 7 * i
        name = f"COCO_val2014_{image_id:012d}.jpg"
        (images / name).write_bytes(item["jpeg"])
        w, h = item["image"].size
        ann["images"].append({"id": image_id, "file_name": name, "width": w, "height": h, "license": 1})
        short = PHOTOS[item["name"]][0]
        for k, text in enumerate([item["caption"], f"{short} in a picture", f"A photo of {short}.",
                                  f"There is {short} here", f"{short.capitalize()}, seen up close."]):
            ann["annotations"].append({"id": 10 * image_id + k, "image_id": image_id, "caption": text})
        long[name] = item["long_caption"]
    annotations.parent.mkdir(parents=True, exist_ok=True)
    annotations.write_text(json.dumps(ann))
    if long_captions:
        long_captions.write_text(json.dumps(long, indent=1))


# Per source: how many photos it holds (some fail the paper's filters: LAION/COYO images with a
# shorter side of 480 <= 512, or an aesthetic score at or below the source's minimum).
LAION_SCORES = [5.8, 6.1, 4.6, 5.4, 7.0, 5.95, 5.2, 6.4]       # > 5.0 pool, > 5.5 pairs
COYO_SCORES = [6.2, 5.1, 4.9, 5.7, 6.6, 5.3]


def build_data(root: Path) -> dict:
    """Write every source of the world under `root`; returns their paths by config role."""
    big = [s for s in WEB_SIZES if min(s) > 512]
    p = {}
    web = dict(shard_size=6)
    p["laion"] = write_img2dataset(root / "laion5b_img2dataset", _items("laion", 12, sizes=WEB_SIZES), "aesthetic",
                                   LAION_SCORES, **web)
    p["coyo"] = write_img2dataset(root / "coyo700m_img2dataset", _items("coyo", 8, sizes=big),
                                  "aesthetic_score_laion_v2", COYO_SCORES, **web)
    p["sam"] = write_folder(root / "sa1b_images", _items("sam", 4, sizes=big), numbered("sa_"), captions=False)
    p["journeydb"] = write_folder(root / "journeydb_images", _items("journeydb", 4), numbered("jdb_"), captions=False)
    inet = list(SYNSETS)
    p["imagenet_train"] = write_imagenet(root / "imagenet" / "train", _items("imagenet_train", 8, inet), val=False)
    p["imagenet_train_subset"] = write_imagenet(root / "imagenet" / "train_subset",
                                                _items("imagenet_train_subset", 8, inet), val=False)
    p["imagenet_val"] = write_imagenet(root / "imagenet" / "val", _items("imagenet_val", 8, inet), val=True)
    # pairs: the same kinds of sources, recaptioned (long captions in the json / <image>.long.txt)
    p["laion_pairs"] = write_img2dataset(root / "laion5b_img2dataset_recaptioned", _items("laion_pairs", 12),
                                         "aesthetic", LAION_SCORES, long_caption_key="long_caption", **web)
    p["coyo_pairs"] = write_img2dataset(root / "coyo700m_img2dataset_recaptioned", _items("coyo_pairs", 8, sizes=big),
                                        "aesthetic_score_laion_v2", COYO_SCORES, long_caption_key="long_caption",
                                        **web)
    p["sam_pairs"] = write_folder(root / "sa1b_captioned", _items("sam_pairs", 4), numbered("sa_"), captions=True)
    p["journeydb_pairs"] = write_folder(root / "journeydb_captioned", _items("journeydb_pairs", 4), numbered("jdb_"),
                                        captions=True)
    p["imagenet_pairs"] = write_imagenet(root / "imagenet_captioned", _items("imagenet_pairs", 4, inet), val=False,
                                         captions=True)
    coco = root / "coco"
    write_coco(coco / "val2014", coco / "annotations" / "captions_val2014.json", coco / "long_captions_val2014.json",
               _items("coco_val", 10))
    p["coco_val"], p["coco_annotations"] = coco / "val2014", coco / "annotations" / "captions_val2014.json"
    p["coco_long_captions"] = coco / "long_captions_val2014.json"
    p["coco_train_subset"] = write_folder(coco / "train2014_subset", _items("coco_train", 8),
                                          numbered("COCO_train2014_000000"), captions=False)
    return p


def caption_texts() -> list[str]:
    """The tokenizers' training text: the world's captions (`_items`, `write_coco`) and the digits."""
    texts = []
    for short, long in PHOTOS.values():
        texts += [short, long, f"{short} in a picture", f"A photo of {short}.", f"There is {short} here",
                  f"{short.capitalize()}, seen up close.", *(f"{short}, photo {i}" for i in range(1, 13))]
    return texts + ["0 1 2 3 4 5 6 7 8 9 10 11 12 (photo 1 of coco_val)"]


# ---------------------------------------------------------------------------------------- config

# What the override sets besides paths: sizes, steps, counts (a small machine's choices).
IMAGE_SIZE = 64          # 8x8 SD-VAE latents; encoders still see 224 px (they resize), Inception 299
SPLITS = {"pool": 8, "pairs": 8, "coco": 8, "imagenet": 8, "coco_ref": 8, "imagenet_ref": 8, "imagenet1k": 8}
POOL_QUOTAS = {"laion": 3, "coyo": 2, "sam": 1, "journeydb": 1, "imagenet": 1}    # paper: 120M, 55M, 10M, 4M, 1M
PAIRS_QUOTAS = {"laion": 3, "coyo": 2, "sam": 1, "journeydb": 1, "imagenet": 1}   # paper: 10M, 5M, 10M, 4M, 1M
DIT_DEPTH = 2            # DiT-XL/2's width, heads and patch, 2 of its 28 blocks (see override_config)

# Overrides beyond device / sizes / steps / counts / paths that the run needs today: each is a lumos
# defect; delete its entry once lumos is fixed. (The known ones this run no longer needs, with the
# working tree of this commit: `resources.rules.{pretrain,finetune}.nodes: 1` (srun without SLURM)
# and `compile: false` (now skipped on the CPU).)
WORKAROUNDS: dict = {
    # The paper's `mixed_precision: bf16` is used on the CPU too: on a CPU without native bf16 (this
    # one: AVX2, no AVX512-BF16) autocast makes a DiT-XL/2 (2-block) training step 13x slower
    # (8.1 s vs 0.63 s at batch 4, 1 thread). lumos could fall back to fp32 on the CPU, as it does for
    # `compile`. Without this the run still succeeds, ~1 min slower (pretrain x2, finetune).
    "pretrain": {"train": {"mixed_precision": "no"}},
    "t2i": {"train": {"mixed_precision": "no"}},
}


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _sources(paper: dict, split: str, paths: dict, quotas: dict | None = None, **extra) -> list[dict]:
    """config/paper.yaml's `data.sources.<split>` with each /path/to/... replaced by the world's path
    (by source name, or `paths[<split>:<name>]`), quotas by `quotas`; filters kept as they are."""
    out = []
    for block in paper["data"]["sources"][split]:
        block = dict(block)
        name = block["name"]
        block["path"] = str(paths[f"{split}:{name}"])
        if quotas and name in quotas:
            block["quota"] = quotas[name]
        block.update(extra.get(name, {}))
        out.append(block)
    return out


def override_config(components: dict, data: dict) -> dict:
    """The override a user on a 2-core machine writes on top of config/paper.yaml: device, sizes,
    steps, counts and paths only (`WORKAROUNDS` holds the rest the run needs today)."""
    import yaml

    paper = yaml.safe_load((Path(__file__).resolve().parent.parent / "config" / "paper.yaml").read_text())
    paths = {
        "pool:laion": data["laion"], "pool:coyo": data["coyo"], "pool:sam": data["sam"],
        "pool:journeydb": data["journeydb"], "pool:imagenet": data["imagenet_train"],
        "pairs:laion": data["laion_pairs"], "pairs:coyo": data["coyo_pairs"], "pairs:sam": data["sam_pairs"],
        "pairs:journeydb": data["journeydb_pairs"], "pairs:imagenet": data["imagenet_pairs"],
        "coco:coco": data["coco_val"], "imagenet:imagenet_val": data["imagenet_val"],
        "coco_ref:coco_train": data["coco_train_subset"], "imagenet_ref:imagenet_train": data["imagenet_train_subset"],
        "classifier:unused": data["imagenet_val"], "imagenet1k:imagenet_train": data["imagenet_train"],
    }
    n = SPLITS
    coco_files = {"coco": {"annotations": str(data["coco_annotations"]), "sample": n["coco"],
                           "long_captions": str(data["coco_long_captions"])}}
    sources = {split: _sources(paper, split, paths, quotas={"pool": POOL_QUOTAS, "pairs": PAIRS_QUOTAS}.get(split),
                               **(coco_files if split == "coco" else {}))
               for split in paper["data"]["sources"]}
    cfg = {
        "device": "cpu",
        "data": {
            "image_size": IMAGE_SIZE,
            "splits": {split: {"n": count} for split, count in n.items()},
            "sources": sources,
        },
        "components": {
            "vae": {"pretrained": str(components["vae"])},
            "dino": {"pretrained": str(components["dino"])},
            # REPA / REG's DINOv2-B (beyond the paper): the DINO ViT-B/16 stand-in (196 patch tokens,
            # resampled to the DiT's grid)
            "dinov2_base": {"pretrained": str(components["dino"])},
            "moco": {"pretrained": str(components["moco"])},
            "t5": {"pretrained": str(components["t5"])},
            "clip": {"pretrained": str(components["clip"])},
        },
        "features": {"batch_size": 16},
        # DiT-XL/2 (675M parameters, 825M with cross-attention) takes ~13 s a step (batch 4, one core) and
        # needs ~16 GB for weights, gradients, AdamW and EMA per run: two runs at once do not fit 24 GB.
        # Table 1's paper rows only: REPA / REG (beyond the paper) would add two DiT-XL/2 runs on
        # ImageNet-1K; the paper dry run plans them (tests/test_workflow.py)
        "pretrain": {"model": {"depth": DIT_DEPTH}, "train": {"steps": 2, "batch_size": 4}, "table1_beyond": []},
        "t2i": {"train": {"steps": 2, "batch_size": 4}},
        "sample": {"steps": 2, "batch_size": 8, "jobs": 1},
        "eval": {"batch_size": 16},
    }
    return _deep_merge(cfg, inception_config(components["inception"]))


def write_yaml(path: Path, cfg: dict, header: str = "") -> Path:
    import yaml

    path.write_text(header + yaml.safe_dump(cfg, sort_keys=False))
    return path


def build_world(root: Path) -> dict:
    """Components, data and the override YAMLs under `root`: {"components", "data", "override",
    "workarounds"}; pass `--configfile config/paper.yaml <override> <workarounds>`."""
    root = Path(root)
    data = build_data(root / "data")
    components = build_components(root / "components", caption_texts())
    override = write_yaml(root / "override.yaml", override_config(components, data),
                          "# config/paper.yaml on a 2-core machine: device, sizes, steps, counts, paths\n")
    workarounds = write_yaml(root / "workarounds.yaml", WORKAROUNDS,
                             "# what else the run needs today: lumos defects (tests/paper_world.py WORKAROUNDS)\n")
    return {"components": components, "data": data, "override": override, "workarounds": workarounds}

"""The LAION aesthetic score of an image, for sources that do not ship one (paper supplementary
G.1, G.2: LAION / COYO images kept above 5.0 for the pool, 5.5 for the pairs).

The LAION "improved aesthetic predictor" is a small MLP (`AestheticHead`) on the L2-normalised
CLIP ViT-L/14 image embedding (768-d, after the visual projection). `AestheticScorer` loads a
transformers CLIP model's image tower and projection (a full CLIP model folder or hub id, e.g.
`openai/clip-vit-large-patch14`; the text tower is not loaded) and the head's released state dict
(`sac+logos+ava1-l14-linearMSE.pth`, or .safetensors), and scores a batch of images.

Preprocessing is CLIP's own: bicubic resize of the shorter side to the input size, centre crop,
`(x / 255 - mean) / std` with OpenAI CLIP's mean and std unless the spec gives `input_size`,
`mean`, `std`. On a GPU the image tower runs in float16 autocast (as the reference scoring
ran CLIP in half precision); the head always runs in float32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lumos.components.loading import MissingWeightsError, from_pretrained

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
HEAD_WIDTHS = (1024, 128, 64, 16, 1)  # the predictor's layer widths after the embedding


class AestheticHead(nn.Module):
    """The improved aesthetic predictor's MLP: embedding (n, dim) -> score (n, 1).

    Linear(dim, 1024), Dropout(0.2), Linear(1024, 128), Dropout(0.2), Linear(128, 64),
    Dropout(0.1), Linear(64, 16), Linear(16, 1): no activations, as released. Kept as an
    `nn.Sequential` named `layers`, so the released keys `layers.{0,2,4,6,7}.{weight,bias}` load
    as they are."""

    def __init__(self, dim: int = 768):
        super().__init__()
        w = HEAD_WIDTHS
        self.layers = nn.Sequential(
            nn.Linear(dim, w[0]), nn.Dropout(0.2),
            nn.Linear(w[0], w[1]), nn.Dropout(0.2),
            nn.Linear(w[1], w[2]), nn.Dropout(0.1),
            nn.Linear(w[2], w[3]),
            nn.Linear(w[3], w[4]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def load_head(path: str, key: str) -> AestheticHead:
    """The head from its state dict file (.safetensors, else a torch pickle read with
    weights_only); its input width is read from the weights. A missing file is a
    MissingWeightsError naming config key `key`; keys that do not fit are a ValueError."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise MissingWeightsError(
            f"missing aesthetic predictor head: '{file}' does not exist. Place the LAION improved aesthetic "
            f"predictor weights there (sac+logos+ava1-l14-linearMSE.pth) or point config key '{key}' at them."
        )
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "layers.0.weight" not in state:
        found = sorted(state)[:6] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{file} (config key '{key}') is not an aesthetic predictor state dict: expected keys "
                         f"layers.{{0,2,4,6,7}}.{{weight,bias}}, found {found}")
    head = AestheticHead(state["layers.0.weight"].shape[1])
    try:
        head.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{file} (config key '{key}') does not fit the aesthetic predictor: "
                         f"{str(err).splitlines()[0]}") from None
    return head.eval()


def load_clip_vision(ref: str, key: str):
    """The image tower and visual projection of a transformers CLIP model (`CLIPVisionModelWithProjection`,
    from a full CLIP folder or hub id too). A missing model is a MissingWeightsError naming `key`; a
    model without a visual projection (a bare vision tower) is a ValueError, not random weights."""
    from transformers import CLIPVisionModelWithProjection

    model, info = from_pretrained(CLIPVisionModelWithProjection, ref, "CLIP model of the aesthetic predictor", key,
                                  output_loading_info=True,
                                  expected_unexpected=("text_model.", "text_projection.", "logit_scale"))
    if info["missing_keys"]:
        raise ValueError(f"CLIP model '{ref}' (config key '{key}') lacks {len(info['missing_keys'])} weights "
                         f"(e.g. {sorted(info['missing_keys'])[0]}): give a full CLIP model with its visual projection")
    return model.eval()


class AestheticScorer:
    """LAION aesthetic scores of images: CLIP image embedding, L2-normalised, through the MLP head.

    `spec` is a source's `aesthetic.model` block ({clip, head, optional input_size, mean, std});
    `key` is that block's config key, named in every loading error."""

    def __init__(self, spec: dict, device="cpu", key: str = "aesthetic.model"):
        self.device = torch.device(device)
        self.vision = load_clip_vision(spec["clip"], f"{key}.clip").to(self.device)
        self.head = load_head(spec["head"], f"{key}.head").to(self.device)
        dim, wants = self.vision.config.projection_dim, self.head.layers[0].in_features
        if wants != dim:
            raise ValueError(f"the aesthetic head '{spec['head']}' takes {wants}-d embeddings but CLIP model "
                             f"'{spec['clip']}' gives {dim}-d ones (ViT-L/14: 768; config key '{key}')")
        self.input_size = spec.get("input_size") or self.vision.config.image_size
        self.mean = torch.tensor(spec.get("mean", CLIP_MEAN), device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.get("std", CLIP_STD), device=self.device).view(1, 3, 1, 1)

    def fit(self, image) -> np.ndarray:
        """A PIL image or uint8 (H, W, 3) array -> uint8 (s, s, 3) at the input size `s`: shorter
        side resized to `s` (bicubic), then centre-cropped, as CLIP's preprocessing does. An
        image already at (s, s) is returned as it is."""
        from PIL import Image

        img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
        img, s = img.convert("RGB"), self.input_size
        w, h = img.size
        if min(w, h) != s:
            img = img.resize((max(s, int(s * w / min(w, h))), max(s, int(s * h / min(w, h)))), Image.BICUBIC)
            w, h = img.size
        left, top = round((w - s) / 2), round((h - s) / 2)
        return np.asarray(img.crop((left, top, left + s, top + s)), dtype=np.uint8)

    @torch.no_grad()
    def embed(self, images) -> torch.Tensor:
        """L2-normalised CLIP image embeddings (n, dim), float32."""
        x = torch.from_numpy(np.stack([self.fit(im) for im in images])).to(self.device)
        x = (x.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            out = self.vision(pixel_values=x).image_embeds
        return F.normalize(out.float(), dim=-1)

    @torch.no_grad()
    def scores(self, images) -> np.ndarray:
        """Aesthetic scores (n,) float32 of a list of PIL RGB images or uint8 (H, W, 3) arrays."""
        if len(images) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.head(self.embed(images)).squeeze(1).float().cpu().numpy()

"""Tiny parts for the pipeline tests: a word-level tokenizer, a T5, a ViT, a VAE and Lumos DiTs for
every task (T2I, I2I, NVS, I2V), built in a fraction of a second with fixed seeds; nothing downloads.

The DiTs' zero-initialised layers (adaLN gates, output layers, the camera embedder's and temporal
modules' outputs) are filled with small random values, so every input changes every sample."""

import numpy as np
import torch

from lumos.diffusion.sampling import make_scheduler
from lumos.models.dit import LumosDiT
from lumos.models.video import LumosVideoDiT

TEXT_DIM, VIT_DIM, MAX_LEN, STEPS, FRAMES = 32, 32, 12, 3, 3
WORDS = "a an the red blue green circle square triangle left right of above below and".split()
PROMPTS = ["a red circle left of a blue square", "a green triangle"]
ENCODER = dict(input_size=16, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3], resize="bilinear")


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_vae(scaling_factor=0.7):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[8, 8, 8],
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        layers_per_block=1, norm_num_groups=8, sample_size=16, mid_block_add_attention=False)
    vae.register_to_config(scaling_factor=scaling_factor)
    return vae


def _randomise_zeros(model):
    """Fill the zero-initialised tensors (a fresh model would output exactly zero)."""
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.01)
    return model


def tiny_dit(injection="cross_attn", cond_dim=TEXT_DIM, max_cond_tokens=MAX_LEN, **kw):
    torch.manual_seed(1)
    return _randomise_zeros(LumosDiT.from_size("DiT-N/2", sample_size=4, in_channels=4, injection=injection,
                                               cond_dim=cond_dim, max_cond_tokens=max_cond_tokens, **kw))


def tiny_nvs_dit(prediction_type="sample"):
    """A Lumos-NVS DiT: the view's latent concatenated (4 extra channels) and a 12-number camera."""
    return tiny_dit("cross_attn", VIT_DIM, 1, extra_in_channels=4, camera_dim=12, prediction_type=prediction_type)


def tiny_video_dit():
    torch.manual_seed(4)
    return _randomise_zeros(LumosVideoDiT(sample_size=4, patch_size=2, in_channels=4, hidden_size=32, depth=2,
                                          num_heads=2, cond_dim=VIT_DIM, max_cond_tokens=1, num_frames=FRAMES))


def tiny_t5():
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(2)
    return T5EncoderModel(T5Config(vocab_size=len(WORDS) + 3, d_model=TEXT_DIM, num_layers=1, num_heads=2, d_kv=16,
                                   d_ff=64, dropout_rate=0.0, pad_token_id=0, eos_token_id=1))


def tiny_vit():
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(3)
    return ViTModel(ViTConfig(image_size=16, patch_size=8, hidden_size=VIT_DIM, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=64), add_pooling_layer=False)


def tiny_pipeline(kind: str, sampler: str = "dpm++"):
    """An in-memory pipeline of `kind` (t2i, i2i, nvs, i2v) from the tiny parts."""
    from lumos import pipelines

    scheduler = make_scheduler(sampler)
    if kind == "t2i":
        return pipelines.LumosT2IPipeline(tiny_dit(), tiny_vae(), scheduler, tiny_t5(), tiny_tokenizer())
    if kind == "i2i":
        return pipelines.LumosI2IPipeline(tiny_dit("cross_attn", VIT_DIM, 1), tiny_vae(), scheduler, tiny_vit(),
                                          **ENCODER)
    if kind == "nvs":
        scheduler = make_scheduler(sampler, prediction_type="sample")
        return pipelines.LumosNVSPipeline(tiny_nvs_dit(), tiny_vae(), scheduler, tiny_vit(), **ENCODER)
    return pipelines.LumosI2VPipeline(tiny_video_dit(), tiny_vae(), scheduler, tiny_vit(), **ENCODER)


def example_images(n: int = 2, size: int = 16, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 random images."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


CAMERA = np.array([[0.0, 0.0, 1.0, 0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.5, 0.0, 0.1],
                   [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.2, 0.0]], dtype=np.float32)


def main_input(kind: str, n: int = 2):
    """Positional and keyword inputs of one call of a `kind` pipeline for `n` conditions."""
    if kind == "t2i":
        return (PROMPTS[:n],), {}
    if kind == "nvs":
        return (list(example_images(n)),), {"camera": CAMERA[:n]}
    return (list(example_images(n)),), {}

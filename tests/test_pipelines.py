"""LumosT2IPipeline / LumosI2IPipeline: save/load round trip, determinism, equality with the
workflow's `sample`, output sizes. Tiny models built in the test; nothing downloads."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler
from PIL import Image

from lumos.diffusion.sampling import make_scheduler, sample
from lumos.models.dit import LumosDiT
from lumos.pipelines import LumosI2IPipeline, LumosT2IPipeline, assemble_i2i_pipeline, assemble_t2i_pipeline

TEXT_DIM, VIT_DIM, MAX_LEN, STEPS = 32, 32, 12, 3
WORDS = "a an the red blue green circle square triangle left right of above below and".split()
PROMPTS = ["a red circle left of a blue square", "a green triangle"]


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_vae(scaling_factor=0.7):
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[8, 8, 8],
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        layers_per_block=1, norm_num_groups=8, sample_size=16, mid_block_add_attention=False)
    vae.register_to_config(scaling_factor=scaling_factor)
    return vae


def tiny_dit(injection="cross_attn", cond_dim=TEXT_DIM, max_cond_tokens=MAX_LEN):
    torch.manual_seed(1)
    model = LumosDiT.from_size("DiT-N/2", sample_size=4, in_channels=4, injection=injection, cond_dim=cond_dim,
                               max_cond_tokens=max_cond_tokens)
    with torch.no_grad():  # the zero-initialised output layers would make every sample identical noise
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.01)
    return model


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


def run(pipe, inputs, seed=0, **kw):
    kw = {"num_inference_steps": STEPS, "generator": torch.Generator().manual_seed(seed), **kw}
    if isinstance(pipe, LumosT2IPipeline):
        kw.setdefault("max_length", MAX_LEN)
    return pipe(inputs, **kw).images


@pytest.fixture(scope="module")
def t2i(tmp_path_factory):
    """(in-memory pipeline, loaded pipeline, save folder)."""
    pipe = LumosT2IPipeline(tiny_dit(), tiny_vae(), make_scheduler("dpm++"), tiny_t5(), tiny_tokenizer())
    path = tmp_path_factory.mktemp("t2i") / "pipeline"
    pipe.save_pretrained(path)
    return pipe, LumosT2IPipeline.from_pretrained(path), path


def test_t2i_round_trip_and_determinism(t2i):
    pipe, loaded, path = t2i
    index = (path / "model_index.json").read_text()
    assert '"lumos.models.dit"' in index and '"LumosDiT"' in index
    assert isinstance(loaded.transformer, LumosDiT)
    assert loaded.vae.config.scaling_factor == pytest.approx(0.7)
    a = run(pipe, PROMPTS, output_type="np")
    assert a.shape == (2, 16, 16, 3) and a.dtype == np.uint8
    assert np.array_equal(a, run(pipe, PROMPTS, output_type="np"))
    assert np.array_equal(a, run(loaded, PROMPTS, output_type="np"))
    assert not np.array_equal(a, run(pipe, PROMPTS, seed=1, output_type="np"))
    pil = run(loaded, PROMPTS[0])
    assert len(pil) == 1 and isinstance(pil[0], Image.Image) and pil[0].size == (16, 16)


def test_t2i_draws_other_aspect_ratios(t2i):
    """A multi-scale (Table S1 stage 4) model draws a bucket's size: height x width in pixels."""
    pipe, _, _ = t2i
    wide = run(pipe, PROMPTS, output_type="np", height=16, width=32)
    assert wide.shape == (2, 16, 32, 3)
    assert run(pipe, PROMPTS, output_type="latent", height=32, width=16).shape == (2, 4, 8, 4)
    with pytest.raises(ValueError, match="multiples of 8"):
        run(pipe, PROMPTS, height=20, width=16)


@pytest.mark.parametrize("sampler", ["dpm++", "ddpm"])
def test_t2i_latents_equal_workflow_sample(t2i, sampler):
    pipe = t2i[0]
    pipe = LumosT2IPipeline(**{**pipe.components, "scheduler": make_scheduler(sampler)})
    lat = run(pipe, PROMPTS, output_type="latent", guidance_scale=3.0)
    enc = pipe.tokenizer(PROMPTS, padding="max_length", truncation=True, max_length=MAX_LEN, return_tensors="pt")
    with torch.no_grad():  # (autograd mode changes the encoder's float rounding)
        cond = pipe.text_encoder(**enc).last_hidden_state
    assert enc["attention_mask"].sum(1).tolist() == [9, 4]  # words + </s>; the rest padded and masked
    ref = sample(pipe.transformer, (2, 4, 4, 4), cond, enc["attention_mask"].bool(), sampler=sampler,
                 num_steps=STEPS, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    assert lat.shape == (2, 4, 4, 4) and torch.equal(lat, ref)
    assert isinstance(pipe.scheduler, DDPMScheduler) == (sampler == "ddpm")


@pytest.mark.parametrize("injection", ["cross_attn", "adaln"])
def test_i2i_round_trip(tmp_path, injection):
    pipe = LumosI2IPipeline(tiny_dit(injection, VIT_DIM, 1), tiny_vae(), make_scheduler("dpm++"), tiny_vit(),
                            input_size=16, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3], resize="bilinear")
    pipe.save_pretrained(tmp_path)
    loaded = LumosI2IPipeline.from_pretrained(tmp_path)
    assert loaded.config.input_size == 16 and list(loaded.config.std) == [0.2, 0.25, 0.3]
    assert loaded.config.resize == "bilinear"
    assert loaded.image_encoder.pooler is None
    image = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)  # resized + cropped to 16
    out = run(loaded, image, output_type="np")
    assert out.shape == (1, 16, 16, 3) and out.dtype == np.uint8
    assert np.array_equal(out, run(pipe, image, output_type="np"))
    pil = run(loaded, [Image.fromarray(image), image])
    assert len(pil) == 2 and np.array_equal(np.asarray(pil[0]), out[0])
    cond, mask = loaded.encode_image(image)
    norm = cond.norm(dim=-1)
    assert cond.shape == (1, 1, VIT_DIM) and mask.all()
    assert torch.allclose(norm, torch.ones(1, 1)) == (injection == "cross_attn")


def test_assemble_from_saved_parts(tmp_path):
    dit, vae, t5, tok, vit = tiny_dit(), tiny_vae(1.0), tiny_t5(), tiny_tokenizer(), tiny_vit()
    dit.save_pretrained(tmp_path / "dit")
    vae.save_pretrained(tmp_path / "vae")
    t5.save_pretrained(tmp_path / "t5")
    tok.save_pretrained(tmp_path / "t5")
    vit.save_pretrained(tmp_path / "vit")
    pipe = assemble_t2i_pipeline(tmp_path / "dit", tmp_path / "vae", tmp_path / "t5", sampler="ddpm",
                                 scaling_factor=0.5)
    assert isinstance(pipe.scheduler, DDPMScheduler) and pipe.vae.config.scaling_factor == 0.5
    pipe.save_pretrained(tmp_path / "t2i")
    loaded = LumosT2IPipeline.from_pretrained(tmp_path / "t2i")
    assert loaded.vae.config.scaling_factor == 0.5
    assert np.array_equal(run(pipe, PROMPTS[1], output_type="np"), run(loaded, PROMPTS[1], output_type="np"))
    dit_i2i = tiny_dit("cross_attn", VIT_DIM, 1)
    dit_i2i.save_pretrained(tmp_path / "dit_i2i")
    i2i = assemble_i2i_pipeline(tmp_path / "dit_i2i", tmp_path / "vae", tmp_path / "vit", 16, [0.5] * 3, [0.5] * 3)
    assert run(i2i, np.zeros((16, 16, 3), np.uint8), output_type="np").shape == (1, 16, 16, 3)
    with pytest.raises(ValueError):
        LumosT2IPipeline(tiny_dit("adaln"), vae, make_scheduler("dpm++"), t5, tok)


def test_three_line_usage_in_a_fresh_process(t2i, tmp_path):
    """Only `lumos.pipelines` imported: from_pretrained still resolves ["lumos.models.dit", "LumosDiT"]."""
    pipe, _, path = t2i
    code = (
        "import sys, numpy, torch\n"
        "from lumos.pipelines import LumosT2IPipeline\n"
        "pipe = LumosT2IPipeline.from_pretrained(sys.argv[1])\n"
        f"images = pipe({PROMPTS!r}, num_inference_steps={STEPS}, max_length={MAX_LEN}, output_type='np',"
        " generator=torch.Generator().manual_seed(0)).images\n"
        "numpy.save(sys.argv[2], images)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "out.npy")], check=True,
                   env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert np.array_equal(np.load(tmp_path / "out.npy"), run(pipe, PROMPTS, output_type="np"))

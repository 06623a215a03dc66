"""The Lumos pipelines sample exactly as the workflow samples: for the same condition and seed, each
pipeline's images equal, bit for bit, what the workflow's own sampling functions write (`generate`,
behind `sample` and `t2i-sample`; `generate_views`, behind `nvs-eval`; `sample_videos` and
`decode_video`, behind `i2v-sample`), and its encoders compute the workflow's features. Also: save /
load round trips, the assemble helpers, other sizes. Tiny models (tests/pipeline_parts.py)."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from PIL import Image

from lumos.components.encoders import VisionEncoder
from lumos.components.vae import LatentCodec
from lumos.diffusion.sampling import make_scheduler, sample
from lumos.models.dit import LumosDiT
from lumos.pipelines import (LumosI2IPipeline, LumosNVSPipeline, LumosT2IPipeline, assemble_i2i_pipeline,
                             assemble_i2v_pipeline, assemble_nvs_pipeline, assemble_t2i_pipeline, pipeline_sampler)
from lumos.sample import batch_generator, generate, read_pngs
from pipeline_parts import (ENCODER, FRAMES, MAX_LEN, PROMPTS, STEPS, VIT_DIM, example_images, tiny_dit, tiny_nvs_dit,
                            tiny_pipeline, tiny_t5, tiny_tokenizer, tiny_vae, tiny_video_dit, tiny_vit)

SEED, GUIDANCE = 3, 2.5


def run(pipe, inputs, seed=0, **kw):
    kw = {"num_inference_steps": STEPS, "generator": torch.Generator().manual_seed(seed), **kw}
    return pipe(inputs, **kw).images


def as_uint8(images) -> np.ndarray:
    """PIL output as the (B, H, W, 3) uint8 array of its pixels."""
    return np.stack([np.asarray(img) for img in images])


@pytest.fixture(scope="module")
def t2i(tmp_path_factory):
    """(in-memory pipeline, loaded pipeline, save folder)."""
    pipe = tiny_pipeline("t2i")
    pipe.set_progress_bar_config(disable=True)
    path = tmp_path_factory.mktemp("t2i") / "pipeline"
    pipe.save_pretrained(path)
    loaded = LumosT2IPipeline.from_pretrained(path)
    loaded.set_progress_bar_config(disable=True)
    return pipe, loaded, path


def workflow_generate(model, vae, cond, mask, shape, tmp_path, model_kwargs=None) -> np.ndarray:
    """The PNG pixels the workflow's `generate` (the `sample` / `t2i-sample` commands) writes."""
    cfg = {"sampler": "dpm++", "steps": STEPS, "guidance_scale": GUIDANCE, "batch_size": 8}
    generate(model, LatentCodec(vae, float(vae.config.scaling_factor)), cond, mask, shape, str(tmp_path / "out"),
             str(tmp_path / "work"), cfg, SEED, model_kwargs=model_kwargs)
    return read_pngs(tmp_path / "out")


def test_t2i_round_trip_and_determinism(t2i):
    pipe, loaded, path = t2i
    index = (path / "model_index.json").read_text()
    assert '"lumos.models.dit"' in index and '"LumosDiT"' in index and '"pipeline_lumos_t2i"' in index
    assert isinstance(loaded.transformer, LumosDiT)
    assert loaded.vae.config.scaling_factor == pytest.approx(0.7)
    a = run(pipe, PROMPTS, output_type="np")
    assert a.shape == (2, 16, 16, 3) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert np.array_equal(a, run(pipe, PROMPTS, output_type="np"))
    assert np.array_equal(a, run(loaded, PROMPTS, output_type="np"))
    assert not np.array_equal(a, run(pipe, PROMPTS, seed=1, output_type="np"))
    pil = run(loaded, PROMPTS[0])
    assert len(pil) == 1 and isinstance(pil[0], Image.Image) and pil[0].size == (16, 16)


def test_t2i_draws_other_aspect_ratios(t2i):
    """A multi-scale (Table S1 stage 4) model draws a bucket's size: height x width in pixels."""
    pipe, _, _ = t2i
    assert run(pipe, PROMPTS, output_type="np", height=16, width=32).shape == (2, 16, 32, 3)
    assert run(pipe, PROMPTS, output_type="latent", height=32, width=16).shape == (2, 4, 8, 4)
    with pytest.raises(ValueError, match="multiples of 8"):
        run(pipe, PROMPTS, height=20, width=16)


@pytest.mark.parametrize("sampler", ["dpm++", "ddpm"])
def test_t2i_latents_equal_workflow_sample(t2i, sampler):
    pipe = LumosT2IPipeline(**{**t2i[0].components, "scheduler": make_scheduler(sampler)})
    pipe.set_progress_bar_config(disable=True)
    lat = run(pipe, PROMPTS, output_type="latent", guidance_scale=3.0)
    enc = pipe.tokenizer(PROMPTS, padding="max_length", truncation=True, max_length=MAX_LEN, return_tensors="pt")
    with torch.no_grad():  # (autograd mode changes the encoder's float rounding)
        cond = pipe.text_encoder(**enc).last_hidden_state
    assert enc["attention_mask"].sum(1).tolist() == [9, 4]  # words + </s>; the rest padded and masked
    ref = sample(pipe.transformer, (2, 4, 4, 4), cond, enc["attention_mask"].bool(), sampler=sampler,
                 num_steps=STEPS, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    assert lat.shape == (2, 4, 4, 4) and torch.equal(lat, ref)
    assert isinstance(pipe.scheduler, DDPMScheduler) == (sampler == "ddpm")


def test_t2i_pixels_equal_workflow_t2i_sample(t2i, tmp_path):
    """`t2i-sample`'s PNGs (cached tokens through `generate`) = the pipeline's PIL images from the
    same tokens and batch seed; the tokens are the pipeline's own encoding of the prompts."""
    pipe = t2i[0]
    tokens, mask = pipe.encode_prompt(PROMPTS)
    pngs = workflow_generate(pipe.transformer, pipe.vae, tokens, mask, (4, 4, 4), tmp_path)
    images = pipe(prompt_embeds=tokens, prompt_attention_mask=mask, num_inference_steps=STEPS,
                  guidance_scale=GUIDANCE, generator=batch_generator(SEED, 0)).images
    assert np.array_equal(as_uint8(images), pngs)
    assert np.array_equal(as_uint8(pipe(PROMPTS, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                                        generator=batch_generator(SEED, 0)).images), pngs)


def test_i2i_features_and_pixels_equal_workflow(tmp_path):
    """The pipeline's CLS of a uint8 image is the workflow's feature exactly (`VisionEncoder`), and
    its images from those features are `sample`'s PNGs (`generate` with `condition_tokens`)."""
    from lumos.features import condition_tokens

    pipe = tiny_pipeline("i2i")
    pipe.set_progress_bar_config(disable=True)
    images = example_images(3, size=20)
    enc = VisionEncoder(pipe.image_encoder, "transformers", **ENCODER)
    cls = enc(images)[0]
    assert torch.allclose(pipe.image_cls(list(images)), cls, atol=1e-5)  # one image at a time vs one batch
    assert torch.equal(pipe.image_cls(images[1]), enc(images[1:2])[0])  # one image: the same operations exactly
    cond, mask = condition_tokens({"dino_cls": cls.numpy()}, "dino", "cls", "cross_attn")
    pngs = workflow_generate(pipe.transformer, pipe.vae, cond, mask, (4, 4, 4), tmp_path)
    out = pipe(image_embeds=cls, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
               generator=batch_generator(SEED, 0)).images
    assert np.array_equal(as_uint8(out), pngs)


def nvs_store(pipe, tmp_path, views: int = 3):
    """A features folder of one object's `views` renders as the workflow writes it (fp16 latents
    and CLS, float32 c2w), plus the renders and their records."""
    from lumos.data.worlds.shapes3d import camera_to_world
    from lumos.store import write_store

    images = example_images(views, seed=5)
    codec = LatentCodec(pipe.vae, float(pipe.vae.config.scaling_factor))
    enc = VisionEncoder(pipe.image_encoder, "transformers", **ENCODER)
    c2w = np.stack([camera_to_world(az, 20.0, 2.0) for az in (0.0, 40.0, 130.0)[:views]]).astype(np.float32)
    lat, cls = codec.encode(images), enc(images)[0]
    assert torch.equal(pipe.encode_view(images[0], 16, 16), codec.encode(images[:1]))  # the workflow's latent
    assert torch.equal(pipe.image_cls(images[0]), enc(images[:1])[0])  # and CLS, exactly
    write_store(tmp_path / "features", {"latents": lat.half().numpy(), "dino_cls": cls.half().numpy(), "c2w": c2w,
                                        "object": np.zeros(views, np.int64)}, views_per_object=views)
    records = [{"object": 0, "view": v} for v in range(views)]
    return images, records, c2w


def test_nvs_views_equal_workflow_generate_views(tmp_path):
    """`nvs-eval`'s generated views (`generate_views`: features from the store, batches seeded by
    object and start) = the pipeline's views from the same features, camera and generator."""
    from lumos.store import FeatureStore
    from lumos.tasks.nvs import generate_views

    pipe = tiny_pipeline("nvs")
    pipe.set_progress_bar_config(disable=True)
    images, records, c2w = nvs_store(pipe, tmp_path)
    store = FeatureStore(tmp_path / "features")
    cfg = {"sampler": "dpm++", "steps": STEPS, "batch_size": 8}
    codec = LatentCodec(pipe.vae, float(pipe.vae.config.scaling_factor))
    views = generate_views(pipe.transformer, codec, store, "dino", 0, records, cfg, GUIDANCE, SEED)
    feats = store.get([0], ["latents", "dino_cls"])
    camera = LumosNVSPipeline.relative_pose(c2w[:1].repeat(2, 0), c2w[1:])
    out = pipe(image_embeds=torch.from_numpy(feats["dino_cls"].astype(np.float32)),
               image_latents=torch.from_numpy(feats["latents"].astype(np.float32)), camera=camera,
               num_inference_steps=STEPS, guidance_scale=GUIDANCE,
               generator=torch.Generator().manual_seed(SEED * 1_000_003)).images
    assert views.shape == (2, 16, 16, 3) and np.array_equal(as_uint8(out), views)
    # from the image itself: the condition and latent of fp32 features (the store keeps fp16)
    direct = pipe(images[0], camera=camera, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                  generator=torch.Generator().manual_seed(SEED * 1_000_003), output_type="np").images
    assert np.abs(direct - as_uint8(out) / 255.0).max() < 0.1


def test_i2v_clips_equal_workflow_sample_videos():
    """`i2v-sample`'s clips (`sample_videos` from `i2v_inputs`, decoded by `decode_video`) = the
    pipeline's frames from the same features and batch generator; frame 0 is the given frame."""
    from lumos.tasks.i2v import decode_video, i2v_inputs, sample_videos

    pipe = tiny_pipeline("i2v")
    pipe.set_progress_bar_config(disable=True)
    codec = LatentCodec(pipe.vae, float(pipe.vae.config.scaling_factor))
    firsts = example_images(2, seed=7)
    enc = VisionEncoder(pipe.image_encoder, "transformers", **ENCODER)
    first_lat = codec.encode(firsts).half().float()  # as the video features store them (fp16)
    assert torch.equal(pipe.encode_first_frames(firsts[1], 16, 16), codec.encode(firsts[1:]))
    latents = first_lat[:, :, None].repeat(1, 1, FRAMES, 1, 1)  # frames 1.. are not read
    cls = enc(firsts)[0].half().numpy()
    inputs = i2v_inputs(latents, cls)
    cfg = {"sampler": "dpm++", "steps": STEPS}
    lat = sample_videos(pipe.transformer, inputs["first"], inputs["cond"], inputs["cond_mask"], FRAMES, cfg, GUIDANCE,
                        batch_generator(SEED, 0))
    clips = decode_video(codec, lat)
    out = pipe(image_embeds=torch.from_numpy(cls.astype(np.float32)), image_latents=inputs["first"],
               num_inference_steps=STEPS, guidance_scale=GUIDANCE, generator=batch_generator(SEED, 0))
    frames = np.stack([as_uint8(clip) for clip in out.frames])
    assert clips.shape == (2, FRAMES, 16, 16, 3) and np.array_equal(frames, clips)
    lat_out = pipe(image_embeds=torch.from_numpy(cls.astype(np.float32)), image_latents=inputs["first"],
                   num_inference_steps=STEPS, guidance_scale=GUIDANCE, generator=batch_generator(SEED, 0),
                   output_type="latent").frames
    assert torch.equal(lat_out, lat) and torch.equal(lat_out[:, :, 0], inputs["first"])


def test_i2i_round_trip(tmp_path):
    pipe = LumosI2IPipeline(tiny_dit("adaln", VIT_DIM, 1), tiny_vae(), make_scheduler("dpm++"), tiny_vit(), **ENCODER)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path)
    loaded = LumosI2IPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.input_size == 16 and list(loaded.config.std) == [0.2, 0.25, 0.3]
    assert loaded.config.resize == "bilinear"
    assert not loaded.image_encoder.pooler.dense.weight.any()  # the unused pooler: zeros, saved and loaded
    image = example_images(1, size=20)[0]  # resized + cropped to 16
    out = run(loaded, image, output_type="np")
    assert out.shape == (1, 16, 16, 3) and out.dtype == np.float32
    assert np.array_equal(out, run(pipe, image, output_type="np"))
    pil = run(loaded, [Image.fromarray(image), image])
    assert len(pil) == 2 and np.array_equal(np.asarray(pil[0]), np.round(out[0] * 255).astype(np.uint8))
    cond, mask = loaded.encode_image(image)
    assert cond.shape == (1, 1, VIT_DIM) and mask.all()
    assert not torch.allclose(cond.norm(dim=-1), torch.ones(1, 1))  # adaLN reads the raw CLS


def test_assemble_from_saved_parts(tmp_path):
    dit, vae, t5, tok, vit = tiny_dit(), tiny_vae(1.0), tiny_t5(), tiny_tokenizer(), tiny_vit()
    parts = {"dit": dit, "vae": vae, "t5": t5, "vit": vit, "dit_i2i": tiny_dit("cross_attn", VIT_DIM, 1),
             "dit_nvs": tiny_nvs_dit(), "dit_i2v": tiny_video_dit()}
    for name, part in parts.items():
        part.save_pretrained(tmp_path / name)
    tok.save_pretrained(tmp_path / "t5")
    pipe = assemble_t2i_pipeline(tmp_path / "dit", tmp_path / "vae", tmp_path / "t5", sampler="ddpm",
                                 scaling_factor=0.5)
    assert isinstance(pipe.scheduler, DDPMScheduler) and pipe.vae.config.scaling_factor == 0.5
    pipe.save_pretrained(tmp_path / "t2i")
    generate_ = pipeline_sampler(str(tmp_path / "t2i"), {"steps": 2, "guidance_scale": 2.0}, "cpu")
    pixels = generate_([PROMPTS[1]], 0)
    assert pixels.dtype == np.uint8 and pixels.shape == (1, 16, 16, 3)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(PROMPTS[1], num_inference_steps=2, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(pixels, as_uint8(ref.images))
    pair = generate_([PROMPTS[1]], 0, 2)  # the prompt encoded once, two images (the prompt grid's use)
    ref = pipe(PROMPTS[1], num_inference_steps=2, guidance_scale=2.0, num_images_per_prompt=2,
               generator=torch.Generator().manual_seed(0))
    assert pair.shape == (2, 16, 16, 3) and np.array_equal(pair, as_uint8(ref.images))
    vision = dict(input_size=16, mean=[0.5] * 3, std=[0.5] * 3)
    i2i = assemble_i2i_pipeline(tmp_path / "dit_i2i", tmp_path / "vae", tmp_path / "vit", **vision)
    nvs = assemble_nvs_pipeline(tmp_path / "dit_nvs", tmp_path / "vae", tmp_path / "vit", sampler="ddpm", **vision)
    i2v = assemble_i2v_pipeline(tmp_path / "dit_i2v", tmp_path / "vae", tmp_path / "vit", **vision)
    assert nvs.scheduler.config.prediction_type == "sample" and isinstance(nvs.scheduler, DDPMScheduler)
    assert i2v.transformer.config.num_frames == FRAMES and i2i.image_encoder.pooler is not None
    with pytest.raises(ValueError):
        LumosT2IPipeline(tiny_dit("adaln"), vae, make_scheduler("dpm++"), t5, tok)
    with pytest.raises(ValueError, match="camera_dim"):
        LumosNVSPipeline(tiny_dit("cross_attn", VIT_DIM, 1), vae, make_scheduler("dpm++"), vit)

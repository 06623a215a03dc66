"""The exported pipelines as a diffusers user drives them: every kind (T2I, I2I, NVS, I2V) saved,
loaded with `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` and called with
diffusers' arguments: output types (counts, dtype, range), `num_images_per_prompt`, `latents`,
a generator list, `callback_on_step_end`, the progress bar, bfloat16 on every component; the
image inputs diffusers takes; the `export-pipeline` command and its model card's usage snippet,
run in a fresh process. Tiny models (tests/pipeline_parts.py)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from pipeline_parts import CAMERA, FRAMES, PROMPTS, STEPS, example_images, main_input, tiny_pipeline

KINDS = ["t2i", "i2i", "nvs", "i2v"]
PER = {"i2v": "num_videos_per_prompt"}  # diffusers' video pipelines' name for num_images_per_prompt


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """kind -> the folder its tiny pipeline was saved to."""
    root = tmp_path_factory.mktemp("pipelines")
    for kind in KINDS:
        tiny_pipeline(kind).save_pretrained(root / kind)
    return {kind: root / kind for kind in KINDS}


@pytest.fixture(scope="module")
def loaded(saved):
    """kind -> the pipeline loaded the diffusers way, its progress bar off."""
    pipes = {kind: DiffusionPipeline.from_pretrained(str(path), trust_remote_code=True) for kind, path in saved.items()}
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    return pipes


def call(pipe, kind, n=2, seed=0, **kw):
    """One call on `n` conditions; returns the images (frames for I2V)."""
    args, extra = main_input(kind, n)
    kw = {"num_inference_steps": STEPS, "generator": torch.Generator().manual_seed(seed), **extra, **kw}
    out = pipe(*args, **kw)
    return out.frames if kind == "i2v" else out.images


def image_shape(kind):
    return (FRAMES, 16, 16, 3) if kind == "i2v" else (16, 16, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_loads_through_diffusion_pipeline(saved, loaded, kind):
    """`_class_name` is [module, class] with the module beside it, importing that one class."""
    from lumos import pipelines

    cls = {"t2i": pipelines.LumosT2IPipeline, "i2i": pipelines.LumosI2IPipeline, "nvs": pipelines.LumosNVSPipeline,
           "i2v": pipelines.LumosI2VPipeline}[kind]
    assert type(loaded[kind]) is cls
    index = json.loads((saved[kind] / "model_index.json").read_text())
    assert index["_class_name"] == [f"pipeline_lumos_{kind}", cls.__name__]
    module = (saved[kind] / f"pipeline_lumos_{kind}.py").read_text()
    assert module.count("import ") == 1 and f"import {cls.__name__}" in module
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(str(saved[kind]))
    assert type(cls.from_pretrained(saved[kind])) is cls  # the class itself: no flag needed


def test_the_class_runs_nothing_of_the_folder(saved, tmp_path, monkeypatch):
    """`<Class>.from_pretrained` on lumos' own module runs no folder code (no dynamic module); a
    changed module is left to diffusers, which asks for `trust_remote_code`."""
    import diffusers.pipelines.pipeline_loading_utils as loading

    from lumos.pipelines import LumosI2IPipeline

    def no_dynamic_module(*args, **kwargs):
        raise AssertionError("the folder's module was run")

    monkeypatch.setattr(loading, "get_class_from_dynamic_module", no_dynamic_module)
    assert type(LumosI2IPipeline.from_pretrained(saved["i2i"])) is LumosI2IPipeline
    folder = tmp_path / "i2i"
    shutil.copytree(saved["i2i"], folder)
    (folder / "pipeline_lumos_i2i.py").write_text("from lumos.pipelines.i2i import LumosI2IPipeline\nprint('hi')\n")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="trust_remote_code"):
        LumosI2IPipeline.from_pretrained(folder)


@pytest.mark.parametrize("kind", KINDS)
def test_output_types_and_counts(loaded, kind):
    """np: float (B, H, W, 3) in [0, 1]; pt: float (B, 3, H, W) in [0, 1]; pil; latent. B = 2
    conditions x 2 per condition (video: (B, T, ...))."""
    pipe, per = loaded[kind], {PER.get(kind, "num_images_per_prompt"): 2}
    out = call(pipe, kind, output_type="np", **per)
    assert out.shape == (4, *image_shape(kind)) and out.dtype == np.float32 and 0 <= out.min() <= out.max() <= 1
    pt = call(pipe, kind, output_type="pt", **per)
    shape = (4, FRAMES, 3, 16, 16) if kind == "i2v" else (4, 3, 16, 16)
    assert tuple(pt.shape) == shape and pt.dtype == torch.float32 and 0 <= pt.min() <= pt.max() <= 1
    pil = call(pipe, kind, output_type="pil", **per)
    first = pil[0][0] if kind == "i2v" else pil[0]
    assert len(pil) == 4 and isinstance(first, Image.Image) and first.size == (16, 16)
    assert np.allclose(np.asarray(first) / 255.0, out[0][0] if kind == "i2v" else out[0], atol=0.5 / 255 + 1e-6)
    lat = call(pipe, kind, output_type="latent", **per)
    assert lat.shape[0] == 4 and lat.shape[1] == 4
    assert not np.array_equal(out[0], out[1])  # two samples of one condition differ
    assert not np.array_equal(out[0], out[2])  # the second condition's first image


@pytest.mark.parametrize("kind", KINDS)
def test_latents_and_generator_lists(loaded, kind):
    """Given `latents`, the noise is not drawn: same latents -> same images, whatever the
    generator; the workflow's draw as `latents` reproduces the seeded call; one generator per
    image draws each image's noise alone."""
    pipe = loaded[kind]
    lat_shape = (2, 4, FRAMES, 4, 4) if kind == "i2v" else (2, 4, 4, 4)
    noise = torch.randn(lat_shape, generator=torch.Generator().manual_seed(0))
    a = call(pipe, kind, latents=noise, output_type="np", seed=1)
    assert np.array_equal(a, call(pipe, kind, latents=noise.clone(), output_type="np", seed=2))
    assert np.array_equal(a, call(pipe, kind, output_type="np", seed=0))
    gens = [torch.Generator().manual_seed(10), torch.Generator().manual_seed(11)]
    listed = call(pipe, kind, generator=gens, output_type="latent")
    alone = call(pipe, kind, n=1, generator=[torch.Generator().manual_seed(10)], output_type="latent")
    assert torch.allclose(listed[:1], alone, atol=1e-5)  # image 0 depends on its own generator only
    with pytest.raises(ValueError, match="generators"):
        call(pipe, kind, generator=gens[:1] * 3)


@pytest.mark.parametrize("kind", KINDS)
def test_callback_on_step_end(loaded, kind):
    """Called once per step with diffusers' signature; what it returns replaces the latents."""
    pipe, seen = loaded[kind], []

    def callback(p, step, timestep, kwargs):
        seen.append((step, int(timestep), sorted(kwargs)))
        assert p is pipe and p.num_timesteps == STEPS
        return {"latents": torch.zeros_like(kwargs["latents"])} if step == STEPS - 1 else {}

    lat = call(pipe, kind, output_type="latent", callback_on_step_end=callback,
               callback_on_step_end_tensor_inputs=["latents", pipe._callback_tensor_inputs[1]])
    assert [s for s, _, _ in seen] == list(range(STEPS)) and all(k == sorted(pipe._callback_tensor_inputs)
                                                                  for _, _, k in seen)
    assert not (lat[:, :, 1:] if kind == "i2v" else lat).any()  # (I2V's frame 0 is the given frame)
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        call(pipe, kind, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["noise"])


def test_progress_bar(saved, capsys):
    """The pipeline's own bar: on by default, off with set_progress_bar_config(disable=True)."""
    pipe = DiffusionPipeline.from_pretrained(str(saved["t2i"]), trust_remote_code=True)
    capsys.readouterr()
    call(pipe, "t2i")
    assert f"{STEPS}/{STEPS}" in capsys.readouterr().err
    pipe.set_progress_bar_config(disable=True)
    call(pipe, "t2i")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("kind", KINDS)
def test_bfloat16_on_every_component(saved, kind):
    """`torch_dtype` (the issue's spelling) or `dtype` (diffusers 0.42's) reaches every module."""
    dtype = {"torch_dtype" if kind == "i2i" else "dtype": torch.bfloat16}
    pipe = DiffusionPipeline.from_pretrained(str(saved[kind]), trust_remote_code=True, **dtype)
    modules = {name: c for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}
    assert len(modules) == 3 and {m.dtype for m in modules.values()} == {torch.bfloat16}
    pipe.set_progress_bar_config(disable=True)
    out = call(pipe, kind, n=1, output_type="np", num_inference_steps=2)
    assert out.dtype == np.float32 and np.isfinite(out).all()


def test_t2i_negative_prompt_and_embeds(loaded):
    pipe = loaded["t2i"]
    plain = call(pipe, "t2i", output_type="latent")
    negative = call(pipe, "t2i", output_type="latent", negative_prompt="a blue square")
    assert not torch.equal(plain, negative)
    tokens, mask = pipe.encode_prompt(["a blue square"] * 2)
    assert torch.equal(negative, call(pipe, "t2i", output_type="latent", negative_prompt_embeds=tokens,
                                      negative_prompt_attention_mask=mask))
    tokens, mask = pipe.encode_prompt(PROMPTS)
    embeds = pipe(prompt_embeds=tokens, prompt_attention_mask=mask, num_inference_steps=STEPS,
                  generator=torch.Generator().manual_seed(0), output_type="latent").images
    assert torch.equal(plain, embeds)
    with pytest.raises(ValueError, match="negative prompts"):
        call(pipe, "t2i", negative_prompt=["a", "b", "c"])


def test_image_inputs_the_diffusers_way(loaded):
    """PIL, lists, float arrays in [0, 1] (HWC / NHWC), tensors in [0, 1] (CHW / NCHW) or
    [-1, 1], uint8: one condition; height / width set the output size."""
    pipe = loaded["i2i"]
    img = example_images(2, size=24)
    ref = pipe.image_cls(img)
    as_float = img.astype(np.float32) / 255.0
    tensor = torch.from_numpy(as_float).permute(0, 3, 1, 2)
    for form in ([Image.fromarray(i) for i in img], as_float, list(as_float), tensor, list(tensor), tensor * 2 - 1):
        assert torch.allclose(pipe.image_cls(form), ref, atol=1e-4)
    assert torch.equal(pipe.image_cls(Image.fromarray(img[0])), ref[:1])
    wide = pipe(Image.fromarray(img[0]), num_inference_steps=STEPS, height=16, width=32, output_type="np").images
    assert wide.shape == (1, 16, 32, 3)
    with pytest.raises(ValueError, match="image arrays"):
        pipe(np.zeros((16, 16), np.uint8))


def test_nvs_cameras_and_i2v_frames(loaded):
    """NVS: relative transforms or 12-number poses, one view for many cameras. I2V: num_frames,
    frame 0 the given frame (through the VAE)."""
    nvs, i2v = loaded["nvs"], loaded["i2v"]
    view = example_images(1)[0]
    poses = np.eye(4, dtype=np.float32)[None].repeat(2, 0)
    poses[:, :3, :3] = CAMERA[:, :9].reshape(2, 3, 3)
    poses[:, :3, 3] = CAMERA[:, 9:]
    seeded = {"num_inference_steps": STEPS, "output_type": "latent"}
    a = nvs(view, camera=CAMERA, generator=torch.Generator().manual_seed(0), **seeded).images
    b = nvs([view, view], camera=poses, generator=torch.Generator().manual_seed(0), **seeded).images
    assert a.shape == (2, 4, 4, 4) and torch.equal(a, b)
    with pytest.raises(ValueError, match="cameras"):
        nvs(list(example_images(3)), camera=CAMERA)
    clip = i2v(view, num_frames=5, num_inference_steps=STEPS, output_type="latent").frames
    assert clip.shape == (1, 4, 5, 4, 4) and torch.equal(clip[:, :, 0], i2v.encode_first_frames(view, 16, 16))


# ------------------------------------------------------------------------- export and card


def write_splits(root):
    """Tiny data splits for the cards' example inputs: images, rendered views, clips."""
    from lumos.data.shards import write_split
    from lumos.data.worlds.shapes3d import camera_to_world

    imgs = example_images(3)
    write_split(root / "images", imgs, [{"i": k} for k in range(3)], shard_size=8)
    views = [{"object": 0, "view": v, "role": "input" if v == 0 else "target",
              "c2w": camera_to_world(40.0 * v, 20.0, 2.0).reshape(-1).tolist()} for v in range(3)]
    write_split(root / "views", imgs, views, shard_size=8, views_per_object=3)
    strips = np.concatenate([imgs] * FRAMES, axis=2)  # (n, H, T W, 3)
    write_split(root / "clips", strips, [{"frames": FRAMES}] * 3, shard_size=8, frames=FRAMES)


@pytest.fixture(scope="module")
def exported(saved, tmp_path_factory):
    """kind -> a folder exported by `lumos export-pipeline` from the tiny parts, with its card."""
    from lumos.cli import main

    root = tmp_path_factory.mktemp("export")
    write_splits(root)
    for kind in KINDS:
        for part in ("transformer", "vae") + (("text_encoder", "tokenizer") if kind == "t2i" else ("image_encoder",)):
            target = root / "parts" / kind / ("encoder" if part in ("text_encoder", "image_encoder", "tokenizer")
                                              else part)
            shutil.copytree(saved[kind] / part, target, dirs_exist_ok=True)
    (root / "summary.json").write_text(json.dumps({"steps": 20, "final_loss": 0.25, "prior": "none"}))
    (root / "fid.json").write_text(json.dumps({"fid": 123.4, "n": 64, "nested": {"psnr": 20.5}}))
    vision = {"pretrained": "", "format": "transformers", "input_size": 16, "mean": [0.5, 0.4, 0.3],
              "std": [0.2, 0.25, 0.3], "resize": "bilinear"}
    data = {"i2i": "images", "nvs": "views", "i2v": "clips"}
    for kind in KINDS:
        parts = root / "parts" / kind
        cfg = {"preset": "smoke", "components.vae": {"pretrained": str(parts / "vae")},
               "sample": {"sampler": "dpm++", "steps": STEPS, "guidance_scale": 2.0, "batch_size": 4, "jobs": 1}}
        encoder = "t5" if kind == "t2i" else "dino"
        cfg[f"components.{encoder}"] = ({"pretrained": str(parts / "encoder"), "kind": "t5", "max_length": 12}
                                        if kind == "t2i" else {**vision, "pretrained": str(parts / "encoder")})
        args = ["export-pipeline", "--kind", kind, "--cfg", json.dumps(cfg), "--encoder", encoder,
                "--model", str(parts / "transformer"), "--out", str(root / kind / "pipeline"),
                "--summary", str(root / "summary.json"), "--metrics", str(root / "fid.json")]
        main(args + (["--data", str(root / data[kind])] if kind in data else []))
    return {kind: root / kind / "pipeline" for kind in KINDS}, root


@pytest.mark.parametrize("kind", KINDS)
def test_export_writes_a_model_card(exported, kind):
    """README.md: YAML front matter, preset, steps, the measured numbers, a short usage snippet."""
    card = (exported[0][kind] / "README.md").read_text()
    head = card.split("---")[1]
    assert "library_name: diffusers" in head and "pipeline_tag: " in head and "- lumos" in head
    assert "license" not in head and "License: none declared" in card and "Shapes world" in card
    assert "`smoke`" in card and "| steps | 20 |" in card
    assert "| fid | 123.4 |" in card and "| nested.psnr | 20.5 |" in card
    snippet = card.split("```python\n")[1].split("```")[0]
    assert snippet.count("\n") <= 5 and "DiffusionPipeline.from_pretrained" in snippet


def test_model_card_snippets_run(exported):
    """Each card's usage snippet runs as written in a fresh process where only diffusers is
    imported (the folder's module brings lumos in), and makes a 16 x 16 image / clip."""
    folders, root = exported
    probe = ["import sys"]
    for kind in KINDS:
        snippet = (folders[kind] / "README.md").read_text().split("```python\n")[1].split("```")[0]
        out = {"t2i": "image", "i2i": "image", "nvs": "view", "i2v": "frames[0]"}[kind]
        probe.append(f"exec({snippet!r}, ns := {{}}); out = eval({out!r}, ns)\n"
                     f"sys.stdout.write(f'{kind} {{type(out).__name__}} {{out.size}};')")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", "\n".join(probe)], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == "".join(f"{kind} Image (16, 16);" for kind in KINDS)

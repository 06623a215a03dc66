"""Export commands: a trained model as a diffusers pipeline folder with its model card.

`lumos export-pipeline --kind t2i|i2i|nvs|i2v` assembles the pipeline from the model folder and the
components of the config slice (`lumos.pipelines.assemble`), saves it (loadable with
``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)``), writes example inputs from a
data split when given, and writes README.md (`lumos.pipelines.cards`) whose usage snippet reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

from lumos.commands import setup

KIND_ENCODER_KEY = {"nvs": "nvs.encoder", "i2v": "i2v.encoder"}  # the condition encoder of a task's slice
KIND_GUIDANCE_KEY = {"nvs": "nvs.eval.guidance_scale", "i2v": "i2v.eval.guidance_scale"}


def setting(cfg: dict, key: str, default=None):
    """The value of dotted `key` in a config slice, whether the slice holds the key itself or a
    block above it (`sample` or `sample.sampler`); `default` when it holds neither."""
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        head = ".".join(parts[:i])
        if head in cfg:
            value = cfg[head]
            for part in parts[i:]:
                if not isinstance(value, dict) or part not in value:
                    return default
                value = value[part]
            return value
    return default


def _sampling(cfg: dict, kind: str, sample_key: str) -> dict:
    """The sampler, steps and guidance scale the workflow evaluates this kind with (those the slice holds)."""
    guidance = setting(cfg, KIND_GUIDANCE_KEY.get(kind, f"{sample_key}.guidance_scale"))
    values = {"sampler": setting(cfg, f"{sample_key}.sampler"), "steps": setting(cfg, f"{sample_key}.steps"),
              "guidance_scale": guidance}
    return {k: v for k, v in values.items() if v is not None}


def _assemble(args, cfg: dict, encoder: str):
    """The pipeline of `--kind` from `--model`, the VAE (or `--vae`) and the encoder's component block."""
    from lumos import pipelines

    vae = cfg["components.vae"]
    spec = cfg[f"components.{encoder}"]
    # The VAE's own config holds the scaling factor unless the config overrides it (as load_vae reads it).
    common = dict(sampler=setting(cfg, f"{args.sample_key}.sampler", "dpm++"), scaling_factor=vae.get("scaling_factor"))
    vae_dir = args.vae or vae["pretrained"]
    if args.kind == "t2i":
        return pipelines.assemble_t2i_pipeline(args.model, vae_dir, spec["pretrained"], **common)
    if spec.get("kind") == "clip":
        raise ValueError(f"components.{encoder}: the pipelines take a transformers ViT encoder, not a CLIP image tower")
    from lumos.config import schema_defaults

    spec = {**schema_defaults("components.dino"), **spec}  # as load_encoder reads every vision encoder block
    if spec["format"] != "transformers":
        raise ValueError(f"components.{encoder}: the pipelines take a transformers ViT encoder (format: "
                         f"transformers), not format {spec['format']!r}")
    build = {"i2i": pipelines.assemble_i2i_pipeline, "nvs": pipelines.assemble_nvs_pipeline,
             "i2v": pipelines.assemble_i2v_pipeline}[args.kind]
    return build(args.model, vae_dir, spec["pretrained"], spec["input_size"], spec.get("mean", [0.5] * 3),
                 spec.get("std", [0.5] * 3), resize=spec["resize"], **common)


def write_examples(kind: str, data: str, out: str) -> dict:
    """Example inputs from the first item of split `data`, written into the pipeline folder:
    `example_input.png` (an image, NVS's input view, I2V's first frame); NVS also
    `example_camera.json` (the relative pose of the object's first target view) and
    `example_target.png` (its render). Returns the names written."""
    from PIL import Image

    from lumos.data.shards import read_images, read_records, split_index

    images, records = read_images(data, limit=2), read_records(data, limit=2)
    folder = Path(out)
    image = images[0]
    written = {"input": "example_input.png"}
    if kind == "i2v":
        from lumos.data.worlds.shapes_video import split_frames

        image = split_frames(images[0], int(records[0].get("frames") or split_index(data)["frames"]))[0]
    if kind == "nvs":
        from lumos.data.worlds.shapes3d import c2w_from_record
        from lumos.tasks.nvs import relative_pose_vectors

        camera = relative_pose_vectors(c2w_from_record(records[0])[None], c2w_from_record(records[1])[None])[0]
        (folder / "example_camera.json").write_text(json.dumps([round(float(v), 6) for v in camera]) + "\n")
        Image.fromarray(images[1]).save(folder / "example_target.png")
        written.update(camera="example_camera.json", target="example_target.png")
    Image.fromarray(image).save(folder / "example_input.png")
    return written


def usage_lines(kind: str, folder: str, sampling: dict, prompt: str | None, examples: dict) -> list[str]:
    """The card's usage snippet: load with DiffusionPipeline and make one output from the folder's
    example input (T2I: `prompt`)."""
    load = f"pipe = DiffusionPipeline.from_pretrained({folder!r}, trust_remote_code=True)"
    knobs = "".join(f", {name}={sampling[key]!r}" for key, name in (("steps", "num_inference_steps"),
                                                                       ("guidance_scale", "guidance_scale"))
                    if key in sampling)
    if kind == "t2i":
        return ["from diffusers import DiffusionPipeline", load, f"image = pipe({prompt!r}{knobs}).images[0]"]
    if "input" not in examples:
        raise ValueError(f"a {kind} card's usage reads an example input: pass --data")
    image = f"load_image({folder + '/' + examples['input']!r})"
    head = ["from diffusers import DiffusionPipeline", "from diffusers.utils import load_image", load]
    if kind == "i2i":
        return [*head, f"image = pipe({image}{knobs}).images[0]"]
    if kind == "nvs":
        camera = f"json.load(open({folder + '/' + examples['camera']!r}))"
        return ["import json", *head, f"view = pipe({image}, camera={camera}{knobs}).images[0]"]
    return [*head, f"frames = pipe({image}{knobs}).frames[0]"]


def cmd_export_pipeline(args):
    """Save a trained model as a diffusers pipeline (`--kind`: t2i, a fine-tune or the imported
    released model; i2i, a pretrain run; nvs; i2v) with its model card (README.md) and, given
    `--data`, example inputs; its scheduler is the sampler of `--sample-key`."""
    from lumos.pipelines.cards import write_model_card

    cfg, _ = setup(args)
    encoder = args.encoder or setting(cfg, KIND_ENCODER_KEY.get(args.kind, ""))
    if not encoder:
        raise ValueError(f"--kind {args.kind}: pass --encoder (the condition encoder, components.<name>)")
    pipe = _assemble(args, cfg, encoder)
    pipe.save_pretrained(args.out)
    examples = write_examples(args.kind, args.data, args.out) if args.data else {}
    sampling = _sampling(cfg, args.kind, args.sample_key)
    released = args.kind == "t2i" and encoder == "t5_released"
    prompt = None
    if args.kind == "t2i":
        from lumos.eval.t2i import grid_prompts

        prompt = grid_prompts("paper" if released else "shapes")[0][1]
    usage = usage_lines(args.kind, args.out, sampling, prompt, examples)
    card = write_model_card(args.out, args.kind, usage, summary_path=args.summary, metric_paths=args.metrics,
                            name=args.name or Path(args.model).parent.name, preset=cfg.get("preset"),
                            model=args.model, sampling=sampling, encoder=encoder, released=released)
    print(f"saved {type(pipe).__name__} to {args.out} (card {card})")


def register(add):
    """Declare `export-pipeline` (see `lumos.cli`)."""
    req = {"required": True}
    add("export-pipeline", cmd_export_pipeline,
        kind=("what the model is: t2i (a fine-tune or the imported released model), i2i (a pretrain run), "
              "nvs (Lumos-NVS), i2v (Lumos-I2V)", {"choices": ["t2i", "i2i", "nvs", "i2v"], "default": "t2i"}),
        model=("trained (or imported released) model folder", req), out=("pipeline folder", req),
        encoder=("condition encoder (components.<name>): the text encoder for t2i, the vision encoder otherwise "
                 "(default for nvs / i2v: nvs.encoder / i2v.encoder)", {"default": None}),
        vae=("VAE folder instead of components.vae.pretrained (NVS: the decoder fine-tuned on the renders)",
             {"default": None}),
        sample_key=("config block of the sampling settings: sample, or released.t2i_sample for the released T2I "
                    "model", {"default": "sample"}),
        summary=("the run's train_summary.json, for the model card", {"default": None}),
        metrics=("evaluation JSON files whose numbers the model card lists", {"nargs": "*", "default": []}),
        data=("a data split whose first item becomes the card's example input (i2i, nvs, i2v)", {"default": None}),
        name=("the model's label in the card (default: the model folder's parent)", {"default": None}))

"""Released-checkpoint commands (issue 17): import the authors' Lumos_I2I.pth / Lumos_T2I.pth, and
sample the imported T2I model from an evaluation split's captions."""

from __future__ import annotations

import json

from lumos.commands import setup


def cmd_import_released(args):
    """Convert a released Lumos checkpoint (flat .pth state dict) into a LumosDiT folder (strict: every key
    mapped, shapes and position table checked)."""
    from lumos.released import convert_released
    from lumos.utils import setup_logging, setup_torch

    setup_logging()
    setup_torch(args.threads)
    options = {} if args.num_heads is None else {"num_heads": args.num_heads}
    model = convert_released(args.checkpoint, args.kind, **options)
    model.save_pretrained(args.out)
    print(json.dumps({"checkpoint": args.checkpoint, "kind": args.kind, "out": args.out,
                      "tensors": len(model.state_dict()), "config": dict(model.config)}))


def cmd_released_t2i_sample(args):
    """One image per caption of an evaluation split from the imported released T2I model: its
    split's T5 v1.1 XXL caption tokens (`--encoder`, short captions), at the square size it was
    trained for with that size and aspect ratio 1 as its micro-conditions, and the official
    sampler's settings (config block `released.t2i_sample`)."""
    from lumos.components.vae import load_vae, vae_factor
    from lumos.tasks.t2i import load_captions
    from lumos.models.dit import micro_condition_inputs
    from lumos.released import check_text_width, t2i_latent_shape
    from lumos.sample import generate, load_model

    cfg, device = setup(args)
    settings = cfg["released.t2i_sample"]
    size = settings["image_size"]
    tokens, mask = load_captions(args.text, args.encoder, "short", args.n_samples)
    model = load_model(args.model)
    check_text_width(model, tokens, args.encoder)
    codec = load_vae(cfg["components.vae"], device)
    generate(model, codec, tokens, mask, t2i_latent_shape(model, vae_factor(codec.vae), size), args.out, args.work,
             settings, cfg["seed"], device, args.part, args.parts, model_kwargs=micro_condition_inputs(size, size))


def register(add):
    req = {"required": True}
    add("import-released", cmd_import_released, config=False,
        checkpoint=("the released .pth (config key released.i2i / released.t2i will point at it)", req),
        kind=("i2i | t2i", {"required": True, "choices": ["i2i", "t2i"]}),
        out=("output LumosDiT folder (save_pretrained)", req),
        num_heads=("attention heads, when the depth / width is not a DiT size (DiT-XL/2: 16)",
                   {"type": int, "default": None}),
        threads=("torch CPU threads (default: all)", {"type": int, "default": None}))
    add("released-t2i-sample", cmd_released_t2i_sample, model=("the imported released T2I model folder", req),
        text=("the evaluation split's text features holding --encoder's tokens", req),
        encoder=("the text encoder whose tokens to read (components.<name>)", {"default": "t5_released"}),
        n_samples=("images to make (default: one per caption)", {"type": int, "default": None}),
        out=("output PNG folder", req), work=("resumable work folder", req), parallel=True)

"""Component commands: train the small VAE, encoders, FID and FVD networks and text encoders (tiny/smoke)."""

from __future__ import annotations

from pathlib import Path

from lumos.commands import setup, write_json
from lumos.components import COMPONENTS
TRAINED_AS = {"dino_small": "dino", "dino_large": "dino", "dino_long": "dino"}  # DINO-style ViTs: Figure S3's sizes, a lever


def cmd_train_component(args):
    """Train a small pretrained component (VAE, DINO/MoCo-style ViT, FID classifier) and save it."""
    from lumos.data.shards import read_images, read_records

    cfg, device = setup(args)
    spec = cfg[f"components.{args.component}"]
    if not spec.get("train"):
        raise SystemExit(f"error: components.{args.component} has no train block; it is loaded from '{spec['pretrained']}'")
    t, seed = spec["train"], cfg["seed"]
    if args.component == "video_net":  # streams its clips itself
        from lumos.components.video_net import train_video_net

        write_json(Path(args.out) / "train_metrics.json", train_video_net(args.data, t, args.out, seed))
        return
    images = read_images(args.data) if args.component != "t5" else None
    if args.component == "vae":
        from lumos.components.vae import train_vae

        metrics = train_vae(images, t, args.out, seed, device)
    elif TRAINED_AS.get(args.component, args.component) == "dino":
        from lumos.components.encoders import train_dino

        metrics = train_dino(images, t, args.out, seed)
    elif args.component == "moco":
        from lumos.components.encoders import train_moco

        metrics = train_moco(images, t, args.out, seed)
    elif args.component == "t5":  # randomly initialised with the seed (the data is not read)
        from lumos.components.text import train_t5

        metrics = train_t5({"d_model": t["d_model"], "num_layers": t["layers"], "num_heads": t["heads"],
                            "d_kv": t["d_kv"], "d_ff": t["d_ff"]}, args.out, seed)
    elif args.component == "clip":
        from lumos.components.text import train_clip

        clip_cfg = {**t, **{k: spec[k] for k in ("max_length", "input_size", "mean", "std") if k in spec}}
        metrics = train_clip(images, [r["short_caption"] for r in read_records(args.data)], clip_cfg, args.out, seed)
    else:
        from lumos.components.classifier import train_fid_net

        metrics = train_fid_net(images, read_records(args.data), t, args.out, seed)
    write_json(Path(args.out) / "train_metrics.json", metrics)


def register(add):
    req = {"required": True}
    add("train-component", cmd_train_component,
        component=(" | ".join(COMPONENTS), {"required": True, "choices": COMPONENTS}),
        data=("training split folder", req), out=("output model folder (HF format)", req))

"""Feature commands: VAE latents, encoder tokens and caption tokens, cached per split."""

from __future__ import annotations

from lumos.commands import setup


def cmd_features(args):
    """Extract VAE latents and encoder tokens of a split into feature shards (the config's seed
    seeds each row's subset hash: Figure 2b's nested pool subsets)."""
    from lumos.features import extract_features

    cfg, device = setup(args)
    components = {name: cfg[f"components.{name}"] for name in ["vae", *args.encoders]}
    patch = cfg["features.patch_tokens"] or args.patch_tokens
    extract_features(args.data, args.out, components, args.encoders, cfg["features.batch_size"],
                     patch, device, args.part, args.parts, seed=cfg["seed"])


def cmd_text_features(args):
    """Encode a captioned split's short and long captions with the text encoders into shards."""
    from lumos.features import extract_text_features

    cfg, device = setup(args)
    components = {name: cfg[f"components.{name}"] for name in args.encoders}
    reuse = (args.reuse_text, args.reuse_data) if args.reuse_text else None
    extract_text_features(args.data, args.out, components, args.encoders, cfg["features.batch_size"],
                          device, args.part, args.parts, reuse=reuse)


def cmd_gather(args):
    """Join the output folders of a task's parallel jobs (feature or sample parts) into one."""
    from lumos.utils import setup_logging

    setup_logging()
    # torch-free modules: a gather is a local job between the GPU jobs, on the critical path
    if args.kind == "features":
        from lumos.store import gather_parts

        gather_parts(args.parts, args.out)
    else:
        from lumos.utils import gather_pngs

        gather_pngs(args.parts, args.out)


def register(add):
    req = {"required": True}
    add("features", cmd_features, data=("split folder", req), out=("output features folder", req),
        encoders=("vision encoders whose tokens to cache (components.<name>)", {"nargs": "*", "default": []}),
        patch_tokens=("encoders whose patch tokens to cache too (a run's token set needs them)",
                      {"nargs": "*", "default": []}),
        parallel=True)
    add("text-features", cmd_text_features, data=("captioned split folder", req), out=("output folder", req),
        encoders=("text encoders (components.<name>)", {"nargs": "+", "required": True}),
        reuse_text=("for a bucketed curated split: the text features of the same folder curated square, "
                    "whose rows to copy instead of encoding", {"default": None}),
        reuse_data=("the split folder of --reuse-text (its records name the images)", {"default": None}),
        parallel=True)
    add("gather", cmd_gather, config=False, kind=("features | samples", {"required": True, "choices": ["features", "samples"]}),
        parts=("the part folders", {"nargs": "+", "required": True}), out=("the joined folder", req))

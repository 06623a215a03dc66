"""Pretraining commands: train an I2I run, and sample it (one image per eval image)."""

from __future__ import annotations

from lumos.commands import finish_training, optional_path, outputs_of, setup, state_folder, train_outputs


def run_settings(cfg, args):
    """The `RunSettings` of `--run-name` (and `--pool-size`, Figure 2b's ladder)."""
    from lumos.settings import RunSettings

    key = f"pretrain.runs.{args.run_name}"
    return RunSettings.from_config(cfg[key], key).replace(pool_size=args.pool_size)


def model_settings(cfg, args):
    """`pretrain.model` with the run's own `model` block over it (its objective: an objective lever)."""
    from lumos.settings import ModelSettings

    own = cfg[f"pretrain.runs.{args.run_name}"].get("model") or {}
    return ModelSettings.from_config({**cfg["pretrain.model"], **own}, "pretrain.model")


def cmd_pretrain(args):
    """Train one I2I run (resumes from --state after a kill)."""
    from lumos.tasks.i2i import pretrain
    from lumos.settings import TrainSettings

    cfg, device = setup(args)
    run = run_settings(cfg, args)
    model = model_settings(cfg, args)
    if args.cond_dropout is not None:  # a `<run>_drop<P>` run (Figure 12a)
        model = model.replace(cond_dropout=args.cond_dropout)
    # A run's own `train` block overrides pretrain.train key by key (e.g. an ablation's budget).
    train = TrainSettings.from_config({**cfg["pretrain.train"], **cfg[f"pretrain.runs.{args.run_name}"].get("train", {})},
                                      "pretrain.train")
    finish_training(pretrain(args.features, run, model, train, outputs_of(args), state_folder(args, cfg),
                             cfg["seed"], device, stop_after=args.stop_after,
                             snapshot_every=cfg.get("pretrain.snapshot_every")))


def cmd_sample(args):
    """Generate one image per eval image, conditioned on its cached features (read batch by batch).
    The eval split is never subset: a run's pool size only names the model."""
    from lumos.components.vae import load_vae
    from lumos.training.loader import Column
    from lumos.tasks.i2i import load_run_data, untrained_model
    from lumos.sample import generate, load_model

    cfg, device = setup(args)
    run = run_settings(cfg, args)
    # a REPA / REG run samples without its encoder: the eval split's folder holds no tokens of it
    rows = load_run_data(args.features, run.replace(pool_size=None, repa=None, reg=None))
    n = min(rows.sizes[0], args.n_samples or rows.sizes[0])
    model = load_model(args.model, lambda: untrained_model(model_settings(cfg, args), run, rows.latent_shape, rows,
                                                           cfg["seed"]))
    codec = load_vae(cfg["components.vae"], device)
    mask = Column(rows, "cond_mask", n) if run.injection in ("cross_attn", "adaln") else None
    cond = None if run.injection == "none" else Column(rows, "cond", n)  # REPA, REG: unconditional samples
    sample_cfg = {**cfg["sample"], **({"guidance_scale": args.guidance} if args.guidance is not None else {})}
    generate(model, codec, cond, mask, rows.latent_shape, args.out,
             args.work, sample_cfg, cfg["seed"], device, args.part, args.parts, n=n)


def register(add):
    req = {"required": True}
    run = ("pretrain run name (config key pretrain.runs.<run>)", req)
    pool = ("train on the nested subset of N pool images (Figure 2b)", {"type": int, "default": None})
    add("pretrain", cmd_pretrain, run_name=run, pool_size=pool, features=("pool features folder", req),
        state=("resumable state folder (outside declared outputs)", req),
        stop_after=("stop after this many steps (simulates a kill; for tests)", {"type": int, "default": None}),
        cond_dropout=("condition dropout of this run instead of pretrain.model.cond_dropout (Figure 12a)",
                      {"type": float, "default": None}),
        **train_outputs({"out_snapshots": ("EMA snapshots folder (pretrain.snapshot_every; empty without it)",
                                           {"default": None})}))
    add("sample", cmd_sample, run_name=run, pool_size=pool, features=("eval split features folder", req),
        model=("trained model folder, or 'none' for an untrained model", {"required": True, "type": optional_path}),
        n_samples=("images to make (default: one per eval image)", {"type": int, "default": None}),
        guidance=("guidance scale instead of sample.guidance_scale (Figure 12b)", {"type": float, "default": None}),
        out=("output PNG folder", req), work=("resumable work folder", req), parallel=True)

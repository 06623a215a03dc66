"""The `lumos` command line: one subcommand per pipeline step; the Snakemake rules call these.

Each command takes `--cfg JSON`, the slice of the validated workflow config it needs (the rule
builds it), so Snakemake reruns a step exactly when its own settings change.

    python -m lumos --help
    python -m lumos <command> --help
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

EXIT_RESUMABLE = 75  # EX_TEMPFAIL: stopped after a checkpoint; run again to resume


def _setup(args) -> dict:
    from lumos.utils import resolve_device, setup_logging, setup_torch

    setup_logging()
    cfg = json.loads(args.cfg) if getattr(args, "cfg", None) else {}
    setup_torch(args.threads, cfg.get("seed", 0))
    cfg["_device"] = resolve_device(cfg.get("device", "auto"))
    return cfg


def _write_json(path, obj) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=1))


def cmd_data(args):
    """Build one data split (Shapes world or curated folder)."""
    from lumos.data.build import build_shapes_split, curate_folder

    cfg = _setup(args)
    data = cfg["data"]
    split = data["splits"][args.split]
    buckets = [tuple(b) for b in data.get("buckets") or []]  # aspect-ratio buckets (Table S1 stage 4)
    if data["source"] == "shapes":
        build_shapes_split(args.split, split, data["image_size"], cfg["seed"], data.get("shard_size", 5000), args.out,
                           buckets=buckets)
    else:
        folder = data.get("paths", {}).get(args.split)
        if not folder:
            raise SystemExit(f"error: data.source is 'paths' but config key data.paths.{args.split} is not set")
        curate_folder(args.split, folder, split["n"], data["image_size"], data.get("curation", {}).get("min_side", 512),
                      data.get("shard_size", 5000), args.out, buckets=buckets)


def cmd_train_component(args):
    """Train a small pretrained component (VAE, DINO/MoCo-style ViT, FID classifier) and save it."""
    from lumos.data.shards import read_images, read_records

    cfg = _setup(args)
    spec = cfg["spec"]
    if not spec.get("train"):
        raise SystemExit(f"error: components.{args.component} has no train block; it is loaded from '{spec['pretrained']}'")
    images = read_images(args.data) if args.component != "t5" else None
    t, seed = spec["train"], cfg["seed"]
    if args.component == "vae":
        from lumos.components.vae import train_vae

        metrics = train_vae(images, t, args.out, seed, cfg["_device"])
    elif args.component == "dino":
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
    _write_json(Path(args.out) / "train_metrics.json", metrics)


def cmd_features(args):
    """Extract VAE latents and encoder tokens of a split into feature shards."""
    from lumos.features import extract_features

    cfg = _setup(args)
    extract_features(args.data, args.out, cfg["components"], cfg["encoders"], cfg["features"]["batch_size"],
                     cfg["features"].get("patch_tokens", False), cfg["_device"], args.part, args.parts)


def cmd_text_features(args):
    """Encode a captioned split's short and long captions with the text encoders into shards."""
    from lumos.features import extract_text_features

    cfg = _setup(args)
    reuse = (args.reuse_text, args.reuse_data) if args.reuse_text else None
    extract_text_features(args.data, args.out, cfg["components"], cfg["encoders"], cfg["features"]["batch_size"],
                          cfg["_device"], args.part, args.parts, reuse=reuse)


def cmd_pretrain(args):
    """Train one I2I run (resumes from --state after a kill)."""
    from lumos.pretrain import pretrain
    from lumos.train import state_key

    cfg = _setup(args)
    # The state folder is keyed by the run's settings and its input features, so a retry of the same
    # job resumes while a changed config or new features start afresh.
    key = state_key({k: cfg[k] for k in ("run", "model", "train", "seed")}, Path(args.features) / "index.json")
    summary = pretrain(args.features, cfg["run"], cfg["model"], cfg["train"], args.out, str(Path(args.state) / key),
                       cfg["seed"], cfg["_device"], stop_after=args.stop_after)
    print(json.dumps(summary))
    if "stopped_at" in summary:  # checkpointed on request: fail this attempt so it is retried/requeued
        sys.exit(EXIT_RESUMABLE)


def cmd_finetune(args):
    """Fine-tune a T2I model from an I2I prior (or from scratch) on the pair set; resumable."""
    from lumos.finetune import finetune
    from lumos.train import state_key

    cfg = _setup(args)
    prior = None if args.prior == "none" else args.prior
    key = state_key({k: cfg.get(k) for k in ("t2i", "model", "seed", "steps")}
                    | {"name": args.ft, "prior": prior, "init": args.init}, Path(args.features) / "index.json")
    summary = finetune(args.features, args.text, args.ft, prior, cfg["model"], cfg["t2i"], args.out,
                       str(Path(args.state) / key), cfg["seed"], cfg["_device"], stop_after=args.stop_after,
                       steps=cfg.get("steps"), init_dir=args.init)
    print(json.dumps(summary))
    if "stopped_at" in summary:
        sys.exit(EXIT_RESUMABLE)


def _t2i_model(args, cfg, text_dim: int, n_tokens: int, latent_shape):
    """The fine-tuned model of --model, or an untrained T2I model ('none': the sanity row)."""
    from lumos.finetune import make_t2i_model
    from lumos.sample import load_model

    def fresh():
        return make_t2i_model(None, cfg["model"], latent_shape, text_dim, n_tokens, 0.0, cfg["seed"])[0]

    return load_model(None if args.model == "none" else args.model, fresh)


def cmd_t2i_sample(args):
    """Generate one image per caption of an eval split (short or long captions) from cached text features."""
    from lumos.components.vae import load_vae
    from lumos.features import feature_index
    from lumos.finetune import load_captions
    from lumos.sample import generate

    cfg = _setup(args)
    n = cfg.get("n_samples")
    tokens, mask = load_captions(args.text, cfg["text"], args.captions, n)
    latent_shape = tuple(feature_index(args.features)["latent_shape"])
    model = _t2i_model(args, cfg, tokens.shape[-1], tokens.shape[1], latent_shape)
    generate(model, load_vae(cfg["vae"], cfg["_device"]), tokens, mask, latent_shape, args.out, args.work,
             cfg["sample"], cfg["seed"], cfg["_device"], args.part, args.parts)


def cmd_t2i_bench(args):
    """Run the GenEval or DPG-Bench analogue on a T2I model (or on ground-truth renders)."""
    from lumos.eval.t2i import run_benchmark

    cfg = _setup(args)
    common = dict(seed=cfg["seed"], image_size=cfg["image_size"], device=cfg["_device"])
    if args.model == "ground_truth":
        run_benchmark(args.bench, cfg["bench"], args.out, ground_truth=True, **common)
        return
    from lumos.components.text import load_text_encoder
    from lumos.components.vae import load_vae
    from lumos.features import feature_index

    text_encoder = load_text_encoder(cfg["text_spec"], cfg["text"], cfg["_device"])
    latent_shape = tuple(feature_index(args.features)["latent_shape"])
    model = _t2i_model(args, cfg, text_encoder.dim, text_encoder.max_length, latent_shape)
    run_benchmark(args.bench, cfg["bench"], args.out, model=model, codec=load_vae(cfg["vae"], cfg["_device"]),
                  text_encoder=text_encoder, sample_cfg=cfg["sample"], work_dir=args.work, **common)


def cmd_clip_score(args):
    """Mean CLIP score of a sample folder against the captions of the split it was generated from."""
    from lumos.components.text import load_clip_scorer
    from lumos.data.shards import read_records
    from lumos.sample import read_pngs

    cfg = _setup(args)
    images = read_pngs(args.samples)
    texts = [r[f"{args.captions}_caption"] for r in read_records(args.data, len(images))]
    scorer = load_clip_scorer(cfg["clip"], cfg["_device"])
    scores = scorer.clip_score(images, texts)
    result = {"clip_score": float(scores.mean()), "n": int(len(scores)), "captions": args.captions,
              "scorer": cfg["clip"]["pretrained"]}
    _write_json(args.out, result)
    print(json.dumps(result))


def cmd_sample(args):
    """Generate one image per eval image, conditioned on its cached features."""
    from lumos.components.vae import load_vae
    from lumos.pretrain import build_model, cond_shape, load_run_data
    from lumos.sample import generate, load_model

    cfg = _setup(args)
    run = cfg["run"]
    latents, cond, mask = load_run_data(args.features, run)
    n = min(len(latents), cfg.get("n_samples") or len(latents))

    def fresh():
        import torch

        torch.manual_seed(cfg["seed"])
        return build_model(cfg["model"], run, latents.shape[1:], *cond_shape(cond))

    model = load_model(None if args.model == "none" else args.model, fresh)
    codec = load_vae(cfg["vae"], cfg["_device"])
    generate(model, codec, cond[:n], None if mask is None else mask[:n], tuple(latents.shape[1:]), args.out,
             args.work, cfg["sample"], cfg["seed"], cfg["_device"], args.part, args.parts)


def cmd_gather(args):
    """Join the output folders of a task's parallel jobs (feature or sample parts) into one."""
    from lumos.utils import setup_logging

    setup_logging()
    if args.kind == "features":
        from lumos.features import gather_parts

        gather_parts(args.parts, args.out)
    else:
        from lumos.sample import gather_pngs

        gather_pngs(args.parts, args.out)


def cmd_fid_reference(args):
    """FID reference statistics of a data split, in the configured feature space."""
    from lumos.data.shards import read_images
    from lumos.eval.fid import array_features, load_extractor, save_statistics, statistics

    cfg = _setup(args)
    ext = load_extractor(cfg["extractor"], cfg.get("fid_net"), cfg["_device"])
    stats = statistics(array_features(read_images(args.data), ext, cfg.get("batch_size", 250)))
    save_statistics(args.out, stats)


def cmd_fid(args):
    """FID of a sample folder (or a real split, for the floor row) against reference statistics."""
    from lumos.data.shards import read_images
    from lumos.eval.fid import (array_features, folder_features, frechet_distance, load_extractor,
                                load_statistics, statistics)

    cfg = _setup(args)
    ext = load_extractor(cfg["extractor"], cfg.get("fid_net"), cfg["_device"])
    bs = cfg.get("batch_size", 250)
    feats = folder_features(args.samples, ext, bs) if args.samples else array_features(read_images(args.data), ext, bs)
    ref = load_statistics(args.reference)
    fid = frechet_distance(statistics(feats), ref)
    result = {"run": args.run, "split": args.split, "fid": fid, "n_samples": int(len(feats)),
              "n_reference": int(ref["n"]), "extractor": ext.name}
    _write_json(args.out, result)
    print(json.dumps(result))


def _write_table(df, csv: str, md: str, markdown: str) -> None:
    """A table as CSV and Markdown (folders created), echoed to the log."""
    Path(csv).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(csv, index=False)
    Path(md).write_text(markdown)
    print(df.to_string(index=False))


def cmd_table1(args):
    """Write Table 1 (CSV + Markdown) and the eval | Lumos-I2I | RCG sample grid."""
    from lumos.data.shards import read_images
    from lumos.report.table1 import build_table1, to_markdown, write_grid
    from lumos.sample import read_pngs

    cfg = _setup(args)
    df = build_table1(args.fid, cfg["preset"])
    _write_table(df, args.csv, args.md, to_markdown(df))
    n = cfg.get("grid_images", 32)
    cols = dict(kv.split("=", 1) for kv in args.grid_samples)
    write_grid(read_images(args.grid_data, n), {k: read_pngs(v, n) for k, v in cols.items()}, args.grid, n)


T2I_GRID_PROMPTS = [  # the Figure 1a / S4 role: a fixed prompt list shown under the samples
    "a red circle", "a blue square", "a green triangle", "a yellow diamond",
    "a purple circle and an orange square", "a red triangle left of a blue circle",
    "a photo of two green squares", "a pink cross above a cyan diamond",
]


def cmd_export_pipeline(args):
    """Save a fine-tuned T2I model as a diffusers pipeline (`LumosT2IPipeline.from_pretrained(folder)`)."""
    from lumos.pipelines import assemble_t2i_pipeline

    cfg = _setup(args)
    # The VAE's own config holds the scaling factor unless the config overrides it (as load_vae reads it).
    pipe = assemble_t2i_pipeline(args.model, cfg["vae"]["pretrained"], cfg["text_spec"]["pretrained"],
                                 sampler=cfg["sample"]["sampler"], scaling_factor=cfg["vae"].get("scaling_factor"))
    pipe.save_pretrained(args.out)
    print(f"saved {type(pipe).__name__} to {args.out}")


def _pipeline_sampler(pipeline_dir: str, sample_cfg: dict, device):
    """`generate(prompts, seed) -> uint8 (n, H, W, 3)` from an exported T2I pipeline, with the
    configured sampler steps and guidance."""
    import torch

    from lumos.pipelines import LumosT2IPipeline

    pipe = LumosT2IPipeline.from_pretrained(pipeline_dir).to(device)

    def generate(prompts: list[str], seed: int):
        return pipe(prompts, num_inference_steps=sample_cfg["steps"], guidance_scale=sample_cfg["guidance_scale"],
                    generator=torch.Generator().manual_seed(seed), output_type="np").images

    return generate


def cmd_t2i_grid(args):
    """Samples for a fixed prompt list from an exported pipeline, prompts under the images."""
    from lumos.viz import save_grid

    cfg = _setup(args)
    generate = _pipeline_sampler(args.pipeline, cfg["sample"], cfg["_device"])
    per = cfg.get("images_per_prompt", 4)
    images, labels = [], []
    for i, prompt in enumerate(T2I_GRID_PROMPTS):
        images += list(generate([prompt] * per, i))
        labels += [prompt] + [""] * (per - 1)
    save_grid(args.out, images, ncols=per * 2, scale=4, labels=labels)


def cmd_official_images(args):
    """Generate images for the official GenEval / DPG-Bench evaluator, in its folder layout."""
    from lumos.eval.official import write_dpg_images, write_geneval_images

    cfg = _setup(args)
    generate = _pipeline_sampler(args.pipeline, cfg["sample"], cfg["_device"])
    if args.bench == "geneval":
        write_geneval_images(generate, cfg["repo"], args.out, cfg.get("images_per_prompt", 4))
    else:
        write_dpg_images(generate, cfg["repo"], args.out)


def cmd_official_scores(args):
    """Parse the official evaluator's output into scores.json (the analogue's format)."""
    from lumos.eval.official import parse_dpg_report, parse_geneval_results

    _setup(args)
    scores = parse_geneval_results(args.results) if args.bench == "geneval" else parse_dpg_report(args.results)
    scores.update(benchmark=args.bench, source="official evaluator")
    _write_json(args.out, scores)
    print(json.dumps(scores))


def cmd_table2(args):
    """Write Table 2 (T2I FID, short vs long captions) as CSV + Markdown."""
    from lumos.report.table2 import build_table2, to_markdown

    cfg = _setup(args)
    df = build_table2(args.short, args.long, args.untrained, args.real, args.summary, cfg["preset"])
    _write_table(df, args.csv, args.md, to_markdown(df))


def cmd_table3(args):
    """Write Table 3 (GenEval + DPG-Bench) as CSV + Markdown."""
    from lumos.report.table3 import build_table3, to_markdown

    cfg = _setup(args)
    measured = {}
    for item in args.row:  # LABEL=GENEVAL_JSON,DPG_JSON[,MODEL_DIR]
        label, paths = item.split("=", 1)
        parts = paths.split(",")
        measured[label] = (parts[0], parts[1], parts[2] if len(parts) > 2 else None)
    df = build_table3(measured, cfg["preset"])
    _write_table(df, args.csv, args.md, to_markdown(df, cfg.get("geneval_source", "Shapes-world analogue"),
                                                     cfg.get("dpg_source", "Shapes-world analogue")))


def cmd_figure(args):
    """Write one of the T2I figures (PNG + CSV) from metric json files."""
    from lumos.report.figures import build_figure

    _setup(args)
    runs = dict(kv.split("=", 1) for kv in args.runs)
    print(build_figure(args.figure, args.metrics, runs, args.png, args.csv).to_string(index=False))


def _with_preset(cfg: dict) -> dict:
    """`cfg` over the full config of its preset (tiny by default): diagnostics run by hand need no --cfg."""
    from lumos.config import load_config

    return {**load_config(cfg.get("preset", "tiny")), **cfg}


def cmd_probe(args):
    """Linear probes: how well an encoder's CLS feature predicts the largest object's shape and colour."""
    from lumos.components.encoders import load_encoder
    from lumos.data.shards import read_images, read_records
    from lumos.eval.diagnose import largest_object_attributes, linear_probe

    cfg = _with_preset(_setup(args))
    images, records = read_images(args.data), read_records(args.data)
    if "scene" not in records[0]:
        raise SystemExit(f"error: {args.data} has no Shapes-world ground truth to probe against")
    targets = largest_object_attributes(records)
    feats = {"raw pixels": images.reshape(len(images), -1).astype("float32")}
    for name in args.encoder:
        cls, _ = load_encoder(cfg["components"][name], name, cfg["_device"])(images)
        feats[f"{name} CLS"] = cls.float().cpu().numpy()
    rows = []
    for what, x in feats.items():
        for attribute, y in targets.items():
            r = linear_probe(x, y, seed=cfg["seed"])
            rows.append({"features": what, "attribute": attribute, **r})
            print(f"{what:>12} -> {attribute:<6} accuracy {r['accuracy']:.3f}  (chance {r['chance']:.3f}, "
                  f"majority {r['majority_baseline']:.3f}, {r['n_test']} held out)")
    if args.out:
        _write_json(args.out, rows)


def cmd_class_grid(args):
    """Sample a class-to-image prior for every (shape, colour) class: a grid with a row per shape and a
    column per colour, and how often the Shapes classifier finds the requested colour, shape and pair."""
    from PIL import Image

    from lumos.components.classifier import load_fid_net
    from lumos.components.vae import load_vae
    from lumos.eval.diagnose import attributes_present, class_grid, class_samples
    from lumos.sample import load_model

    cfg = _with_preset(_setup(args))
    model = load_model(args.model).to(cfg["_device"]).eval()
    if model.config.injection != "class":
        raise SystemExit(f"error: {args.model} is a '{model.config.injection}' model; class-grid needs a class prior")
    c, s = model.config.in_channels, model.config.sample_size
    codec = load_vae(cfg["components"]["vae"], cfg["_device"])
    images, shape, colour = class_samples(model, codec, (c, s, s), cfg["sample"]["guidance_scale"],
                                          cfg["sample"]["steps"], cfg["seed"], repeats=args.repeats)
    grid = class_grid(images)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(args.out)
    net = load_fid_net(cfg["components"]["fid_net"], cfg["_device"])
    scores = attributes_present(net, images, shape, colour)
    # the same model untrained (noise images): what the classifier finds by chance
    fresh = type(model).from_config(model.config).to(cfg["_device"]).eval()
    noise = class_samples(fresh, codec, (c, s, s), cfg["sample"]["guidance_scale"], cfg["sample"]["steps"],
                          cfg["seed"], repeats=args.repeats)[0]
    chance = attributes_present(net, noise, shape, colour)
    print(f"wrote {args.out}; requested attribute present in {len(images)} samples: "
          + ", ".join(f"{k} {v:.3f} (untrained model: {chance[k]:.3f})" for k, v in scores.items()))
    if args.scores:
        _write_json(args.scores, {"model": args.model, "samples": len(images), **scores, "untrained": chance})


def cmd_vae_ceiling(args):
    """How much of the largest object survives the VAE round trip: the Shapes classifier's colour /
    shape / pair detection on real images and on their reconstructions, and the PSNR."""
    from lumos.components.classifier import load_fid_net
    from lumos.components.vae import load_vae
    from lumos.data.shards import read_images, read_records
    from lumos.eval.diagnose import vae_ceiling

    cfg = _with_preset(_setup(args))
    records = read_records(args.data, limit=args.limit)
    if "scene" not in records[0]:
        raise SystemExit(f"error: {args.data} has no Shapes-world ground truth to score against")
    r = vae_ceiling(load_vae(cfg["components"]["vae"], cfg["_device"]),
                    load_fid_net(cfg["components"]["fid_net"], cfg["_device"]),
                    read_images(args.data, limit=args.limit), records)
    for what in ("real", "reconstruction"):
        print(f"{what:>14}: " + ", ".join(f"{k} present {v:.3f}" for k, v in r[what].items()))
    print(f"reconstruction PSNR {r['psnr_db']:.2f} dB over {r['n']} images")
    if args.out:
        _write_json(args.out, r)


def cmd_memorise(args):
    """Train the class-to-image prior on one image per class of a labelled split and sample every
    class: does the DiT redraw the shapes it was shown (latent MSE, colour / shape / pair present)?"""
    from lumos.components.classifier import load_fid_net
    from lumos.components.vae import load_vae
    from lumos.data.shards import read_images, read_records
    from lumos.eval.diagnose import memorisation

    cfg = _with_preset(_setup(args))
    records = read_records(args.data)
    if "scene" not in records[0]:
        raise SystemExit(f"error: {args.data} has no Shapes-world ground truth to score against")
    train = {**cfg["pretrain"]["train"], "steps": args.steps, "lr": args.lr,
             "checkpoint_every": args.steps, "log_every": max(1, args.steps // 10)}
    r = memorisation(load_vae(cfg["components"]["vae"], cfg["_device"]),
                     load_fid_net(cfg["components"]["fid_net"], cfg["_device"]), read_images(args.data), records,
                     cfg["pretrain"]["model"], train, args.work, cfg["sample"]["guidance_scale"],
                     cfg["sample"]["steps"], seed=cfg["seed"], device=cfg["_device"], grid=args.grid)
    print(f"{r['classes']} classes, one image each, {r['steps']} steps at lr {r['lr']:g} ({r['seconds']:.0f} s); "
          f"samples' latent MSE to their training latent {r['trained']['latent_mse']:.4f} "
          f"(always the mean latent: {r['mean_latent_mse']:.4f})")
    for what in ("trained", "untrained", "reconstruction"):
        print(f"{what:>14}: " + ", ".join(f"{k} present {r[what][k]:.3f}" for k in ("colour", "shape", "pair")))
    if args.out:
        _write_json(args.out, r)


def cmd_bench(args):
    """Print throughput numbers: tiny models on CPU (cached vs online features, sampling), or with
    --gpu the paper-scale DiT (images/s, peak memory, MFU, DPM-Solver++ sampling)."""
    if args.gpu:
        from lumos.bench_gpu import run_gpu_benchmark

        return run_gpu_benchmark(args)
    from lumos.bench import run_benchmarks

    run_benchmarks(args)


def launch(argv: list[str]) -> None:
    """`lumos launch --processes N [--nodes M] -- <command> ...`: run a command on N processes.

    One process: the command runs here. More: `accelerate launch` starts one process per GPU;
    on several nodes (one launcher per node, started by srun) the rendezvous comes from SLURM's
    environment (node rank SLURM_NODEID, the first host of SLURM_JOB_NODELIST). SIGUSR1/SIGTERM
    are forwarded to every worker so they checkpoint before a time limit or pre-emption.
    """
    p = argparse.ArgumentParser(prog="lumos launch", description=launch.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", type=int, default=1, help="total processes (= GPUs) over all nodes")
    p.add_argument("--nodes", type=int, default=1, help="nodes (one launcher per node)")
    p.add_argument("--port", type=int, default=29500 + int(os.environ.get("SLURM_JOB_ID", "0")) % 1000)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the lumos command and its options")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given after --")
    if args.processes <= 1:
        return main(command)
    import torch

    if torch.cuda.is_available():
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", str(args.processes), "--num_machines", str(args.nodes)]
    elif args.nodes == 1:  # CPU (tests, CI): torchrun's processes talk over gloo; accelerate picks it up
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.processes),
               "--master_port", str(args.port)]
    else:
        sys.exit("lumos launch: several nodes need GPUs (no CUDA device here)")
    if args.nodes > 1 and torch.cuda.is_available():
        hosts = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]],
                               capture_output=True, text=True, check=True).stdout.split()
        cmd += ["--machine_rank", os.environ.get("SLURM_NODEID", "0"), "--main_process_ip", hosts[0],
                "--main_process_port", str(args.port)]
    cmd += ["-m", "lumos.cli", *command]  # torchrun and accelerate launch both take `-m module args`
    print("lumos launch:", " ".join(cmd), file=sys.stderr, flush=True)
    child = subprocess.Popen(cmd, start_new_session=True)
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, lambda s, _f: os.killpg(child.pid, s))
    sys.exit(child.wait())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lumos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, fn, **paths):
        sp = sub.add_parser(name, help=fn.__doc__, description=fn.__doc__)
        sp.add_argument("--cfg", default="{}", help="JSON: the config slice this step needs")
        sp.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
        for flag, (help_, kw) in paths.items():
            sp.add_argument(f"--{flag.replace('_', '-')}", help=help_, **kw)
        sp.set_defaults(func=fn)
        return sp

    req = {"required": True}
    add("data", cmd_data, split=("split name, e.g. pool", req), out=("output split folder", req))
    add("train-component", cmd_train_component,
        component=("vae | dino | moco | fid_net | t5 | clip",
                   {"required": True, "choices": ["vae", "dino", "moco", "fid_net", "t5", "clip"]}),
        data=("training split folder", req), out=("output model folder (HF format)", req))
    features = add("features", cmd_features, data=("split folder", req), out=("output features folder", req))
    add("pretrain", cmd_pretrain, features=("pool features folder", req), out=("output run folder", req),
        state=("resumable state folder (outside declared outputs)", req),
        stop_after=("stop after this many steps (simulates a kill; for tests)", {"type": int, "default": None}))
    sample = add("sample", cmd_sample, run=("run name", req), features=("eval split features folder", req),
        model=("trained model folder, or 'none' for an untrained model", req), out=("output PNG folder", req),
        work=("resumable work folder", req))
    probe = add("probe", cmd_probe, data=("labelled Shapes-world split folder", req),
                out=("optional JSON of the probe results", {"default": None}))
    probe.add_argument("--encoder", nargs="*", default=["dino", "moco"], help="components to probe")
    grid = add("class-grid", cmd_class_grid, model=("class-to-image prior folder", req), out=("output PNG", req),
               scores=("optional JSON of the attribute scores", {"default": None}))
    grid.add_argument("--repeats", type=int, default=4, help="samples per class (seeds) for the scores")
    ceiling = add("vae-ceiling", cmd_vae_ceiling, data=("labelled Shapes-world split folder", req),
                  out=("optional JSON of the results", {"default": None}))
    ceiling.add_argument("--limit", type=int, default=1000, help="images to round-trip")
    memorise = add("memorise", cmd_memorise, data=("labelled Shapes-world split folder", req),
                   work=("folder for the model it trains", {"default": "results/diagnostics/memorise"}),
                   out=("optional JSON of the results", {"default": None}),
                   grid=("optional PNG: each training image beside its class's sample", {"default": None}))
    memorise.add_argument("--steps", type=int, default=2000, help="optimiser steps")
    memorise.add_argument("--lr", type=float, default=3e-3, help="learning rate")
    text_features = add("text-features", cmd_text_features, data=("captioned split folder", req),
                        out=("output folder", req),
                        reuse_text=("for a bucketed curated split: the text features of the same folder "
                                    "curated square, whose rows to copy instead of encoding", {"default": None}),
                        reuse_data=("the split folder of --reuse-text (its records name the images)",
                                    {"default": None}))
    add("finetune", cmd_finetune, ft=("fine-tune name <prior>-<t5|clip>-<short|long|mixed>-n<noise %>", req),
        prior=("prior model folder, or 'none' (from scratch)", req), features=("pair-set features folder", req),
        text=("pair-set text features folder", req), out=("output run folder", req),
        state=("resumable state folder (outside declared outputs)", req),
        stop_after=("stop after this many steps (simulates a kill; for tests)", {"type": int, "default": None}),
        init=("continue this earlier-stage T2I model folder (Table S1 stages) instead of the prior",
              {"default": None}))
    t2i_sample = add("t2i-sample", cmd_t2i_sample, model=("fine-tuned model folder, or 'none' (untrained)", req),
                     features=("features folder (for the latent shape)", req), text=("eval split text features", req),
                     out=("output PNG folder", req), work=("resumable work folder", req))
    t2i_sample.add_argument("--captions", choices=["short", "long"], required=True, help="which captions to use")
    bench = add("t2i-bench", cmd_t2i_bench, model=("model folder, 'none' (untrained) or 'ground_truth'", req),
                features=("features folder (for the latent shape)", {"default": None}), out=("output folder", req),
                work=("resumable work folder", {"default": None}))
    bench.add_argument("--bench", choices=["geneval", "dpg"], required=True, help="which benchmark analogue")
    clip_score = add("clip-score", cmd_clip_score, samples=("sample PNG folder", req),
                     data=("the split whose captions the samples were generated from", req), out=("output .json", req))
    clip_score.add_argument("--captions", choices=["short", "long"], required=True, help="which captions")
    add("fid-reference", cmd_fid_reference, data=("reference split folder", req), out=("output .npz", req))
    add("fid", cmd_fid, run=("run name", req), split=("eval split", req), reference=("reference statistics .npz", req),
        samples=("sample PNG folder", {"default": None}), data=("or a real split folder (floor row)", {"default": None}),
        out=("output .json", req))
    add("table1", cmd_table1, fid=("FID json files", {"nargs": "+", "required": True}), csv=("output CSV", req),
        md=("output Markdown", req), grid=("output PNG grid", req), grid_data=("eval split folder", req),
        grid_samples=("NAME=FOLDER sample folders", {"nargs": "+", "required": True}))
    add("export-pipeline", cmd_export_pipeline, model=("fine-tuned model folder", req), out=("pipeline folder", req))
    add("t2i-grid", cmd_t2i_grid, pipeline=("exported pipeline folder", req), out=("output PNG", req))
    official = add("official-images", cmd_official_images, pipeline=("exported T2I pipeline folder", req),
                   out=("image folder in the evaluator's layout", req))
    official.add_argument("--bench", choices=["geneval", "dpg"], required=True)
    official = add("official-scores", cmd_official_scores, results=("evaluator output file", req),
                   out=("output scores.json", req))
    official.add_argument("--bench", choices=["geneval", "dpg"], required=True)
    add("table2", cmd_table2, short=("FID json, short captions", req), long=("FID json, long captions", req),
        untrained=("FID json of the untrained model", req), real=("FID json of the real floor", req),
        summary=("train_summary.json of the fine-tune", req), csv=("output CSV", req), md=("output Markdown", req))
    add("table3", cmd_table3, row=("LABEL=GENEVAL_JSON,DPG_JSON[,MODEL_DIR]", {"nargs": "+", "required": True}),
        csv=("output CSV", req), md=("output Markdown", req))
    figure = add("figure", cmd_figure, metrics=("metric json files", {"nargs": "+", "required": True}),
                 runs=("LABEL=FINETUNE pairs", {"nargs": "+", "required": True}), png=("output PNG", req),
                 csv=("output CSV", req))
    figure.add_argument("--figure", choices=["fig2a", "figS1", "fig2b", "fig8", "fig11"], required=True)
    for sp in (features, text_features, sample, t2i_sample):
        sp.add_argument("--part", type=int, default=0, help="this job's index among --parts parallel jobs")
        sp.add_argument("--parts", type=int, default=1, help="number of parallel jobs sharing the work")
    gather = sub.add_parser("gather", help=cmd_gather.__doc__, description=cmd_gather.__doc__)
    gather.add_argument("--kind", choices=["features", "samples"], required=True)
    gather.add_argument("--parts", nargs="+", required=True, help="the part folders")
    gather.add_argument("--out", required=True, help="the joined folder")
    gather.set_defaults(func=cmd_gather)
    sub.add_parser("launch", help="run a command on one process per GPU (see `lumos launch --help`)", add_help=False)
    bench = add("bench", cmd_bench)
    bench.add_argument("--quick", action="store_true", help="fewer iterations (for a smoke check)")
    bench.add_argument("--gpu", action="store_true", help="benchmark the paper-scale DiT on a GPU (lumos/bench_gpu.py)")
    bench.add_argument("--size", default="DiT-XL/2", help="--gpu: DiT size (default DiT-XL/2)")
    bench.add_argument("--steps", type=int, default=50, help="--gpu: timed training steps")
    bench.add_argument("--batch", type=int, default=None, help="--gpu: training batch (default: the largest that fits)")
    bench.add_argument("--sample-batch", type=int, default=256, help="--gpu: images per sampling run")
    bench.add_argument("--device", default=None, help="--gpu: torch device (default cuda if present)")
    return p


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["launch"]:
        return launch(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, FloatingPointError, ValueError, KeyError) as err:
        from lumos.config import ConfigError

        kind = "config error" if isinstance(err, ConfigError) else type(err).__name__
        print(f"lumos {args.command}: {kind}: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

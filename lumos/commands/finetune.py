"""Fine-tuning commands: T2I from an I2I prior, its samples and benchmarks (its pipeline export:
`lumos.commands.export`)."""

from __future__ import annotations

import json
from pathlib import Path

from lumos.commands import finish_training, optional_path, outputs_of, setup, state_folder, train_outputs, write_json


def cmd_finetune(args):
    """Fine-tune a T2I model from an I2I prior (or from scratch) on the pair set; resumable."""
    from lumos.tasks.t2i import finetune
    from lumos.settings import ModelSettings, TrainSettings

    cfg, device = setup(args, preset_keys=("t2i.long_caption_fraction",))
    # stage 1 trains with t2i.train; Table S1's stage k >= 2 with t2i.stages.<k-2>.train
    train_key = "t2i.train" if args.stage == 1 else f"t2i.stages.{args.stage - 2}.train"
    train = TrainSettings.from_config(cfg[train_key], train_key)
    model = ModelSettings.from_config(cfg["pretrain.model"], "pretrain.model")
    snapshot_every = cfg.get("t2i.snapshot_every") if args.out_snapshots else None
    finish_training(finetune(args.features, args.text, args.ft, args.prior, model, train, cfg["t2i.cond_dropout"],
                             outputs_of(args), state_folder(args, cfg), cfg["seed"], device,
                             stop_after=args.stop_after, snapshot_every=snapshot_every, init_dir=args.init,
                             long_fraction=cfg["t2i.long_caption_fraction"]))


def _t2i_model(model_dir, cfg, text_dim: int, n_tokens: int, latent_shape):
    """The fine-tuned model of `model_dir`, or an untrained T2I model (None: the sanity row)."""
    from lumos.tasks.t2i import untrained_t2i_model
    from lumos.sample import load_model
    from lumos.settings import ModelSettings

    model_cfg = ModelSettings.from_config(cfg["pretrain.model"], "pretrain.model")
    return load_model(model_dir, lambda: untrained_t2i_model(model_cfg, latent_shape, text_dim, n_tokens, cfg["seed"]))


def cmd_t2i_sample(args):
    """Generate one image per caption of an eval split (short or long captions) from cached text features."""
    from lumos.components.vae import load_vae
    from lumos.store import feature_index
    from lumos.tasks.t2i import load_captions
    from lumos.sample import generate

    cfg, device = setup(args)
    tokens, mask = load_captions(args.text, args.encoder, args.captions, args.n_samples)
    latent_shape = tuple(feature_index(args.features)["latent_shape"])
    model = _t2i_model(args.model, cfg, tokens.shape[-1], tokens.shape[1], latent_shape)
    generate(model, load_vae(cfg["components.vae"], device), tokens, mask, latent_shape, args.out, args.work,
             cfg["sample"], cfg["seed"], device, args.part, args.parts)


def cmd_t2i_bench(args):
    """Run the GenEval or DPG-Bench analogue on a T2I model (or on ground-truth renders)."""
    from lumos.eval.t2i import run_benchmark

    cfg, device = setup(args)
    common = dict(seed=cfg["seed"], image_size=cfg["data.image_size"], device=device)
    bench_cfg = cfg[f"t2i.eval.{args.bench}"]
    if args.model == "ground_truth":
        run_benchmark(args.bench, bench_cfg, args.out, ground_truth=True, **common)
        return
    from lumos.components.text import load_text_encoder
    from lumos.components.vae import load_vae
    from lumos.store import feature_index

    text_encoder = load_text_encoder(cfg[f"components.{args.encoder}"], args.encoder, device)
    latent_shape = tuple(feature_index(args.features)["latent_shape"])
    model = _t2i_model(optional_path(args.model), cfg, text_encoder.dim, text_encoder.max_length, latent_shape)
    run_benchmark(args.bench, bench_cfg, args.out, model=model, codec=load_vae(cfg["components.vae"], device),
                  text_encoder=text_encoder, sample_cfg=cfg["sample"], work_dir=args.work, **common)


def cmd_clip_score(args):
    """Mean CLIP score of a sample folder against the captions of the split it was generated from."""
    from lumos.components.text import load_clip_scorer
    from lumos.data.shards import read_records
    from lumos.sample import read_pngs

    cfg, device = setup(args)
    images = read_pngs(args.samples)
    texts = [r[f"{args.captions}_caption"] for r in read_records(args.data, len(images))]
    spec = cfg[f"components.{args.scorer}"]
    scores = load_clip_scorer(spec, device).clip_score(images, texts)
    result = {"clip_score": float(scores.mean()), "n": int(len(scores)), "captions": args.captions,
              "scorer": spec["pretrained"]}
    write_json(args.out, result)
    print(json.dumps(result))


def cmd_t2i_grid(args):
    """Samples for a fixed prompt list (`--prompts`: the Shapes-world prompts or the paper's own)
    from an exported pipeline, labels under the images; `--tile-size` shrinks large samples,
    `--scale` enlarges small ones."""
    from lumos.eval.t2i import grid_prompts
    from lumos.pipelines import pipeline_sampler
    from lumos.viz import save_grid, shrink

    cfg, device = setup(args)
    generate = pipeline_sampler(args.pipeline, cfg[args.sample_key], device)
    per = args.images_per_prompt
    images, labels = [], []
    for i, (label, prompt) in enumerate(grid_prompts(args.prompts)):
        images += list(generate([prompt], i, per))  # the prompt encoded once (T5-XXL at paper scale)
        labels += [label] + [""] * (per - 1)
    if args.tile_size:
        images = shrink(images, args.tile_size)
    save_grid(args.out, images, ncols=args.columns or per * 2, scale=1 if args.tile_size else args.scale, labels=labels)


def cmd_official_images(args):
    """Generate images for the official GenEval / DPG-Bench evaluator, in its folder layout, and
    write the side in pixels of one sample as written (DPG-Bench's `--resolution`)."""
    from lumos.eval.official import write_dpg_images, write_geneval_images, written_resolution
    from lumos.pipelines import pipeline_sampler

    cfg, device = setup(args)
    generate = pipeline_sampler(args.pipeline, cfg[args.sample_key], device)
    if args.bench == "geneval":
        write_geneval_images(generate, cfg["t2i.eval.official.geneval_repo"], args.out,
                             cfg["t2i.eval.geneval.images_per_prompt"])
    else:
        write_dpg_images(generate, cfg["t2i.eval.official.dpg_repo"], args.out)
    resolution = written_resolution(args.bench, args.out)
    Path(args.out_resolution).write_text(f"{resolution}\n")
    print(f"{args.bench}: samples of {resolution}x{resolution} px in {args.out}")


def cmd_official_scores(args):
    """Parse the official evaluator's output into scores.json (the analogue's format), after
    checking that it scored every image of the prompt files in the benchmark's repository."""
    from lumos.eval.official import dpg_prompts, geneval_prompts, parse_dpg_report, parse_geneval_results
    from lumos.utils import setup_logging

    setup_logging()
    if args.bench == "geneval":
        scores = parse_geneval_results(args.results, geneval_prompts(args.repo), args.images_per_prompt)
    else:
        scores = parse_dpg_report(args.results, dpg_prompts(args.repo))
    scores.update(benchmark=args.bench, source="official evaluator")
    write_json(args.out, scores)
    print(json.dumps(scores))


def register(add):
    req = {"required": True}
    model = ("fine-tuned model folder, or 'none' (untrained)", {"required": True, "type": optional_path})
    encoder = ("text encoder (components.<name>)", {"choices": ["t5", "clip"], "required": True})
    bench = ("which benchmark", {"choices": ["geneval", "dpg"], "required": True})
    sample_key = ("config block of the sampling settings: sample, or released.t2i_sample for the released T2I "
                  "model", {"default": "sample"})
    add("finetune", cmd_finetune, ft=("fine-tune name <prior>-<t5|clip>-<short|long|mixed>-n<noise %%>", req),
        prior=("prior model folder, or 'none' (from scratch)", {"type": optional_path, "default": None}),
        init=("continue this earlier-stage T2I model folder (Table S1 stages) instead of the prior",
              {"default": None}),
        stage=("Table S1 stage: 1 trains with t2i.train, k >= 2 with t2i.stages.<k-2>.train",
               {"type": int, "default": 1}),
        features=("pair-set features folder", req), text=("pair-set text features folder", req),
        state=("resumable state folder (outside declared outputs)", req),
        stop_after=("stop after this many steps (simulates a kill; for tests)", {"type": int, "default": None}),
        **train_outputs({"out_snapshots": ("EMA snapshots folder (figure curves; stage 1)", {"default": None})}))
    add("t2i-sample", cmd_t2i_sample, model=model, encoder=encoder,
        features=("features folder (for the latent shape)", req), text=("eval split text features", req),
        captions=("which captions", {"choices": ["short", "long"], "required": True}),
        n_samples=("images to make (default: one per caption)", {"type": int, "default": None}),
        out=("output PNG folder", req), work=("resumable work folder", req), parallel=True)
    add("t2i-bench", cmd_t2i_bench, bench=bench,
        model=("model folder, 'none' (untrained) or 'ground_truth'", req),
        encoder=("text encoder (components.<name>)", {"choices": ["t5", "clip"], "default": None}),
        features=("features folder (for the latent shape)", {"default": None}), out=("output folder", req),
        work=("resumable work folder", {"default": None}))
    add("clip-score", cmd_clip_score, samples=("sample PNG folder", req),
        data=("the split whose captions the samples were generated from", req), out=("output .json", req),
        captions=("which captions", {"choices": ["short", "long"], "required": True}),
        scorer=("the CLIP component that scores (components.<name>)", {"default": "clip"}))
    add("t2i-grid", cmd_t2i_grid, pipeline=("exported pipeline folder", req), out=("output PNG", req),
        images_per_prompt=("samples per prompt", {"type": int, "default": 4}),
        prompts=("prompt set: shapes (the Shapes world's) or paper (Figures 1a, S4, S5)",
                 {"choices": ["shapes", "paper"], "default": "shapes"}),
        columns=("tiles per grid row (default: 2 prompts' worth)", {"type": int, "default": None}),
        tile_size=("shrink each sample to this width in pixels (default: enlarge by --scale)",
                   {"type": int, "default": None}),
        scale=("enlarge each sample this many times (4: tiny Shapes samples; 1: the model's own size)",
               {"type": int, "default": 4}),
        sample_key=sample_key)
    add("official-images", cmd_official_images, bench=bench, pipeline=("exported T2I pipeline folder", req),
        out=("image folder in the evaluator's layout", req),
        out_resolution=("text file: the side in pixels of one sample as written", req), sample_key=sample_key)
    add("official-scores", cmd_official_scores, config=False, bench=bench,
        repo=("the benchmark's repository (GenEval / ELLA clone): its prompt files say what must be scored", req),
        images_per_prompt=("GenEval images per prompt", {"type": int, "default": 4}),
        results=("evaluator output file", req), out=("output scores.json", req))

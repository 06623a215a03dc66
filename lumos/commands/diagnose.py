"""Diagnostics run by hand after a tiny run (no --cfg needed: settings come from the preset).

    lumos probe --data results/data/imagenet
    lumos class-grid --model results/pretrain/class_i2i/model --out class_grid.png
    lumos class-curves --runs eps=results/pretrain/class_i2i/snapshots --png curves.png --csv curves.csv
    lumos vae-ceiling --data results/data/imagenet
    lumos memorise --data results/data/imagenet
    lumos nvs-probe --model results/nvs/i2i/model
    lumos shape-agreement --samples results/samples/lumos_i2i/imagenet --data results/data/imagenet \
        --untrained results/samples/untrained/imagenet
"""

from __future__ import annotations

from pathlib import Path

from lumos.commands import setup, write_json


def _shapes_records(data: str, limit: int | None = None) -> list[dict]:
    """The records of a Shapes-world split; a clear error for a split without ground truth."""
    from lumos.data.shards import read_records

    records = read_records(data, limit=limit)
    if "scene" not in records[0]:
        raise SystemExit(f"error: {data} has no Shapes-world ground truth to score against")
    return records


def cmd_probe(args):
    """Linear probes: how well an encoder's CLS feature predicts the largest object's shape and colour."""
    from lumos.components.encoders import load_encoder
    from lumos.data.shards import read_images
    from lumos.eval.diagnose import largest_object_attributes, linear_probe

    cfg, device = setup(args, preset_keys=tuple(f"components.{name}" for name in args.encoder))
    images, records = read_images(args.data), _shapes_records(args.data)
    targets = largest_object_attributes(records)
    feats = {"raw pixels": images.reshape(len(images), -1).astype("float32")}
    for name in args.encoder:
        cls, _ = load_encoder(cfg[f"components.{name}"], name, device)(images)
        feats[f"{name} CLS"] = cls.float().cpu().numpy()
    rows = []
    for what, x in feats.items():
        for attribute, y in targets.items():
            r = linear_probe(x, y, seed=cfg["seed"])
            rows.append({"features": what, "attribute": attribute, **r})
            print(f"{what:>12} -> {attribute:<6} accuracy {r['accuracy']:.3f}  (chance {r['chance']:.3f}, "
                  f"majority {r['majority_baseline']:.3f}, {r['n_test']} held out)")
    if args.out:
        write_json(args.out, rows)


def cmd_class_grid(args):
    """Sample a class-to-image prior for every (shape, colour) class: a grid with a row per shape and a
    column per colour, and how often the Shapes classifier finds the requested colour, shape and pair."""
    from PIL import Image

    from lumos.components.classifier import load_fid_net
    from lumos.components.vae import load_vae
    from lumos.eval.diagnose import attributes_present, class_grid, class_samples
    from lumos.sample import load_model

    cfg, device = setup(args, preset_keys=("components.vae", "components.fid_net", "sample"))
    model = load_model(args.model).to(device).eval()
    if model.config.injection != "class":
        raise SystemExit(f"error: {args.model} is a '{model.config.injection}' model; class-grid needs a class prior")
    c, s = model.config.in_channels, model.config.sample_size
    codec = load_vae(cfg["components.vae"], device)
    guidance, steps = cfg["sample"]["guidance_scale"], cfg["sample"]["steps"]
    images, shape, colour = class_samples(model, codec, (c, s, s), guidance, steps, cfg["seed"], repeats=args.repeats)
    grid = class_grid(images)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(args.out)
    net = load_fid_net(cfg["components.fid_net"], device)
    scores = attributes_present(net, images, shape, colour)
    # the same model untrained (noise images): what the classifier finds by chance
    fresh = type(model).from_config(model.config).to(device).eval()
    noise = class_samples(fresh, codec, (c, s, s), guidance, steps, cfg["seed"], repeats=args.repeats)[0]
    chance = attributes_present(net, noise, shape, colour)
    print(f"wrote {args.out}; requested attribute present in {len(images)} samples: "
          + ", ".join(f"{k} {v:.3f} (untrained model: {chance[k]:.3f})" for k, v in scores.items()))
    if args.scores:
        write_json(args.scores, {"model": args.model, "samples": len(images), **scores, "untrained": chance})


def cmd_class_curves(args):
    """Score class-to-image priors' EMA snapshots with the class grid: the requested colour, shape and
    pair rates against pretraining steps (step 0: untrained), one line per prior (the levers' curves)."""
    from lumos.components.classifier import load_fid_net
    from lumos.components.vae import load_vae
    from lumos.eval.diagnose import class_scores_by_step
    from lumos.models import LumosDiT
    from lumos.report.figures import build_class_curves
    from lumos.sample import load_model
    from lumos.workflow.names import snapshot_step

    cfg, device = setup(args, preset_keys=("components.vae", "components.fid_net", "sample"))
    codec, net = load_vae(cfg["components.vae"], device), load_fid_net(cfg["components.fid_net"], device)
    rows = []
    for spec in args.runs:
        label, _, folder = spec.rpartition("=")
        snaps = sorted(Path(folder).glob("step-*"), key=lambda p: snapshot_step(p.name))
        if not snaps:
            raise SystemExit(f"error: {folder} holds no step-<N> snapshots (set pretrain.snapshot_every and train the run)")
        config = LumosDiT.load_config(str(snaps[0]))
        if config.get("injection") != "class":
            raise SystemExit(f"error: {folder} is a '{config.get('injection')}' model; class-curves needs class priors")
        c, size = config["in_channels"], config["sample_size"]
        # loaded one at a time as they are scored (a paper-scale DiT is GBs per snapshot)
        checkpoints = ((snapshot_step(p.name), load_model(str(p)).to(device).eval()) for p in snaps)
        for r in class_scores_by_step(checkpoints, codec, net, (c, size, size), cfg["sample"]["guidance_scale"],
                                      cfg["sample"]["steps"], cfg["seed"], args.repeats):
            rows.append({"label": label or Path(folder).parent.name, **r})
            print(f"{rows[-1]['label']} step {r['step']}: colour {r['colour']:.3f} shape {r['shape']:.3f} "
                  f"pair {r['pair']:.3f}", flush=True)
    build_class_curves(rows, args.png, args.csv)
    print(f"wrote {args.png} and {args.csv}")


def cmd_vae_ceiling(args):
    """How much of the largest object survives the VAE round trip: the Shapes classifier's colour /
    shape / pair detection on real images and on their reconstructions, and the PSNR."""
    from lumos.components.classifier import load_fid_net
    from lumos.components.vae import load_vae
    from lumos.data.shards import read_images
    from lumos.eval.diagnose import vae_ceiling

    cfg, device = setup(args, preset_keys=("components.vae", "components.fid_net"))
    records = _shapes_records(args.data, limit=args.limit)
    r = vae_ceiling(load_vae(cfg["components.vae"], device), load_fid_net(cfg["components.fid_net"], device),
                    read_images(args.data, limit=args.limit), records)
    for what in ("real", "reconstruction"):
        print(f"{what:>14}: " + ", ".join(f"{k} present {v:.3f}" for k, v in r[what].items()))
    print(f"reconstruction PSNR {r['psnr_db']:.2f} dB over {r['n']} images")
    if args.out:
        write_json(args.out, r)


def cmd_memorise(args):
    """Train the class-to-image prior on one image per class of a labelled split and sample every
    class: does the DiT redraw the shapes it was shown (latent MSE, colour / shape / pair present)?"""
    from lumos.components.classifier import load_fid_net
    from lumos.components.vae import load_vae
    from lumos.data.shards import read_images
    from lumos.eval.diagnose import memorisation
    from lumos.settings import TrainSettings

    cfg, device = setup(args, preset_keys=("components.vae", "components.fid_net", "pretrain.model",
                                           "pretrain.train", "sample"))
    records = _shapes_records(args.data)
    train = TrainSettings.from_config(cfg["pretrain.train"], "pretrain.train").replace(
        steps=args.steps, lr=args.lr, checkpoint_every=args.steps, log_every=max(1, args.steps // 10))
    r = memorisation(load_vae(cfg["components.vae"], device), load_fid_net(cfg["components.fid_net"], device),
                     read_images(args.data), records, cfg["pretrain.model"], train, args.work,
                     cfg["sample"]["guidance_scale"], cfg["sample"]["steps"], seed=cfg["seed"], device=device,
                     grid=args.grid)
    print(f"{r['classes']} classes, one image each, {r['steps']} steps at lr {r['lr']:g} ({r['seconds']:.0f} s); "
          f"samples' latent MSE to their training latent {r['trained']['latent_mse']:.4f} "
          f"(always the mean latent: {r['mean_latent_mse']:.4f})")
    for what in ("trained", "untrained", "reconstruction"):
        print(f"{what:>14}: " + ", ".join(f"{k} present {r[what][k]:.3f}" for k in ("colour", "shape", "pair")))
    if args.out:
        write_json(args.out, r)


def _read_samples(folder: str, limit: int | None = None):
    """A sample folder's PNGs as `lumos sample` writes them, `{i:06d}.png` for eval item i; a clear
    error unless they are items 0..n-1 (the first n eval images, in the split's order)."""
    from lumos.sample import read_pngs

    names = sorted(p.name for p in Path(folder).glob("*.png"))[:limit]
    if names != [f"{i:06d}.png" for i in range(len(names))]:
        raise SystemExit(f"error: {folder} does not hold samples 000000.png..{len(names) - 1:06d}.png "
                         "(one per eval item, as `lumos sample` writes them)")
    return read_pngs(folder, limit)


def cmd_shape_agreement(args):
    """Condition-sample shape agreement of I2I samples: the fraction of samples (sample i made from
    the features of eval image i of --data) whose largest shape, as the Shapes classifier detects
    it, is the labelled largest shape of their condition image; beside the untrained model's samples
    of the same split (--untrained), the classifier's accuracy on the condition images (the ceiling)
    and chance (1 / shapes, and the majority shape's rate)."""
    from lumos.components.classifier import load_fid_net
    from lumos.data.shards import read_images
    from lumos.eval.diagnose import largest_object_attributes, shape_agreement

    cfg, device = setup(args, preset_keys=("components.fid_net",))
    net = load_fid_net(cfg["components.fid_net"], device)
    folders = {"samples": args.samples, **({"untrained": args.untrained} if args.untrained else {})}
    out = {"data": args.data}
    for what, folder in folders.items():
        samples = _read_samples(folder, args.limit)
        records = _shapes_records(args.data, limit=len(samples))
        if len(records) < len(samples):
            raise SystemExit(f"error: {folder} holds {len(samples)} samples but {args.data} only {len(records)} images")
        r = shape_agreement(net, samples, read_images(args.data, limit=len(samples)),
                            largest_object_attributes(records)["shape"])
        out[what] = {"folder": folder, **r}
        print(f"{what:>9} {folder}: shape agreement {r['agreement']:.3f} over {r['n']} samples (ceiling: classifier "
              f"on the conditions {r['condition_accuracy']:.3f}; chance {r['chance']:.3f}, majority "
              f"{r['majority']:.3f} ({r['majority_shape']}), independent of the condition {r['independent']:.3f}); "
              f"condition's shape present {r['present']:.3f} (conditions {r['condition_present']:.3f})")
    if args.out:
        write_json(args.out, out)


def cmd_nvs_probe(args):
    """Does a Lumos-NVS model read its input view and its camera, and how white does it draw the
    white background? x0 errors per noise level (`lumos.eval.diagnose.nvs_probe`), then the mean
    colour of the background (white in the renders) in the VAE's round trip and in generated views."""
    import numpy as np

    from lumos.components.loading import from_pretrained
    from lumos.components.vae import background_colour, load_vae
    from lumos.eval.diagnose import nvs_probe
    from lumos.models import LumosDiT
    from lumos.tasks.nvs import generate_views, test_objects
    from lumos.store import FeatureStore

    cfg, device = setup(args, preset_keys=("components.vae", "nvs.encoder", "nvs.eval", "sample"))
    model = from_pretrained(LumosDiT, args.model, "Lumos-NVS model", "nvs (run the nvs_finetune rule)")
    store, encoder = FeatureStore(args.features), cfg["nvs.encoder"]
    r = nvs_probe(model, store, encoder, objects=args.objects, seed=cfg["seed"], device=device)
    print(f"x0 prediction error (latent MSE) over {r['pairs']} (input, target) pairs of {r['objects']} test objects; "
          "copy = the input view's latent as the prediction")
    names = [k for k in r["rows"][0] if k != "t"]
    print(f"{'t':>5} " + " ".join(f"{k:>14}" for k in names))
    for row in r["rows"]:
        print(f"{row['t']:>5} " + " ".join(f"{row[k]:>14.4f}" for k in names))
    codec = load_vae(cfg["components.vae"], device, folder=args.decoder)
    renders, generated, round_trip = [], [], []
    for k, images, records in test_objects(args.data, args.views_objects):
        renders.append(images[1:])
        round_trip.append(codec.decode(codec.encode(images[1:])))
        generated.append(generate_views(model, codec, store, encoder, k, records, cfg["sample"],
                                        cfg["nvs.eval"]["guidance_scale"], cfg["seed"], device))
    renders = np.concatenate(renders)
    r["background"] = {"VAE round trip": background_colour(np.concatenate(round_trip), renders),
                       "generated": background_colour(np.concatenate(generated), renders)}
    for what, rgb in r["background"].items():
        print(f"background (white, 255 in the renders) in the {what}: RGB {rgb}")
    if args.out:
        write_json(args.out, r)


def register(add):
    req = {"required": True}
    data = ("labelled Shapes-world split folder", req)
    add("probe", cmd_probe, data=data, out=("optional JSON of the probe results", {"default": None}),
        encoder=("components to probe", {"nargs": "*", "default": ["dino", "moco"]}))
    add("class-grid", cmd_class_grid, model=("class-to-image prior folder", req), out=("output PNG", req),
        scores=("optional JSON of the attribute scores", {"default": None}),
        repeats=("samples per class (seeds) for the scores", {"type": int, "default": 4}))
    add("class-curves", cmd_class_curves,
        runs=("LABEL=FOLDER per class prior: its EMA snapshots (results/pretrain/<run>/snapshots)",
              {"nargs": "+", "required": True}),
        png=("output PNG", req), csv=("output CSV of the plotted scores", req),
        repeats=("samples per class (seeds) at each point", {"type": int, "default": 4}))
    add("vae-ceiling", cmd_vae_ceiling, data=data, out=("optional JSON of the results", {"default": None}),
        limit=("images to round-trip", {"type": int, "default": 1000}))
    add("memorise", cmd_memorise, data=data,
        work=("folder for the model it trains", {"default": "results/diagnostics/memorise"}),
        out=("optional JSON of the results", {"default": None}),
        grid=("optional PNG: each training image beside its class's sample", {"default": None}),
        steps=("optimiser steps", {"type": int, "default": 2000}),
        lr=("learning rate", {"type": float, "default": 3e-3}))
    add("shape-agreement", cmd_shape_agreement,
        samples=("I2I sample folder (e.g. results/samples/lumos_i2i/imagenet)", req),
        data=("the labelled Shapes-world eval split it was sampled from (e.g. results/data/imagenet)", req),
        untrained=("the untrained model's samples of the same split (results/samples/untrained/<split>)",
                   {"default": None}),
        limit=("score the first N samples only", {"type": int, "default": None}),
        out=("optional JSON of the results", {"default": None}))
    add("nvs-probe", cmd_nvs_probe, model=("Lumos-NVS model folder", req),
        data=("rendered test split", {"default": "results/data/nvs_test"}),
        features=("its features", {"default": "results/features/nvs_test"}),
        objects=("test objects for the x0 errors", {"type": int, "default": 16}),
        views_objects=("test objects whose views are generated for the background colour", {"type": int, "default": 4}),
        decoder=("a VAE folder to decode with (e.g. results/components/vae_nvs; default: components.vae)",
                 {"default": None}),
        out=("optional JSON of the results", {"default": None}))

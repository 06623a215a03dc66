"""Evaluation commands: FID reference statistics and FID of a sample folder (or a real split)."""

from __future__ import annotations

import json

from lumos.commands import setup, write_json


def _extractor(cfg, device):
    from lumos.eval.fid import load_extractor

    return load_extractor(cfg["eval.fid_extractor"], cfg.get("components.fid_net"), device)


def cmd_fid_reference(args):
    """FID reference statistics of a data split, in the configured feature space."""
    from lumos.data.shards import read_images
    from lumos.eval.fid import array_features, save_statistics, statistics

    cfg, device = setup(args)
    ext = _extractor(cfg, device)
    save_statistics(args.out, statistics(array_features(read_images(args.data), ext, cfg["eval.batch_size"])))


def cmd_fid(args):
    """FID of a sample folder (or a real split, for the floor row) against reference statistics."""
    from lumos.data.shards import read_images
    from lumos.eval.fid import array_features, folder_features, frechet_distance, load_statistics, statistics

    cfg, device = setup(args)
    ext, bs = _extractor(cfg, device), cfg["eval.batch_size"]
    feats = folder_features(args.samples, ext, bs) if args.samples else array_features(read_images(args.data), ext, bs)
    ref = load_statistics(args.reference)
    result = {"run": args.run, "split": args.split, "fid": frechet_distance(statistics(feats), ref),
              "n_samples": int(len(feats)), "n_reference": int(ref["n"]), "extractor": ext.name}
    write_json(args.out, result)
    print(json.dumps(result))


def register(add):
    req = {"required": True}
    add("fid-reference", cmd_fid_reference, data=("reference split folder", req), out=("output .npz", req))
    add("fid", cmd_fid, run=("run name", req), split=("eval split", req), reference=("reference statistics .npz", req),
        samples=("sample PNG folder", {"default": None}), data=("or a real split folder (floor row)", {"default": None}),
        out=("output .json", req))

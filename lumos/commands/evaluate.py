"""Evaluation commands: FID reference statistics and FID of a sample folder (or a real split)."""

from __future__ import annotations

import json

from lumos.commands import setup, write_json


def _extractor(cfg, device):
    from lumos.eval.fid import load_extractor

    return load_extractor(cfg["eval.fid_extractor"], cfg.get("components.fid_net"), device, cfg.get("eval.inception"))


def cmd_fid_reference(args):
    """FID reference statistics of a data split, in the configured feature space, with the size
    of its images (what `lumos fid` checks the samples against)."""
    from lumos.data.shards import read_images
    from lumos.eval.fid import array_features, save_statistics, statistics

    cfg, device = setup(args)
    ext = _extractor(cfg, device)
    images = read_images(args.data)
    feats = array_features(images, ext, cfg["eval.batch_size"])
    save_statistics(args.out, statistics(feats, image_size=images.shape[1:3]))


def cmd_fid(args):
    """FID of a sample folder (or a real split, for the floor row) against reference statistics;
    stops first when the samples' image size and the reference's would reach the network
    differently (`lumos.eval.fid.check_comparable`)."""
    from lumos.data.shards import read_images
    from lumos.eval.fid import (array_features, check_comparable, folder_features, folder_image_sizes,
                                frechet_distance, load_statistics, statistics)

    cfg, device = setup(args)
    ext, bs = _extractor(cfg, device), cfg["eval.batch_size"]
    ref = load_statistics(args.reference)
    images = None if args.samples else read_images(args.data)
    sizes = folder_image_sizes(args.samples) if args.samples else {tuple(images.shape[1:3]): args.data}
    check_comparable(sizes, ref, ext, args.reference)
    feats = folder_features(args.samples, ext, bs) if args.samples else array_features(images, ext, bs)
    result = {"run": args.run, "split": args.split, "fid": frechet_distance(statistics(feats), ref),
              "n_samples": int(len(feats)), "n_reference": int(ref["n"]), "extractor": ext.name,
              "image_sizes": [list(s) for s in sorted(sizes)],
              "reference_image_size": ref["image_size"].tolist() if "image_size" in ref else None}
    write_json(args.out, result)
    print(json.dumps(result))


def register(add):
    req = {"required": True}
    add("fid-reference", cmd_fid_reference, data=("reference split folder", req), out=("output .npz", req))
    add("fid", cmd_fid, run=("run name", req), split=("eval split", req), reference=("reference statistics .npz", req),
        samples=("sample PNG folder", {"default": None}), data=("or a real split folder (floor row)", {"default": None}),
        out=("output .json", req))

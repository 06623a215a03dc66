"""Data commands: build a split (Shapes world or curated folders)."""

from __future__ import annotations

from lumos.commands import setup


def cmd_data(args):
    """Build one data split (Shapes world or curated folder)."""
    from lumos.config import validate_slice
    from lumos.data.build import build_shapes_split, curate_folder

    cfg, _ = setup(args)
    split = cfg[f"data.splits.{args.split}"]
    size = args.image_size or cfg["data.image_size"]
    buckets = [tuple(int(v) for v in b.split("x")) for b in args.buckets]  # aspect-ratio buckets (Table S1 stage 4)
    if cfg["data.source"] == "shapes":
        build_shapes_split(args.split, split, size, cfg["seed"], cfg["data.shard_size"], args.out, buckets=buckets)
        return
    folder = cfg.get(f"data.paths.{args.split}")
    if not folder:
        raise SystemExit(f"error: data.source is 'paths' but config key data.paths.{args.split} is not set")
    curation = cfg.get("data.curation") or validate_slice({"data.curation": {}})["data.curation"]
    curate_folder(args.split, folder, split["n"], size, curation["min_side"], cfg["data.shard_size"], args.out,
                  buckets=buckets)


def register(add):
    req = {"required": True}
    add("data", cmd_data, split=("split name, e.g. pool", req), out=("output split folder", req),
        image_size=("image size of a resolution variant (default: data.image_size)", {"type": int, "default": None}),
        buckets=("aspect-ratio buckets HxW (Table S1 stage 4)", {"nargs": "*", "default": []}))

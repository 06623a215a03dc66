"""The inputs a config names outside results/ (data sources, image folders, rendered views,
videos, released checkpoints, Inception's weights, LGM): which are missing, and the checks of the
files a rule reads directly. Paths under results/ are the DAG's own and never checked here."""

from __future__ import annotations

import os


def released(config: dict) -> dict:
    """{kind: .pth} of the released checkpoints set (`released.i2i`, `released.t2i`)."""
    return {k: config["released"][k] for k in ("i2i", "t2i") if config["released"].get(k)}


def configured_inputs(config: dict) -> list[tuple[str, str, str, str, str]]:
    """(config key, path, what, stage, name) of every input path in the config; (stage, name) is
    what reads it (`data` and the split, `views`, `clips`, `import` and the kind, `inception`)."""
    paths = []
    for split, sources in config["data"].get("sources", {}).items():
        for k, src in enumerate(sources):
            model = (src.get("aesthetic") or {}).get("model")
            files = [("path", src["path"]), *([("annotations", src["annotations"])] if src.get("annotations") else []),
                     *([("aesthetic.model.head", model["head"])] if model else [])]
            paths += [(f"data.sources.{split}.{k}.{key}", path, src["name"], "data", split) for key, path in files]
    for split, path in config["data"].get("paths", {}).items():
        if split not in config["data"].get("sources", {}):
            paths.append((f"data.paths.{split}", path, "image folder", "data", split))
    paths += [(f"nvs.paths.{split}", path, "rendered views", "views", split) for split, path in config["nvs"]["paths"].items()]
    paths += [(f"i2v.sources.{split}.path", src["path"], "videos", "clips", split)
              for split, src in config["i2v"]["sources"].items()]
    paths += [(f"released.{kind}", path, "released checkpoint", "import", kind) for kind, path in released(config).items()]
    if config["eval"]["fid_extractor"] == "inception":
        paths.append(("eval.inception", config["eval"]["inception"] or "",
                      "clean-fid's inception-2015-12-05.pt, never downloaded", "inception", ""))
    return paths


def missing_inputs(config: dict) -> list[tuple[str, str, str, str, str]]:
    """The `configured_inputs` that do not exist (those under results/ are the DAG's own)."""
    return [p for p in configured_inputs(config) if not p[1].startswith("results/") and not os.path.exists(p[1])]


def released_checkpoint(config: dict, kind: str) -> str:
    """The released .pth of `released.<kind>`; unset or missing raises ValueError naming both."""
    key, path = f"released.{kind}", released(config).get(kind)
    if not path:
        raise ValueError(f"config key '{key}' is not set: point it at the released checkpoint "
                         f"(Lumos_{kind.upper()}.pth)")
    if not os.path.isfile(path):
        raise ValueError(f"missing released checkpoint {path} (config key '{key}'): place "
                         f"Lumos_{kind.upper()}.pth there or change the key")
    return path


def lgm_weights(config: dict) -> str:
    """LGM's weights file (`nvs.lgm.weights`), once the weights and the repository (`nvs.lgm.repo`)
    are checked: a missing one raises ValueError naming its config key."""
    lgm = config["nvs"]["lgm"]
    if not lgm:
        raise ValueError("config key 'nvs.lgm' is not set: the LGM reconstruction needs its repo and weights")
    repo, weights = lgm["repo"], lgm["weights"]
    if not os.path.isfile(os.path.join(repo, "core", "models.py")):
        raise ValueError(f"config key 'nvs.lgm.repo': {repo} is not a clone of 3DTopia/LGM (no core/models.py)")
    if not os.path.isfile(weights):
        raise ValueError(f"config key 'nvs.lgm.weights': missing {weights} (LGM's weights, hub repository "
                         "ashawkey/LGM, e.g. model_fp16_fixrot.safetensors)")
    return weights


def released_t2i_missing(config: dict) -> list[str]:
    """What the released T2I rows need that the config lacks (they are built on the paper preset
    only): T5 v1.1 XXL, Inception as the FID network, the official evaluators."""
    needs = {
        "components.t5_released (T5 v1.1 XXL, the model's text encoder)": "t5_released" in config["components"],
        "eval.fid_extractor: inception": config["eval"]["fid_extractor"] == "inception",
        "t2i.eval.official (the official GenEval / DPG-Bench evaluators)": bool(config["t2i"]["eval"].get("official")),
    }
    return [key for key, ok in needs.items() if not ok]

"""Config presets and schema validation: every error names the offending key."""

import pytest
from conftest import ROOT

from lumos.config import ConfigError, load_config


@pytest.mark.parametrize("preset", ["smoke", "tiny", "paper", "gpu"])
def test_presets_validate(preset):
    cfg = load_config(preset)
    assert cfg["preset"] == preset
    assert cfg["eval"]["batch_size"] > 0  # schema defaults are filled in


def test_paper_preset_is_the_paper_setting():
    cfg = load_config("paper")
    assert cfg["pretrain"]["model"]["size"] == "DiT-XL/2"
    assert cfg["data"]["splits"]["coco"]["n"] == 30000
    assert cfg["data"]["splits"]["imagenet"]["n"] == 50000
    assert cfg["components"]["vae"]["pretrained"] == "stabilityai/sd-vae-ft-mse"
    assert cfg["eval"]["fid_extractor"] == "inception"
    assert cfg["components"]["dino"]["resize"] == "bilinear"  # the released T2I model's DINO preprocessing
    assert load_config("tiny")["components"]["dino"]["resize"] == "bicubic"  # the schema default


@pytest.mark.parametrize(
    "override, message",
    [
        ({"bogus": 1}, "unknown config key 'bogus'"),
        ({"pretrain": {"train": {"stepz": 3}}}, "unknown config key 'pretrain.train.stepz'"),
        ({"pretrain": {"train": {"steps": "many"}}}, "config key 'pretrain.train.steps'"),
        ({"sample": {"guidance_scale": -1}}, "config key 'sample.guidance_scale'"),
        ({"preset": "huge"}, "unknown preset 'huge'"),
        ({"pretrain": {"runs": {"x": {"encoder": "sam", "injection": "adaln"}}}}, "config key 'pretrain.runs.x.encoder'"),
    ],
)
def test_bad_config_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config("tiny", override)


def test_unknown_preset_name():
    with pytest.raises(ConfigError, match="unknown preset 'giant'"):
        load_config("giant")


def test_config_slice_keeps_dotted_keys_and_skips_absent_optional_ones():
    from lumos.config import config_slice

    cfg = load_config("smoke")
    s = config_slice(cfg, "t2i.train", "t2i.stages.1.train", "pretrain.runs.rcg", "data.paths.pool")
    assert set(s) == {"seed", "device", "preset", "t2i.train", "t2i.stages.1.train", "pretrain.runs.rcg"}
    assert s["t2i.train"] == cfg["t2i"]["train"] and s["t2i.stages.1.train"] == cfg["t2i"]["stages"][1]["train"]


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"t2i.train": {"steps": 2, "batch_size": 2, "lr": "abc"}}, "config key 't2i.train.lr'"),
        ({"t2i.stages.0.train": {"steps": 2, "batch_size": 2}}, "missing config key 't2i.stages.0.train.lr'"),
        ({"t2i.train": {"steps": 2, "batch_size": 2, "lr": 1.0, "warm": 3}}, "unknown config key 't2i.train.warm'"),
        ({"t2i.trian": {}}, "unknown config key 't2i.trian'"),
        ({"components.vae": {"pretrained": 3}}, "config key 'components.vae.pretrained'"),
    ],
)
def test_a_bad_slice_names_the_full_key(cfg, message):
    from lumos.config import validate_slice

    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate_slice(cfg)


def test_train_settings_take_their_defaults_from_the_schema():
    from lumos.config import schema_defaults
    from lumos.settings import TrainSettings

    t = TrainSettings.from_config({"steps": 5, "batch_size": 4, "lr": 1e-3}, "t2i.train")
    defaults = schema_defaults("t2i.train")
    assert t.weight_decay == defaults["weight_decay"] == 0.03 and t.warmup_steps == defaults["warmup_steps"]
    assert t.key == "t2i.train" and t.lr == 1e-3


def test_a_wrong_typed_value_on_the_cli_fails_with_the_keys_name(tmp_path):
    """`--cfg` is validated where it enters: the CLI exits 1 naming the key, before any work."""
    import json
    import subprocess
    import sys

    cfg = json.dumps({"t2i.train": {"steps": 2, "batch_size": 2, "lr": "fast"}, "pretrain.model": {"size": "DiT-N/2"}})
    out = [f"--out-{k}={tmp_path / k}" for k in ("model", "raw", "curve", "plot", "summary")]
    proc = subprocess.run([sys.executable, "-m", "lumos.cli", "finetune", "--cfg", cfg, "--ft", "none-t5-mixed-n0",
                           "--features", str(tmp_path), "--text", str(tmp_path), "--state", str(tmp_path / "s"), *out],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "config key 't2i.train.lr': 'fast' is not of type 'number'" in proc.stderr


def test_fast_yaml_reads_every_config_file_as_safe_load_does():
    """load_yaml (libyaml's C parser where present) gives the values yaml.safe_load gives."""
    import yaml

    from lumos.config import load_yaml

    files = [ROOT / "lumos" / "config.yaml", *sorted((ROOT / "config").glob("*.yaml"))]
    assert len(files) >= 7
    for f in files:
        text = f.read_text()
        assert load_yaml(text) == yaml.safe_load(text), f

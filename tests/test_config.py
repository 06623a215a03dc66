"""Config presets and schema validation: every error names the offending key."""

import pytest

from lumos.config import ConfigError, load_config


@pytest.mark.parametrize("preset", ["smoke", "tiny", "paper"])
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

"""Configuration: presets, merging, and validation against `config/schema.yaml`.

The workflow (rules/common.smk) and the CLI validate with the same function, so a wrong key
fails the same way everywhere: a one-line message naming the key, not a traceback.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "config" / "schema.yaml"
PRESETS = ("smoke", "tiny", "paper")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


def deep_merge(base: dict, override: dict) -> dict:
    """Return `base` updated recursively with `override` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _fill_defaults(validator_class):
    """A validator class that also writes each property's `default` into the instance."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _fill_defaults(jsonschema.Draft202012Validator)


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return ".".join(filter(None, [path, extra[0] if extra else ""]))
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return ".".join(filter(None, [path, missing]))
    return path or "<top level>"


def validate_config(config: dict) -> dict:
    """Validate `config` in place (filling defaults) and return it; raise ConfigError naming the key."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors[:5]:
            key = _key_path(err)
            if err.validator == "additionalProperties":
                msg = f"unknown config key '{key}'"
            elif err.validator == "required":
                msg = f"missing config key '{key}'"
            elif err.validator == "enum" and key == "preset":
                msg = f"unknown preset {err.instance!r}: choose one of {list(PRESETS)}"
            else:
                msg = f"config key '{key}': {err.message}"
            lines.append(msg)
        raise ConfigError("invalid configuration: " + "; ".join(lines))
    return config


def load_config(preset: str = "tiny", overrides: dict | None = None) -> dict:
    """Load `config.yaml` merged with `config/<preset>.yaml` and `overrides`, validated."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: choose one of {list(PRESETS)}")
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    if preset != "tiny":
        config = deep_merge(config, yaml.safe_load((ROOT / "config" / f"{preset}.yaml").read_text()))
    return validate_config(deep_merge(config, overrides or {}))

"""Configuration: presets, merging, and validation against `config/schema.yaml`.

The workflow (rules/common.smk) and the CLI validate with the same function, so a wrong key
fails the same way everywhere: a one-line message naming the key, not a traceback.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import jsonschema
import yaml

# config.yaml and config/ of the checkout, found from the package: lumos/config.yaml and
# lumos/presets are links to them in the checkout, copies in an installed (non-editable) lumos
PACKAGE = Path(__file__).parent
PRESETS_DIR = PACKAGE / "presets"
SCHEMA_PATH = PRESETS_DIR / "schema.yaml"
PRESETS = ("smoke", "tiny", "paper", "gpu")  # config/<preset>.yaml merged on config.yaml (tiny)


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


def load_yaml(text: str):
    """`yaml.safe_load` through libyaml's C parser where PyYAML has it (8x faster on the schema,
    which every step and every Snakemake start reads); the same values either way."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


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


def _message(err: jsonschema.ValidationError, key: str) -> str:
    """One line for a schema error at config key `key`."""
    if err.validator == "additionalProperties":
        return f"unknown config key '{key}'"
    if err.validator == "required":
        return f"missing config key '{key}'"
    if err.validator == "enum" and key == "preset":
        return f"unknown preset {err.instance!r}: choose one of {list(PRESETS)}"
    return f"config key '{key}': {err.message}"


def validate_config(config: dict) -> dict:
    """Validate `config` in place (filling defaults) and return it; raise ConfigError naming the key."""
    errors = sorted(_Validator(_schema()).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [_message(err, _key_path(err)) for err in errors[:5]]
        raise ConfigError("invalid configuration: " + "; ".join(lines))
    return config


def load_config(preset: str = "tiny", overrides: dict | None = None) -> dict:
    """Load `config.yaml` merged with `config/<preset>.yaml` and `overrides`, validated."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: choose one of {list(PRESETS)}")
    config = load_yaml((PACKAGE / "config.yaml").read_text())
    if preset != "tiny":
        config = deep_merge(config, load_yaml((PRESETS_DIR / f"{preset}.yaml").read_text()))
    return validate_config(deep_merge(config, overrides or {}))


# -----------------------------------------------------------------------------------------------
# Config slices: what one step reads, keyed by its dotted path in the config
# -----------------------------------------------------------------------------------------------
#
# A rule hands its step `--cfg JSON` holding exactly the settings the step reads, each under its
# dotted key path in config.yaml: {"t2i.train": {...}, "pretrain.model": {...}, "seed": 0}. So
# Snakemake reruns a step exactly when one of those settings changes, and the CLI validates each
# entry against the schema at that path (filling defaults), naming the full key on an error.

GLOBAL_KEYS = ("seed", "device", "preset")  # every step gets these


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    """`config/schema.yaml`, read once per process (validators never modify it)."""
    return load_yaml(SCHEMA_PATH.read_text())


def _subschema(root: dict, path: str) -> dict:
    """The schema of the config key at dotted `path` (`t2i.stages.0.train`, `pretrain.runs.rcg`),
    its `$ref` resolved."""

    def resolve(node):
        while "$ref" in node:  # local references only: "#/$defs/<name>"
            node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
        return node

    node = root
    for part in path.split("."):
        node = resolve(node)
        if node.get("type") == "array" or "items" in node:
            if not part.isdigit():
                raise ConfigError(f"unknown config key '{path}'")
            node = node["items"]
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            raise ConfigError(f"unknown config key '{path}'")
    return resolve(node)


def _get(config: dict, path: str):
    node = config
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def config_slice(config: dict, *paths: str) -> dict:
    """{dotted path: value} for the global keys and each of `paths` (absent optional keys are left out)."""
    out = {}
    for path in (*GLOBAL_KEYS, *paths):
        try:
            out[path] = copy.deepcopy(_get(config, path))
        except (KeyError, IndexError):
            continue
    return out


def validate_slice(cfg: dict) -> dict:
    """Validate a config slice in place (each entry against the schema at its dotted path, defaults
    filled) and return it; raise ConfigError naming the full key, e.g. 't2i.train.lr'."""
    root = _schema()
    lines = []
    for path, value in cfg.items():
        sub = {**_subschema(root, path), "$defs": root["$defs"]}
        for err in sorted(_Validator(sub).iter_errors(value), key=lambda e: list(e.absolute_path)):
            inner = _key_path(err)
            lines.append(_message(err, path if inner == "<top level>" else f"{path}.{inner}"))
    if lines:
        raise ConfigError("invalid configuration: " + "; ".join(lines[:5]))
    return cfg


def schema_defaults(path: str) -> dict:
    """The schema's defaults of the object at dotted `path` (the one place defaults live)."""
    props = _subschema(_schema(), path)
    return {k: copy.deepcopy(v["default"]) for k, v in props.get("properties", {}).items() if "default" in v}

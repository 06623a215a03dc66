"""Resolving a component's `pretrained` entry (local folder/file or hub id) with clear errors."""

from __future__ import annotations

import os
from pathlib import Path


class MissingWeightsError(FileNotFoundError):
    """A pretrained component could not be found; the message says what to place where."""


def looks_local(ref: str) -> bool:
    """True for refs that can only be local paths (absolute, ./, ../, results/, or an existing path)."""
    return ref.startswith(("/", "./", "../", "~", "results/")) or os.path.exists(ref)


def from_pretrained(cls, ref: str, what: str, config_key: str, **kwargs):
    """`cls.from_pretrained(ref)` with a message naming the missing file and the config key.

    Hub ids are read from the local Hugging Face cache first (HF_HOME); only when that fails
    and the hub is reachable does transformers/diffusers download them.
    """
    if looks_local(ref):
        path = Path(ref).expanduser()
        if not path.exists():
            raise MissingWeightsError(
                f"missing {what}: '{path}' does not exist. Train it with the workflow (tiny/smoke) or "
                f"place the weights there, or point config key '{config_key}' at them."
            )
        return cls.from_pretrained(str(path), **kwargs)
    try:
        return cls.from_pretrained(ref, **kwargs)
    except (OSError, ValueError) as err:
        raise MissingWeightsError(
            f"could not load {what} '{ref}' ({type(err).__name__}: {str(err).splitlines()[0]}). "
            f"Place it in the Hugging Face cache (huggingface-cli download {ref}, with HF_HOME on a "
            f"shared filesystem) or set config key '{config_key}' to a local folder."
        ) from err

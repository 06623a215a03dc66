"""Resolving a component's `pretrained` entry (local folder/file or hub id) with clear errors."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from lumos.utils import log

# transformers (5.x) logs its "<Model> LOAD REPORT" table of UNEXPECTED/MISSING keys at WARNING
# through this logger (modeling_utils._load_pretrained_model -> utils.loading_report.log_state_dict_report).
_HF_LOAD_LOGGER = "transformers.modeling_utils"


class MissingWeightsError(FileNotFoundError):
    """A pretrained component could not be found; the message says what to place where."""


def looks_local(ref: str) -> bool:
    """True for refs that can only be local paths (absolute, ./, ../, results/, or an existing path)."""
    return ref.startswith(("/", "./", "../", "~", "results/")) or os.path.exists(ref)


class _HoldLoadReport(logging.Filter):
    """Holds back transformers' load report records (kept, to replay them if the load fails)."""

    def __init__(self):
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in record.getMessage():
            self.held.append(record)
            return False
        return True


@contextlib.contextmanager
def _quiet_load_report():
    logger = logging.getLogger(_HF_LOAD_LOGGER)
    hold = _HoldLoadReport()
    logger.addFilter(hold)
    loaded = False
    try:
        yield
        loaded = True
    finally:
        logger.removeFilter(hold)
        if not loaded:  # a failed load keeps transformers' own report
            for record in hold.held:
                logger.handle(record)


def _keys(keys, limit: int = 8) -> str:
    keys = sorted(str(k) for k in keys)
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _report_keys(info: dict, what: str, ref: str, expected_unexpected: tuple[str, ...] = ()) -> None:
    """Log at WARNING the missing, mismatched and unexpected keys of a transformers load
    (`output_loading_info`), except unexpected keys starting with one of `expected_unexpected`."""
    unexpected = [k for k in info.get("unexpected_keys", ()) if not k.startswith(tuple(expected_unexpected))]
    if unexpected:
        log.warning("%s '%s': %d unexpected weights in the checkpoint (not loaded): %s",
                    what, ref, len(unexpected), _keys(unexpected))
    if info.get("missing_keys"):
        log.warning("%s '%s': %d weights missing from the checkpoint (randomly initialised): %s",
                    what, ref, len(info["missing_keys"]), _keys(info["missing_keys"]))
    if info.get("mismatched_keys"):
        log.warning("%s '%s': %d weights of another shape in the checkpoint (randomly initialised): %s",
                    what, ref, len(info["mismatched_keys"]), _keys(k[0] for k in info["mismatched_keys"]))


def from_pretrained(cls, ref: str, what: str, config_key: str, expected_unexpected: tuple[str, ...] | None = None,
                    **kwargs):
    """`cls.from_pretrained(ref)` with a message naming the missing file and the config key.

    Hub ids are read from the local Hugging Face cache first (HF_HOME); only when that fails
    and the hub is reachable does transformers/diffusers download them.

    `expected_unexpected` (transformers models only): key prefixes the checkpoint is known to hold
    beyond `cls` (e.g. the vision tower of a full CLIP checkpoint loaded as a text tower).
    transformers' load report is then held back and lumos logs, at WARNING, only the other
    unexpected keys and any missing or mismatched ones.
    """
    if expected_unexpected is None:
        return _from_pretrained(cls, ref, what, config_key, **kwargs)
    wants_info = kwargs.pop("output_loading_info", False)
    with _quiet_load_report():
        model, info = _from_pretrained(cls, ref, what, config_key, output_loading_info=True, **kwargs)
    _report_keys(info, what, ref, expected_unexpected)
    return (model, info) if wants_info else model


def _from_pretrained(cls, ref: str, what: str, config_key: str, **kwargs):
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

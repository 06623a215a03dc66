"""The row-source protocol: what a task hands the trainer (`lumos.training.loop.train_diffusion`).

A row source says how many rows each aspect-ratio bucket has (`sizes`, one entry without
buckets) and returns the batch of given rows of a bucket (`batch(bucket, rows)`: CPU tensors,
one per key, as the model takes them). `batch_keys` names every key of its batches; the
streaming loader (`lumos.training.loader.step_loader`) reads them ahead of the step. A batch for training
carries

- `x0`, the clean latents the loss is taken on;
- optionally `loss_mask`, a weight of the loss broadcast over `x0` (I2V: every frame but the
  given first one);
- the model's inputs, passed to its forward by name: `cond` and `cond_mask` (a condition's
  tokens or labels and their mask), `concat` (a latent concatenated channel-wise: NVS's input
  view), `camera` (NVS's relative pose), `first` (I2V's given first frame), or a new task's own.

The trainer adds the step's `t` and `noise` (`lumos.training.loop.StepNoise`); every key but
`TRAINER_KEYS` goes to the model. A REPA / REG run's batches (`lumos.models.guidance`) also carry
`enc_patch` (the encoder's patch tokens, REPA's target) and `enc_cls` (its class token, REG's extra
token), which the guided loss reads; the trainer adds `token_noise` for `enc_cls`. Sources: `lumos.training.loader` (`TensorRows`,
`StoreRows`, `BucketRows`), `lumos.tasks.i2i.PoolRows`, `lumos.tasks.t2i.PairRows`,
`lumos.tasks.nvs.ViewRows`, `lumos.tasks.i2v.ClipRows`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

#: Batch keys the trainer takes itself (the latents, the step's timesteps and noise, the loss
#: weight); every other key is a model input.
TRAINER_KEYS = ("x0", "t", "noise", "loss_mask", "enc_patch", "enc_cls", "token_noise")


@runtime_checkable
class RowSource(Protocol):
    """Rows the loader draws batches from (see the module docstring)."""

    #: Every key of `batch`'s result, `x0` included (a training source's).
    batch_keys: tuple[str, ...]
    #: Rows per aspect-ratio bucket (one entry without buckets).
    sizes: list[int]

    def batch(self, bucket: int, rows) -> dict[str, torch.Tensor]:
        """The batch of rows `rows` (indices into bucket `bucket`): CPU tensors by key."""
        ...


def check_batch_keys(source: RowSource, batch: dict) -> dict:
    """`batch` if it carries exactly `source.batch_keys`; a ValueError naming the difference
    otherwise (a source that adds a key it does not declare, or declares one it does not add)."""
    declared, got = set(source.batch_keys), set(batch)
    if declared != got:
        raise ValueError(f"{type(source).__name__} declares batch keys {sorted(declared)} but its batch carries "
                         f"{sorted(got)}: extra {sorted(got - declared)}, missing {sorted(declared - got)}")
    return batch

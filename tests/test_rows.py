"""The row-source protocol (`lumos.training.rows`): every source declares the keys its batches carry, and
its batches carry exactly those."""

import shutil

import numpy as np
import pytest
import torch

from lumos.training.rows import TRAINER_KEYS, RowSource, check_batch_keys
from lumos.store import write_store


def _tensor_rows(tmp_path, cond=True, mask=True):
    from lumos.training.loader import TensorRows

    return TensorRows(torch.randn(6, 4, 2, 2), torch.randn(6, 3, 8) if cond else None,
                      torch.ones(6, 3, dtype=torch.bool) if cond and mask else None)


def _store_rows(tmp_path):
    from lumos.training.loader import StoreRows

    rng = np.random.default_rng(0)
    shutil.rmtree(tmp_path / "f", ignore_errors=True)
    write_store(tmp_path / "f", {"latents": rng.standard_normal((6, 4, 2, 2)).astype(np.float16),
                                 "dino_cls": rng.standard_normal((6, 8)).astype(np.float16)}, shard_size=4)
    return StoreRows(str(tmp_path / "f"), ["latents", "dino_cls"])


def _pair_rows(tmp_path):
    from lumos.tasks.t2i import PairRows, parse_finetune

    n = 6
    write_store(tmp_path / "f", {"latents": np.ones((n, 4, 2, 2), np.float16)}, shard_size=4)
    write_store(tmp_path / "t", {"t5_short": np.ones((n, 5, 2), np.float16), "t5_short_mask": np.ones((n, 5), bool),
                                 "t5_long": np.ones((n, 5, 2), np.float16), "t5_long_mask": np.ones((n, 5), bool)})
    return PairRows(str(tmp_path / "f"), str(tmp_path / "t"), parse_finetune("none-t5-mixed-n50"), seed=0)


def _bucket_rows(tmp_path):
    from lumos.training.loader import BucketRows, TensorRows

    return BucketRows([TensorRows(torch.randn(4, 4, 2, 2), torch.randn(4, 3, 8), torch.ones(4, 3, dtype=torch.bool)),
                       TensorRows(torch.randn(5, 4, 2, 4), torch.randn(5, 3, 8), torch.ones(5, 3, dtype=torch.bool))])


def _view_rows(tmp_path):
    from lumos.tasks.nvs import ViewRows

    objects, views = 2, 3
    n = objects * views
    rng = np.random.default_rng(0)
    write_store(tmp_path / "f", {"latents": rng.standard_normal((n, 4, 2, 2)).astype(np.float16),
                                 "dino_cls": rng.standard_normal((n, 8)).astype(np.float16),
                                 "c2w": np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)),
                                 "object": np.repeat(np.arange(objects), views)}, views_per_object=views)
    return ViewRows(str(tmp_path / "f"), "dino")


def _clip_rows(tmp_path):
    from lumos.tasks.i2v import ClipRows

    rng = np.random.default_rng(0)
    write_store(tmp_path / "f", {"latents": rng.standard_normal((4, 4, 3, 2, 2)).astype(np.float16),
                                 "dino_cls": rng.standard_normal((4, 8)).astype(np.float16)}, frames=3)
    return ClipRows(str(tmp_path / "f"), "dino")


def _pool_rows(tmp_path, injection="class", tokens="cls", **guided):
    from lumos.data.subsets import subset_values
    from lumos.tasks.i2i import PoolRows
    from lumos.settings import RunSettings

    n = 6
    write_store(tmp_path / "f", {"latents": np.ones((n, 4, 2, 2), np.float16), "labels": np.arange(n) % 3,
                                 "dino_cls": np.ones((n, 8), np.float16), "dino_patch": np.ones((n, 4, 8), np.float16),
                                 "subset_u": subset_values([str(i) for i in range(n)], 0)})
    return PoolRows(str(tmp_path / "f"), RunSettings(injection=injection, tokens=tokens, **guided))


SOURCES = {
    "TensorRows": (_tensor_rows, ("x0", "cond", "cond_mask")),
    "TensorRows without condition": (lambda p: _tensor_rows(p, cond=False), ("x0",)),
    "TensorRows without mask": (lambda p: _tensor_rows(p, mask=False), ("x0", "cond")),
    "StoreRows": (_store_rows, ("latents", "dino_cls")),
    "BucketRows": (_bucket_rows, ("x0", "cond", "cond_mask")),
    "PairRows": (_pair_rows, ("x0", "cond", "cond_mask")),
    "ViewRows": (_view_rows, ("x0", "cond", "cond_mask", "concat", "camera")),
    "ClipRows": (_clip_rows, ("x0", "cond", "cond_mask", "first", "loss_mask")),
}


@pytest.mark.parametrize("name", list(SOURCES))
def test_a_source_batch_carries_exactly_its_declared_keys(tmp_path, name):
    make, keys = SOURCES[name]
    source = make(tmp_path)
    assert isinstance(source, RowSource)
    assert tuple(source.batch_keys) == keys
    for bucket, size in enumerate(source.sizes):
        batch = check_batch_keys(source, source.batch(bucket, np.array([0, size - 1])))
        assert all(isinstance(v, torch.Tensor) and len(v) == 2 for v in batch.values())
    if name != "StoreRows":  # a training source: the latents, and no key the trainer adds itself
        assert "x0" in keys and not {"t", "noise"} & set(keys)


def test_pool_rows_declare_their_keys(tmp_path):
    for injection, keys in (("class", {"x0", "cond"}), ("none", {"x0"})):
        source = _pool_rows(tmp_path, injection)
        assert set(check_batch_keys(source, source.batch(0, np.array([0, 1])))) == keys
    # a class-conditional REPA + REG run (as their papers' ImageNet models): labels and the encoder's tokens
    source = _pool_rows(tmp_path, "class", "cls_patch", encoder="dino", repa={"block": 1}, reg={"weight": 0.03})
    batch = check_batch_keys(source, source.batch(0, np.array([0, 4])))
    assert set(batch) == {"x0", "cond", "enc_patch", "enc_cls"} and batch["cond"].tolist() == [0, 1]
    assert batch["enc_patch"].shape == (2, 4, 8) and source.enc_dim == 8


def test_pool_rows_token_count_is_the_models(tmp_path):
    """The condition's token count (Figures 9 and S2's runs): the CLS, the CLS and every patch token,
    or the CLS and patch_k of them; the prior is built for exactly that many (`max_cond_tokens`)."""
    from lumos.settings import ModelSettings, RunSettings
    from lumos.tasks.i2i import untrained_model

    model_cfg = ModelSettings.from_config({"size": "DiT-N/2", "learn_sigma": True, "cond_dropout": 0.1}, "pretrain.model")
    for tokens, patch_k, length in (("cls", None, 1), ("cls_patch", None, 5), ("cls_top", 2, 3), ("cls_random", 3, 4)):
        source = _pool_rows(tmp_path, "cross_attn", tokens, encoder="dino", patch_k=patch_k)
        assert source.cond_shape == (8, length), tokens
        batch = source.batch(0, np.array([0, 5]))
        assert batch["cond"].shape == (2, length, 8) and batch["cond_mask"].shape == (2, length), tokens
        run = RunSettings(injection="cross_attn", tokens=tokens, encoder="dino", patch_k=patch_k)
        model = untrained_model(model_cfg, run, source.latent_shape, source, seed=0)
        assert model.config.max_cond_tokens == length and model.config.cond_dim == 8, tokens


def test_an_undeclared_key_is_named():
    class Extra:
        batch_keys, sizes = ("x0",), [2]

        def batch(self, bucket, rows):
            return {"x0": torch.zeros(len(rows)), "camera": torch.zeros(len(rows))}

    with pytest.raises(ValueError, match=r"Extra declares .*extra \['camera'\], missing \[\]"):
        check_batch_keys(Extra(), Extra().batch(0, [0, 1]))
    assert "loss_mask" in TRAINER_KEYS and "cond" not in TRAINER_KEYS

"""The feature store and the streaming loader: rows read back as written, ragged captions rebuilt
as the dense layout, batches a function of (seed, rank, step), nested order-free pool subsets."""

import os

import numpy as np
import pytest
import torch

from lumos.data.subsets import subset_values
from lumos.training.loader import StoreRows, step_loader
from lumos.store import FeatureStore, SubsetRows, write_store
from lumos.training.loop import BatchSampler


def _arrays(n=30, seed=0):
    rng = np.random.default_rng(seed)
    return {"latents": rng.standard_normal((n, 4, 2, 2)).astype(np.float16),
            "dino_cls": rng.standard_normal((n, 8)).astype(np.float16),
            "labels": rng.integers(0, 10, n),
            "subset_u": subset_values([str(i) for i in range(n)], 0)}


def _captions(n=12, width=7, dim=5, seed=0):
    """Dense caption tokens with garbage in the padding (as an encoder leaves it) and prefix masks."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, width + 1, n)
    lengths[0] = width  # the longest caption sets the width
    mask = np.arange(width)[None] < lengths[:, None]
    return rng.standard_normal((n, width, dim)).astype(np.float16), mask


def test_store_reads_back_what_was_written_across_shards_in_any_order(tmp_path):
    arrays = _arrays()
    meta = write_store(tmp_path / "f", arrays, shard_size=7)
    assert meta["shard_sizes"] == [7, 7, 7, 7, 2] and (tmp_path / "f" / "shard-00000" / "latents.npy").exists()
    store = FeatureStore(tmp_path / "f")
    rows = np.array([29, 0, 13, 6, 7, 13, 21, 3])  # unsorted, repeated, crossing every shard boundary
    got = store.get(rows, list(arrays))
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v[rows]), k  # fp16 stays fp16, bit for bit
    assert np.load(tmp_path / "f" / "shard-00001" / "latents.npy", mmap_mode="r").shape == (7, 4, 2, 2)
    with pytest.raises(KeyError, match=r"feature 'moco_cls' not in .*shard-00000"):
        store.get(rows, ["moco_cls"])
    with pytest.raises(IndexError, match="out of range"):
        store.get([30], ["latents"])


def test_read_features_is_the_first_rows_as_float32(tmp_path):
    from lumos.features import read_features

    arrays = _arrays()
    write_store(tmp_path / "f", arrays, shard_size=7)
    feats = read_features(str(tmp_path / "f"), ["latents", "labels"], limit=10)
    assert feats["latents"].dtype == np.float32 and np.array_equal(feats["latents"], arrays["latents"][:10])
    assert np.array_equal(feats["labels"], arrays["labels"][:10])


def test_ragged_captions_rebuild_the_dense_tokens_and_masks(tmp_path):
    tokens, mask = _captions()
    meta = write_store(tmp_path / "t", {"t5_long": tokens, "t5_long_mask": mask}, shard_size=5)
    assert meta["tokens"] == {"t5": 7}
    files = sorted(p.name for p in (tmp_path / "t" / "shard-00000").iterdir())
    assert files == ["t5_long.npy", "t5_long_len.npy"]  # only the valid tokens and their counts
    assert len(np.load(tmp_path / "t" / "shard-00000" / "t5_long.npy")) == mask[:5].sum()
    rows = np.array([11, 2, 5, 0, 7])
    got = FeatureStore(tmp_path / "t").get(rows, ["t5_long", "t5_long_mask"])
    assert got["t5_long"].shape == (5, 7, 5) and np.array_equal(got["t5_long_mask"], mask[rows])
    assert np.array_equal(got["t5_long"][mask[rows]], tokens[rows][mask[rows]])  # valid positions, bit for bit
    assert not got["t5_long"][~mask[rows]].any()  # padding is zeros


def test_masked_padding_values_do_not_change_the_model():
    """A forward on the old dense tokens (encoder output in the padding) and on the rebuilt ragged
    ones (zeros there) is identical: attention never reads masked tokens."""
    from lumos.models import LumosDiT

    tokens, mask = _captions(n=6, width=7, dim=16)
    mask[3] = False  # a caption without tokens: the model gives it a zero update either way
    torch.manual_seed(0)
    model = LumosDiT.from_size("DiT-N/2", sample_size=4, in_channels=4, cond_dim=16, max_cond_tokens=7).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x, t = torch.randn(6, 4, 4, 4), torch.tensor([1, 50, 200, 400, 700, 999])
    dense = torch.from_numpy(tokens.astype(np.float32))
    zeros = dense * torch.from_numpy(mask)[..., None]
    with torch.no_grad():
        a = model(x, t, dense, torch.from_numpy(mask))
        b = model(x, t, zeros, torch.from_numpy(mask))
    assert torch.equal(a, b)


def test_batches_depend_only_on_seed_rank_and_step(tmp_path):
    write_store(tmp_path / "f", _arrays(n=40), shard_size=9)
    source = StoreRows(str(tmp_path / "f"), ["latents", "dino_cls"])

    def batches(rank, workers, start=0, total=8):
        loader = step_loader(source, BatchSampler(source.sizes, 6, seed=3, process=rank), start, total, workers)
        return list(loader)

    main, two = batches(0, 0), batches(0, 2)
    assert len(main) == 8
    for a, b in zip(main, two):  # the same batches, whichever process reads them
        assert all(torch.equal(a[k], b[k]) for k in a) and a["latents"].dtype == torch.float32
    for a, b in zip(main[5:], batches(0, 2, start=5)):  # a resumed loader starts at its step
        assert torch.equal(a["latents"], b["latents"])
    other = batches(1, 0)
    assert not any(torch.equal(a["latents"], b["latents"]) for a, b in zip(main, other))  # ranks draw other rows


class _PidRows:
    batch_keys, sizes = ("pid",), [10]

    def batch(self, bucket, rows):
        return {"pid": torch.tensor(os.getpid())}


def test_workers_read_the_batches():
    pids = {int(b["pid"]) for b in step_loader(_PidRows(), BatchSampler([10], 2, seed=0), 0, 6, workers=2)}
    assert os.getpid() not in pids and len(pids) == 2


def test_pool_size_subsets_are_nested_and_do_not_depend_on_shard_order(tmp_path):
    keys = [f"laion/{i:08d}" for i in range(1000)]
    shuffled = list(np.random.default_rng(0).permutation(keys))

    def members(order, shard_size, size):
        folder = tmp_path / f"{shard_size}"
        if not folder.exists():
            write_store(folder, {"subset_u": subset_values(order, seed=7)}, shard_size=shard_size)
        subset = SubsetRows(FeatureStore(folder), size)
        return {order[r] for r in subset.rows(np.arange(len(subset)))}

    small, large = members(keys, 64, 100), members(keys, 64, 300)
    assert small < large and 60 < len(small) < 140 and 240 < len(large) < 360  # nested, about the size asked
    assert members(shuffled, 100, 100) == small and members(shuffled, 100, 300) == large  # order-free
    assert len(members(keys, 64, None)) == 1000


def test_pretrain_on_the_store_matches_training_on_the_whole_split_in_memory(tmp_path):
    """The streaming path gives the weights the old load-everything path gave (torch.equal): per
    batch L2 normalisation and fp16 -> float32 are the same numbers."""
    from lumos.features import condition_tokens, read_features
    from lumos.models import LumosDiT
    from lumos.tasks.i2i import pretrain, untrained_model
    from lumos.settings import ModelSettings, RunSettings, TrainSettings
    from lumos.training.loop import train_diffusion

    write_store(tmp_path / "f", _arrays(n=40), shard_size=9)
    run = RunSettings(injection="cross_attn", tokens="cls", encoder="dino")
    net = ModelSettings(size="DiT-N/2", learn_sigma=True, cond_dropout=0.1)
    cfg = TrainSettings.from_config({"steps": 6, "batch_size": 8, "lr": 1e-3, "warmup_steps": 2,
                                     "checkpoint_every": 3, "log_every": 1}, "pretrain.train")
    summary = pretrain(str(tmp_path / "f"), run, net, cfg, str(tmp_path / "a"), str(tmp_path / "sa"), 0, "cpu")
    assert summary["rows"] == 40
    feats = read_features(str(tmp_path / "f"), ["latents", "dino_cls"])
    cond, mask = condition_tokens(feats, "dino", "cls", "cross_attn")
    model = untrained_model(net, run, (4, 2, 2), cond, 0)
    train_diffusion(model, torch.from_numpy(feats["latents"]), cond, mask, cfg, str(tmp_path / "b"),
                    str(tmp_path / "sb"), seed=0)
    a, b = (LumosDiT.from_pretrained(tmp_path / run / "model").state_dict() for run in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pool_size_trains_on_the_subset_and_says_how_many_rows(tmp_path):
    from lumos.tasks.i2i import PoolRows
    from lumos.settings import RunSettings

    write_store(tmp_path / "f", _arrays(n=40), shard_size=9)
    rows = PoolRows(str(tmp_path / "f"), RunSettings(injection="class", tokens="cls", pool_size=20))
    member = np.flatnonzero(_arrays(n=40)["subset_u"] < 20 / 40)
    assert rows.sizes == [len(member)]
    batch = rows.batch(0, np.arange(len(member)))
    assert torch.equal(batch["cond"], torch.from_numpy(_arrays(n=40)["labels"][member]))


def test_loader_throughput_is_samples_per_second(tmp_path):
    from lumos.training.loader import loader_throughput

    write_store(tmp_path / "f", _arrays(n=40), shard_size=9)
    assert loader_throughput(str(tmp_path / "f"), ["latents", "dino_cls"], 8, workers=0, steps=4) > 0

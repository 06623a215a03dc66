"""The streaming loader: each training step's batch read by row from the feature store.

Training never holds a split in memory. A *row source* says how many rows each bucket has
(`sizes`, one entry without aspect-ratio buckets) and returns the batch of given rows of a bucket
(`batch(bucket, rows)` -> {"x0": latents, and "cond" / "cond_mask" when the run has a
condition}, CPU tensors as the model takes them). `StepBatches` is a dataset whose item `step` is
that step's whole batch, its rows drawn by `BatchSampler` (a function of seed, rank
and step), so a torch DataLoader (batch_size=None) can read ahead with `workers` processes while
the model trains; the batches, and so the weights, are the same with any number of workers.

Row sources (the protocol, and the batch keys each declares: `lumos.training.rows`): `TensorRows`
(tensors in memory: tests, diagnostics), `StoreRows` (named arrays of a features folder),
`BucketRows` (one source per bucket), and the tasks' own (`lumos.tasks.i2i.PoolRows`,
`lumos.tasks.t2i.PairRows`, `lumos.tasks.nvs.ViewRows`, `lumos.tasks.i2v.ClipRows`). Each batch is checked
against its source's `batch_keys`.
"""

from __future__ import annotations

import signal
import time

import numpy as np
import torch

from lumos.training.rows import check_batch_keys


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """A stored array as the model takes it: fp16 -> float32, other dtypes kept."""
    array = np.ascontiguousarray(array)
    return torch.from_numpy(array.astype(np.float32) if array.dtype == np.float16 else array)


class TensorRows:
    """In-memory tensors as a row source: `latents`, `cond`, `cond_mask` each a tensor, or a list
    with one per aspect-ratio bucket (`cond` / `cond_mask` may be None). Kept on the CPU, like
    the store's batches (loader workers and pinned memory need CPU tensors)."""

    def __init__(self, latents, cond=None, cond_mask=None):
        buckets = isinstance(latents, (list, tuple))

        def per_bucket(x):
            if x is None:
                return [None] * len(self.latents)
            return [t.cpu() if t is not None else None for t in (list(x) if buckets else [x])]

        self.latents = [x.cpu() for x in (list(latents) if buckets else [latents])]
        self.cond, self.cond_mask = per_bucket(cond), per_bucket(cond_mask)
        if not len(self.latents) == len(self.cond) == len(self.cond_mask):
            raise ValueError(f"{len(self.latents)} latent buckets but {len(self.cond)} condition buckets")
        self.sizes = [len(x) for x in self.latents]
        with_cond = [c is not None for c in self.cond]  # `lumos.training.rows.RowSource`: a condition's keys when given
        with_mask = [c is not None and m is not None for c, m in zip(self.cond, self.cond_mask)]
        self.batch_keys = ("x0",) + ("cond",) * any(with_cond) + ("cond_mask",) * any(with_mask)

    def batch(self, bucket: int, rows) -> dict[str, torch.Tensor]:
        rows = torch.as_tensor(rows)
        out = {"x0": self.latents[bucket][rows]}
        if self.cond[bucket] is not None:
            out["cond"] = self.cond[bucket][rows]
            if self.cond_mask[bucket] is not None:
                out["cond_mask"] = self.cond_mask[bucket][rows]
        return out


class StoreRows:
    """The arrays `keys` of a features folder as a row source: batch -> {key: tensor}."""

    def __init__(self, features_dir, keys: list[str]):
        from lumos.store import FeatureStore

        self.store, self.keys = FeatureStore(features_dir), list(keys)
        self.sizes = [self.store.n]
        self.batch_keys = tuple(self.keys)  # `lumos.training.rows.RowSource`

    def batch(self, bucket: int, rows) -> dict[str, torch.Tensor]:
        return {k: to_tensor(v) for k, v in self.store.get(np.asarray(rows), self.keys).items()}


class BucketRows:
    """One single-bucket row source per aspect-ratio bucket, as one source."""

    def __init__(self, sources: list):
        self.sources = list(sources)
        self.sizes = [s.sizes[0] for s in self.sources]

    @property
    def batch_keys(self) -> tuple[str, ...]:
        """Its sources' keys (`lumos.training.rows.RowSource`; every bucket's batch carries the same)."""
        return self.sources[0].batch_keys

    def batch(self, bucket: int, rows) -> dict[str, torch.Tensor]:
        return self.sources[bucket].batch(0, rows)


class Column:
    """One field of a row source's batches as a lazily read (n, ...) tensor: `column[a:b]` reads
    those rows only (how samplers walk an evaluation split without loading it)."""

    def __init__(self, source, field: str, n: int | None = None):
        self.source, self.field = source, field
        self.n = source.sizes[0] if n is None else min(n, source.sizes[0])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: slice) -> torch.Tensor:
        if not isinstance(index, slice):
            raise TypeError("a Column is read by slices (column[a:b])")
        return self.source.batch(0, np.arange(*index.indices(self.n)))[self.field]

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n, *self.source.batch(0, np.arange(min(self.n, 1)))[self.field].shape[1:])


class BatchSampler:
    """Random batches whose randomness depends only on (seed, process, step): a resumed run, on
    any number of processes, draws exactly the batches (and noise) it would have drawn.

    `n` is the dataset size, or a list of bucket sizes (aspect-ratio buckets): then each step
    first draws a bucket with probability proportional to its size, and the batch comes from it."""

    def __init__(self, n, batch_size: int, seed: int, process: int = 0):
        self.sizes = list(n) if isinstance(n, (list, tuple)) else [n]
        self.batch_size, self.seed, self.process = batch_size, seed, process
        self.weights = torch.tensor(self.sizes, dtype=torch.float64)

    def next(self, step: int):
        """Indices for `step` and the generator the step's timesteps and noise come from."""
        _, idx, gen = self.next_bucket(step)
        return idx, gen

    def next_bucket(self, step: int):
        """(bucket, indices within it, generator) for `step`; bucket is 0 with a single dataset."""
        key = int(np.random.SeedSequence([self.seed, self.process, step]).generate_state(1)[0])
        gen = torch.Generator().manual_seed(key)
        bucket = 0 if len(self.sizes) == 1 else int(torch.multinomial(self.weights, 1, generator=gen))
        return bucket, torch.randint(0, self.sizes[bucket], (self.batch_size,), generator=gen), gen


class StepBatches(torch.utils.data.Dataset):
    """Item i is the whole batch of step `start + i`: the rows `sampler.next_bucket(step)` draws,
    read from `source`. Depends only on (seed, rank, step), never on which worker reads it.

    `draws(batch, generator)`, if given, adds the step's other random tensors to the batch (the
    training step's timesteps and noise: `lumos.training.loop.StepNoise`), drawn from the step's
    generator after its rows, so they are made ahead of the step like the batch itself."""

    def __init__(self, source, sampler, start: int, total: int, draws=None):
        self.source, self.sampler, self.start, self.total, self.draws = source, sampler, start, total, draws

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        bucket, rows, gen = self.sampler.next_bucket(self.start + i)
        batch = check_batch_keys(self.source, self.source.batch(bucket, rows))
        return {**batch, **self.draws(batch, gen)} if self.draws else batch


def _leave_stop_signals_to_the_trainer(_worker: int) -> None:
    """Loader workers ignore SIGUSR1/SIGTERM (SLURM signals every process of a job): the training
    process checkpoints at the next step and then stops them, instead of losing a worker mid-step."""
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def step_loader(source, sampler, start: int, total: int, workers: int = 0, prefetch: int = 2,
                pin_memory: bool = False, draws=None) -> torch.utils.data.DataLoader:
    """A DataLoader over the batches of steps `start`..`total`-1, in order (with `draws`: see
    `StepBatches`). `workers` = 0 reads in the main process; otherwise `workers` processes each
    keep `prefetch` batches ready. `pin_memory` (GPU runs) puts batches in page-locked memory, so
    `.to(device, non_blocking=True)` copies them without waiting. The loader has its own
    generator, so creating it leaves the global RNG (condition dropout) untouched."""
    return torch.utils.data.DataLoader(
        StepBatches(source, sampler, start, total, draws), batch_size=None, shuffle=False, num_workers=workers,
        prefetch_factor=prefetch if workers else None, pin_memory=pin_memory,
        worker_init_fn=_leave_stop_signals_to_the_trainer if workers else None,
        generator=torch.Generator().manual_seed(0),
    )


def loader_throughput(features_dir: str, keys: list[str], batch_size: int, workers: int, steps: int) -> float:
    """Samples/s of reading random batches of `keys` from a features folder through the loader
    (the first batch, which starts the workers, is not timed): the benchmark's number."""
    source = StoreRows(features_dir, keys)
    batches = iter(step_loader(source, BatchSampler(source.sizes, batch_size, seed=0), 0, steps, workers))
    next(batches)
    t0 = time.perf_counter()
    done = sum(1 for _ in batches)
    return batch_size * max(done, 1) / max(time.perf_counter() - t0, 1e-9)

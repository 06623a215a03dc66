"""Planning for the workflow's rules (rules/*.smk), as plain functions of the validated config and
of wildcard values: no Snakemake object, no global state, unit-tested in tests/test_planning.py.

- `names`: the grammars of run, split, features-folder, fine-tune, snapshot and prior names;
- `splits`: a split's size, curation, T2I stage and buckets, and the encoders its features need;
- `jobs`: how many parallel jobs a task is split over (`jobs(n, unit, cap)`) and how many items
  its jobs make;
- `snapshots`: the EMA snapshots a training run keeps;
- `figures`: which runs and fine-tunes each figure compares;
- `inputs`: the input paths a config names outside results/, and their checks.
"""

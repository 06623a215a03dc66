"""Training shared by every task: the loop (`loop.train_diffusion`), the streaming loader
(`loader`), the row-source protocol a task implements (`rows`) and the resume key of a training
command (`resume`)."""

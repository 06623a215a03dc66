"""Training shared by every task: the loop (`loop.train_diffusion`), the streaming loader
(`loader`), the row-source protocol a task implements (`rows`), the resume key of a training
command (`resume`) and the lock a trainer holds on its state folder (`lock`)."""

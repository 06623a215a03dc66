"""The tasks, one module each: I2I pretraining (`i2i`), and the fine-tunes from its prior: T2I
(`t2i`), novel view synthesis (`nvs`, with LGM's reconstruction in `lgm` / `lgm_run`) and
image-to-video (`i2v`). Every fine-tune starts from a prior through `prior.from_prior` and hands
the trainer a row source (`lumos.training.rows`)."""

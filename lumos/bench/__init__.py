"""Benchmarks that print numbers (`lumos bench`): the CPU model and training costs (`cpu`), the
data path (`data`: curation decode, loader) and the GPU checks (`gpu`)."""

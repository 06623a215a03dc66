"""Pretrained components: one loader per kind (VAE, vision encoder, FID network).

At smoke/tiny scale the DAG trains each component first and saves it in Hugging Face format;
at paper scale the same loaders read hub ids or local paths.
"""

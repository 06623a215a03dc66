"""Pretrained components: one loader per kind (VAE, vision encoder, FID network).

At smoke/tiny scale the DAG trains each component first and saves it in Hugging Face format;
at paper scale the same loaders read hub ids or local paths.
"""

#: The components the DAG can train: `lumos train-component --component`'s choices and the rules'
#: `component` wildcard.
COMPONENTS = ["vae", "dino", "dino_small", "dino_large", "dino_long", "moco", "fid_net", "t5", "clip", "video_net"]

"""`diffusers.DiffusionPipeline`s around the trained Lumos models: text-to-image (Lumos-T2I),
image-to-image (Lumos-I2I), novel view synthesis (Lumos-NVS) and image-to-video (Lumos-I2V).

A saved pipeline folder holds every part (transformer, VAE, scheduler, text or image encoder)
and loads without network access, the diffusers way (docs/pipelines.md)::

    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained("results/t2i/lumos_i2i-t5-mixed-n0/pipeline", trust_remote_code=True)
    images = pipe("a red circle left of a blue square", generator=torch.Generator().manual_seed(0)).images

`model_index.json` names the pipeline as ``["pipeline_lumos_<kind>", "<Class>"]``: the folder's
small module of that name imports the class from the installed `lumos` package (the Hub's layout
for a pipeline defined outside diffusers, hence `trust_remote_code=True`); ``<Class>.from_pretrained``
needs no flag. The DiT is recorded as ``["lumos.models.dit", "LumosDiT"]`` (or
``lumos.models.video``), which diffusers resolves from `sys.modules`: importing the pipeline
module imports it.

Modules: `base` (the shared loop, inputs, outputs, saving), `t2i`, `i2i`, `nvs`, `i2v`, `assemble`
(building pipelines from the workflow's saved parts), `cards` (the model card of an export).
"""

from lumos.pipelines.assemble import (assemble_i2i_pipeline, assemble_i2v_pipeline, assemble_nvs_pipeline,
                                      assemble_t2i_pipeline, pipeline_sampler)
from lumos.pipelines.base import OUTPUT_TYPES, LumosPipelineBase, LumosVideoPipelineOutput
from lumos.pipelines.i2i import LumosI2IPipeline
from lumos.pipelines.i2v import LumosI2VPipeline
from lumos.pipelines.nvs import LumosNVSPipeline
from lumos.pipelines.t2i import LumosT2IPipeline

__all__ = ["OUTPUT_TYPES", "LumosI2IPipeline", "LumosI2VPipeline", "LumosNVSPipeline", "LumosPipelineBase",
           "LumosT2IPipeline", "LumosVideoPipelineOutput", "assemble_i2i_pipeline", "assemble_i2v_pipeline",
           "assemble_nvs_pipeline", "assemble_t2i_pipeline", "pipeline_sampler"]

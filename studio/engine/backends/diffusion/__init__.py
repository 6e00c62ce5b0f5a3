"""Diffusion image backends: a diffusers pipeline on torch (diffusers_image.py, from a folder or a
single-file checkpoint, single_file_pipeline.py) or with ONNX Runtime sessions standing in for its networks
(onnx_diffusion.py). Both run jobs through pipeline_jobs.py, with the samplers of schedulers.py,
the step previews of previews.py and, on torch, the LoRAs of lora.py."""

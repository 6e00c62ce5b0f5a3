"""Morphs: videos that walk between keyframes. latent_morph.py walks a latent model's space (and
encodes pictures into keyframes), diffusion_morph.py travels between seeds and prompts of a
diffusion model; budget.py checks, before the first frame, that the frames will fit in memory."""

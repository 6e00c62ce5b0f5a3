"""Latent backends: our own latent models, whose decoders turn a latent vector into a picture
(and a VAE's encoder, a picture into one), on torch (torch_latent.py) or ONNX Runtime
(onnx_latent.py); one_at_a_time.py is the memory saving both fall back on."""

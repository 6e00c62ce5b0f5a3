"""ONNX exports of the models the studio runs on torch (`studio export-onnx`, and the runtime
picker's "export first"): onnx_export.py is the command and says whether a model can be exported;
graph.py traces one network and records the parity check; latent.py, diffusion.py and text.py are
the exporters, one per family. torch is imported only when an export runs."""

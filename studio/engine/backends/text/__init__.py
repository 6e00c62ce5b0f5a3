"""Text backends: a causal language model on torch (transformers_text.py) or exported to ONNX
with its KV cache (onnx_text.py), sharing the prompt assembly (prompt_context.py), the samplers
(sampling.py) and the sandboxed chat templates of instruct mode (chat_template.py)."""

"""Studio: an offline desktop studio for generative models."""

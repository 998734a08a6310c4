"""Converters from external checkpoints (Hugging Face) into omnifuse encoders; the same code
serves model building (``pretrained:`` config fields) and the parity tests."""

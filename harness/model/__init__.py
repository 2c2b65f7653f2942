"""Local models the harness can build itself (no model hub needed)."""

from harness.model.tiny import build_tiny_model, default_model_dir, is_complete

__all__ = ["build_tiny_model", "default_model_dir", "is_complete"]

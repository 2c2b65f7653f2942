"""Local models the harness can build itself (no model hub needed): see harness.model.tiny."""

"""Commands beyond `run`: sweep, matrix, history, verify, dashboards, engine install."""

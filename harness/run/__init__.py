"""Run mechanics: the pipeline, its context, the evaluate stage and fault injection."""

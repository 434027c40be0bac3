"""Consumer processes: claim tasks from Redis, run the pipeline, record results."""

"""Infrastructure that knows nothing of the method: run directories (record, lock,
checkpoints, metrics), strict JSON, provenance, devices and processes, CLI error handling."""

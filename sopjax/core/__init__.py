"""The method itself, free of I/O: losses, the sparse term, the per-sample tables, the
optimizer that trains them, the training state and the method registry."""

"""Datasets: CIFAR images, label noise (synthetic and CIFAR-N), host arrays and their checks,
normalization constants, and folder datasets streamed by grain."""

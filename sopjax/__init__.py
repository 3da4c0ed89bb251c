"""sopjax: Sparse Over-Parameterization (SOP) for training classifiers on noisy labels, in JAX."""

__version__ = "0.2.0"

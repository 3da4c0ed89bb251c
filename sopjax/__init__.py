"""sopjax: Sparse Over-Parameterization (SOP) for training classifiers on noisy labels, in JAX."""

__version__ = "0.2.0"


def __getattr__(name: str):
    # sopjax.find_label_issues(...) without importing the training stack with the package.
    if name == "find_label_issues":
        import importlib

        return importlib.import_module("sopjax.find_label_issues")
    raise AttributeError(f"module 'sopjax' has no attribute {name!r}")

"""Errors shared by the data modules, importable without the I/O stack."""


class DataError(RuntimeError):
    """A dataset is missing or corrupt. The message names the file and the fix."""

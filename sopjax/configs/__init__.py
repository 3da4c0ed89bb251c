"""Run configuration (:class:`Config`) and the named presets (:data:`PRESETS`)."""

from sopjax.configs.config import Config
from sopjax.configs.presets import PRESETS

__all__ = ["Config", "PRESETS"]

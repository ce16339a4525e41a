"""Stage 1, load: preference datasets of every supported format into canonical tables."""

from admap.load import columns, hh_rlhf, pairs, ultrafeedback  # noqa: F401  (register the formats)
from admap.load.base import FORMATS, LoadOptions
from admap.load.dataset import load_preferences
from admap.load.schema import PreferenceData

__all__ = ["FORMATS", "LoadOptions", "PreferenceData", "load_preferences"]

"""Preprocessing on the device: normalization, crop and flip, the epoch's data order, and
SOP+'s strong view (AutoAugment, Cutout)."""

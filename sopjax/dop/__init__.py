"""Double over-parameterization (DOP) for robust image restoration: the deep image prior
with the sparse term g⊙g − h⊙h (:mod:`sopjax.core.overparam`, shared with SOP)."""

"""What a network must be to train with :func:`sopjax.fit`, and the check that says, in one
line, which rule a given network breaks.

The contract (every network of :mod:`sopjax.models` keeps it):

1. a ``flax.linen.Module``;
2. ``__call__(x, train: bool)``: ``x`` is a batch (B, …) float32, i.e. uint8 images already
   scaled by the run's normalization, or float features as given; ``train`` is True in
   training steps and False in evaluation (BatchNorm and dropout switch on it);
3. it returns logits (B, K) for the K classes of the data;
4. its variables are ``params`` (trained) and optionally ``batch_stats`` (BatchNorm running
   statistics, updated in training steps); no other collection;
5. the logits come from its last ``nn.Dense`` call (the neural-collapse measures read that
   layer's input and weights).
"""

from __future__ import annotations

import jax
import numpy as np

CONTRACT = ("a flax.linen.Module whose __call__(x, train: bool) returns logits (batch, num_classes), "
            "with variables 'params' and optionally 'batch_stats' (sopjax.models.contract)")


def _init(model, key, x):
    try:
        return model.init(key, x, train=False)
    except TypeError as e:
        if "train" in str(e):
            raise ValueError(f"the model's __call__ must take the keyword train (True in training steps, False in "
                             f"evaluation), e.g. def __call__(self, x, train: bool = False); got: {e}") from None
        raise


def init_checked(model, key, x, num_classes: int) -> dict:
    """``model.init(key, x, train=False)``, checked against the contract above.

    Args:
      model: the network.
      key: a JAX PRNG key.
      x: (1, …) float32, one network input.
      num_classes: K.

    Returns:
      The variables {"params": …, "batch_stats": … (if any)}.

    Raises:
      ValueError: one line naming the rule the model breaks and the fix.
    """
    if not (callable(getattr(model, "init", None)) and callable(getattr(model, "apply", None))):
        raise ValueError(f"the model must be {CONTRACT}; got {type(model).__name__}")
    variables = _init(model, key, x)
    other = sorted(set(variables) - {"params", "batch_stats"})
    if other:
        raise ValueError(f"the model has the variable collection(s) {', '.join(other)}; fit trains 'params' and "
                         "updates 'batch_stats' only")
    out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    shape = getattr(out, "shape", None)
    if shape != (len(x), num_classes) or not np.issubdtype(out.dtype, np.floating):
        raise ValueError(f"the model returns {shape if shape is not None else type(out).__name__} for a batch of "
                         f"{len(x)}; it must return float logits (batch, num_classes) = ({len(x)}, {num_classes})")
    return variables

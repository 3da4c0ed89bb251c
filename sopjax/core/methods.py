"""The method registry: one entry per training method, read by the step, the CLI, the
comparison and the docs.

A method is its loss and three facts about it: whether it trains the per-sample tables
u (N, 1), v (N, K); whether its loss needs a second, strongly augmented view of the batch;
and the table learning rates the paper uses for it on CIFAR-10 (Table A.1). Adding a method
is one :func:`register` call with its loss; nothing else in the library names methods.

A loss is called inside the jitted step as ``loss(logits, y, rows, strong, spec)``:

- logits (B, K) float32, the network's output on the (weak) view;
- y (B,) int32, the given labels;
- rows: {"u": (B, 1), "v": (B, K)} float32, the batch's rows of the tables (None for a
  method without tables);
- strong: (B, K) float32 logits of the strong view (None unless ``strong_view``);
- spec: the step's static settings (:class:`sopjax.trainers.step.StepSpec`; a loss reads
  the fields it needs, e.g. ``spec.sop_variant``, ``spec.lambda_c``).

It returns ``(loss, aux)``: the batch-mean scalar loss and a dict of batch-mean scalars
that the trainer logs as ``train_<name>``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from sopjax.core import losses


@dataclasses.dataclass(frozen=True)
class Method:
    """One registry entry.

    name: the CLI's ``--method`` value. loss: see the module docstring. tables: trains u, v.
    strong_view: the loss takes a strong view's logits. lr_u, lr_v: the paper's CIFAR-10
    table learning rates for this method (None without tables). summary, source: one line
    each for ``--help`` and the docs.
    """

    name: str
    loss: Callable
    tables: bool
    strong_view: bool
    lr_u: float | None
    lr_v: float | None
    summary: str
    source: str


def _ce(logits, y, rows, strong, spec):
    loss = losses.cross_entropy(logits, y)
    return loss, {"ce": loss}


def _sop(logits, y, rows, strong, spec):
    return losses.sop_loss(logits, y, rows["u"], rows["v"], spec.sop_variant)


def _sop_plus(logits, y, rows, strong, spec):
    return losses.sop_plus_loss(logits, strong, y, rows["u"], rows["v"], spec.lambda_c, spec.lambda_b,
                                spec.sop_variant)


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` (or replace the entry of that name); returns it."""
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove ``name`` from the registry (for a method registered by a test or a plug-in)."""
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    """The registered method names, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> Method:
    """The entry ``name``. Raises ValueError naming the registered methods."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"--method must be one of {', '.join(_REGISTRY)}, got {name!r}") from None


register(Method("ce", _ce, tables=False, strong_view=False, lr_u=None, lr_v=None,
                summary="cross-entropy on the given labels (the baseline)", source="paper §4, 'CE'"))
register(Method("sop", _sop, tables=True, strong_view=False, lr_u=10.0, lr_v=10.0,
                summary="SOP: cross-entropy on φ(softmax f + U² − V²) plus the MSE term that trains v",
                source="paper eqs. 5–9, Algorithm 1; the authors' model/loss.py"))
register(Method("sop_plus", _sop_plus, tables=True, strong_view=True, lr_u=10.0, lr_v=10.0,
                summary="SOP+: SOP plus consistency with an AutoAugment view and class balance",
                source="paper §4 and App. A.3; the authors' overparametrization_loss"))

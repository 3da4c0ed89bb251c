"""Evaluation of a trained state: predictions, wrong-label detection, neural collapse, the
per-epoch record, the end-of-run report, the CE-vs-SOP comparison and the plots."""

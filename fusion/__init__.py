"""Multimodal ultrasound deep learning: per-modality CNNs, texture baseline, late / embedding / joint fusion.

Start with :func:`cross_validate` (returns a :class:`CVResult`); ``python -m fusion.train`` is its
command-line shell.
"""
from fusion.api import CVResult, cross_validate

__all__ = ["cross_validate", "CVResult"]

"""Multimodal ultrasound deep learning: per-modality CNNs, texture baseline, late / embedding / joint fusion.

Start with :func:`cross_validate` (returns a :class:`CVResult`); ``python -m fusion.train`` is its
command-line shell.  Imported lazily, so that ``fusion.evaluate`` and the other torch-free
modules load without torch.
"""
__all__ = ["cross_validate", "CVResult"]


def __getattr__(name):
    if name in __all__:
        from fusion import api

        return getattr(api, name)
    raise AttributeError(f"module 'fusion' has no attribute {name!r}")

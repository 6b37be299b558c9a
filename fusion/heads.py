"""Fusion heads: from one embedding per source (and which sources are present) to class logits.

A *source* is one input block of a joint network: an image modality (B-mode, CDFI,
elastography) or the clinical variables. Every head takes

* ``h``: float ``(B, S, D)``, one ``D``-dimensional embedding per source, and
* ``mask``: bool ``(B, S)``, True where the source is present (and switched on),

and returns logits ``(B, n_classes)``. An absent source never reaches the output through its
embedding: :class:`ConcatHead` multiplies its slot by 0 and :class:`GatedAttentionHead`
gives it attention weight exactly 0 (masked before the softmax). Both heads also see the mask
itself (one 0/1 indicator per source), so "no CDFI image" is information the head can use,
and a patient with no source at all gets a defined output (the head's answer to an all-zero
input), which modality dropout during training teaches to be close to the class prior.

References
----------
Ilse M, Tomczak JM, Welling M. Attention-based deep multiple instance learning. ICML 2018,
PMLR 80:2127-2136. arXiv:1802.04712 (the gated attention pooling of :class:`GatedAttentionHead`).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["FUSION_HEADS", "ConcatHead", "GatedAttentionHead", "create_fusion_head", "masked_softmax"]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of ``scores`` ``(B, S)`` over the sources where ``mask`` is True.

    Masked sources get weight exactly 0; a row with no source gets all-zero weights (not NaN).
    """
    mask = mask.bool()
    any_source = mask.any(dim=1, keepdim=True)
    scores = scores.masked_fill(~mask, float("-inf"))
    scores = torch.where(any_source, scores, torch.zeros_like(scores))
    return torch.softmax(scores, dim=1) * mask.to(scores.dtype)


class ConcatHead(nn.Module):
    """MLP over the concatenated source embeddings (absent ones zeroed) and the mask.

    ``logits = MLP([m_1 h_1, ..., m_S h_S, m_1, ..., m_S])`` with ``m_s`` in {0, 1}.
    """

    def __init__(self, n_sources: int, dim: int, num_classes: int, hidden: int = 128, dropout: float = 0.2):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(n_sources * dim + n_sources, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, num_classes))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(h.dtype)
        z = torch.cat([(h * m.unsqueeze(-1)).flatten(1), m], dim=1)
        return self.mlp(z)


class GatedAttentionHead(nn.Module):
    """Gated attention pooling over the present sources (Ilse et al. 2018), then an MLP.

    ``a_s = w^T (tanh(V h_s) * sigmoid(U h_s))``, ``alpha = softmax over present s of a_s``,
    ``z = sum_s alpha_s h_s``, ``logits = MLP([z, m_1, ..., m_S])``. :attr:`last_weights` holds
    the attention weights ``alpha`` ``(B, S)`` of the last forward (detached), for reporting.
    """

    def __init__(self, n_sources: int, dim: int, num_classes: int, hidden: int = 128, attention_dim: int = 64,
                 dropout: float = 0.2):
        super().__init__()
        self.V = nn.Linear(dim, attention_dim)
        self.U = nn.Linear(dim, attention_dim)
        self.w = nn.Linear(attention_dim, 1)
        self.mlp = nn.Sequential(nn.Linear(dim + n_sources, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, num_classes))
        self.last_weights: torch.Tensor | None = None

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.w(torch.tanh(self.V(h)) * torch.sigmoid(self.U(h))).squeeze(-1)
        alpha = masked_softmax(scores, mask)
        self.last_weights = alpha.detach()
        z = (alpha.unsqueeze(-1) * h).sum(dim=1)
        return self.mlp(torch.cat([z, mask.to(h.dtype)], dim=1))


#: Fusion heads by name (``fusion=`` of :func:`fusion.joint.joint_fusion_predictions`).
FUSION_HEADS = {"concat": ConcatHead, "gated": GatedAttentionHead}


def create_fusion_head(name: str, n_sources: int, dim: int, num_classes: int, **kwargs) -> nn.Module:
    """The head registered as ``name`` in :data:`FUSION_HEADS` (unknown -> ConfigError with did-you-mean)."""
    from analysis.errors import ConfigError, did_you_mean

    if name not in FUSION_HEADS:
        raise ConfigError(f"unknown fusion head {name!r} (expected: {', '.join(FUSION_HEADS)})"
                          f"{did_you_mean(name, FUSION_HEADS)}")
    return FUSION_HEADS[name](n_sources, dim, num_classes, **kwargs)

"""Peer methods, re-implemented to be checkpoint-compatible with their official code.

    liif    LIIF (yinboc/liif)                        :class:`LIIF`
    lte     LTE, and LTE+ weights (jaewon-lee-b/lte)  :class:`LTE`
    lmliif  LM-LIIF (HeZongyao/LMF)                   :class:`LMLIIF`
    lmlte   LM-LTE (HeZongyao/LMF), with CMSR         :class:`LMLTE`
    gaussiansr  GaussianSR (tljxyys/GaussianSR)       :class:`GaussianSR`
    continuoussr  ContinuousSR (peylnog/ContinuousSR) :class:`ContinuousSR`

Every model takes and returns [0, 1] images (the official [-1, 1] normalisation is inside):
``forward(lr, coord, cell)`` for training and ``predict_full(lr, H, W)`` for whole images, which
applies each repository's test-time cell rule. Official ``.pth`` checkpoints load with
``gblsr.load_model`` (see :mod:`gblsr.peers.convert`). docs/methods.md has
the details.
"""

from . import (
    continuoussr_convert,  # noqa: F401  (registers 'continuous-gaussian' files)
    convert,  # noqa: F401  (registers the official-checkpoint converter)
    gaussiansr_convert,  # noqa: F401  (registers 'gaussian-splatter' files)
)
from .continuoussr import ContinuousSR
from .gaussiansr import GaussianSR
from .liif import LIIF
from .lmf import LMLIIF, LMLTE
from .lte import LTE

__all__ = ["ContinuousSR", "GaussianSR", "LIIF", "LTE", "LMLIIF", "LMLTE"]

"""Peer methods, re-implemented to be checkpoint-compatible with their official code.

    liif    LIIF (yinboc/liif)                        :class:`LIIF`
    lte     LTE, and LTE+ weights (jaewon-lee-b/lte)  :class:`LTE`
    lmliif  LM-LIIF (HeZongyao/LMF)                   :class:`LMLIIF`
    lmlte   LM-LTE (HeZongyao/LMF), with CMSR         :class:`LMLTE`

Every model takes and returns [0, 1] images (the official [-1, 1] normalisation is inside):
``forward(lr, coord, cell)`` for training and ``predict_full(lr, H, W)`` for whole images, which
applies each repository's test-time cell rule. Official ``.pth`` checkpoints load with
``gblsr.load_model`` (see :mod:`gblsr.peers.convert`). The README section "Peer methods" has
the details.
"""

from . import convert  # noqa: F401  (registers the official-checkpoint converter)
from .continuoussr import ContinuousSR  # noqa: F401
from .liif import LIIF
from .lmf import LMLIIF, LMLTE
from .lte import LTE

__all__ = ["LIIF", "LTE", "LMLIIF", "LMLTE"]

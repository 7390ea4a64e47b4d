"""Cell-centre coordinates; they live in :mod:`gblsr.geometry` and are re-exported here."""

from ..geometry import axis_centres, make_coord

__all__ = ["make_coord", "axis_centres"]

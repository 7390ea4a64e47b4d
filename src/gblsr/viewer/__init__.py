"""Deep-zoom web viewer (``gblsr-view``): renders a continuous representation tile by tile,
on demand, at magnifications beyond the input's size, side by side with other methods."""

from .app import build_views, default_checkpoint, run_viewer
from .bicubic import BicubicRepresentation
from .server import View, ViewerApp, make_server
from .tiles import Level, build_levels, render_tile, tile_window

__all__ = [
    "BicubicRepresentation",
    "Level",
    "View",
    "ViewerApp",
    "build_levels",
    "build_views",
    "default_checkpoint",
    "make_server",
    "render_tile",
    "run_viewer",
    "tile_window",
]

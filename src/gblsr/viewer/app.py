"""``gblsr-view`` end to end: read the image, encode it once per model, serve the page."""

from __future__ import annotations

import sys
import threading
import webbrowser
from pathlib import Path

import torch

from ..data.image_io import read_image
from ..errors import UserInputError
from .bicubic import BicubicRepresentation
from .server import View, ViewerApp, make_server
from .tiles import MAX_SCALE_LIMIT

__all__ = ["default_checkpoint", "build_views", "run_viewer"]


def default_checkpoint() -> str | None:
    """The model used when no --checkpoint is given: the built-in default, when installed."""
    from ..checkpoint import DEFAULT_MODEL, default_model_path

    return DEFAULT_MODEL if default_model_path().is_file() else None


@torch.no_grad()
def _encode(path: str, lr: torch.Tensor, device: torch.device) -> View:
    from ..checkpoint import load_model

    model = load_model(path, device=device)
    if getattr(model, "task", None) != "sr" or not hasattr(model, "encode"):
        raise UserInputError(
            f"{Path(path).name} is not an arbitrary-scale model; the viewer needs one that "
            "renders any output size"
        )
    rep = model.encode(lr.to(device))
    return View(f"{model.registry_name} ({Path(path).name})", rep, tuple(lr.shape[-2:]))


def build_views(
    image: str,
    checkpoint: str | None = None,
    compare: list[str] | tuple[str, ...] = (),
    device: str | torch.device = "cpu",
) -> list[View]:
    """The panels: the main model (``checkpoint`` or the default), then each of ``compare``
    ("bicubic" or a model file), every one an encoding of ``image``."""
    checkpoint = checkpoint or default_checkpoint()
    if checkpoint is None and not compare:
        raise UserInputError(
            "--checkpoint FILE is required (this gblsr has no built-in default model); "
            "or view a baseline alone with --compare bicubic"
        )
    lr = read_image(image).rgb.unsqueeze(0)
    device = torch.device(device)
    views = [_encode(checkpoint, lr, device)] if checkpoint else []
    for item in compare:
        if item.lower() == "bicubic":
            views.append(View("bicubic", BicubicRepresentation(lr), tuple(lr.shape[-2:])))
        elif Path(item).is_file():
            views.append(_encode(item, lr, device))
        else:
            raise UserInputError(f"--compare {item!r}: not 'bicubic' and not a model file")
    return views


def run_viewer(
    image: str,
    checkpoint: str | None = None,
    compare: list[str] | tuple[str, ...] = (),
    max_scale: float = 16.0,
    port: int = 0,
    open_browser: bool = False,
    device: str | torch.device = "cpu",
    tile_size: int = 256,
    cache_bytes: int = 256 << 20,
    workers: int = 2,
    verbose: bool = False,
    ready: threading.Event | None = None,
    servers: list | None = None,
) -> int:
    """Serve the viewer until interrupted. ``ready``/``servers`` let a caller (a test) know
    the server is up and stop it with ``servers[0].shutdown()``."""
    if not (1.0 <= max_scale <= MAX_SCALE_LIMIT):
        raise UserInputError(f"--max-scale must be between 1 and {MAX_SCALE_LIMIT:g}")
    if not (0 <= port <= 65535):
        raise UserInputError(f"--port must be between 0 and 65535, got {port}")
    views = build_views(image, checkpoint, compare, device)
    app = ViewerApp(
        views,
        max_scale=max_scale,
        tile_size=tile_size,
        cache_bytes=cache_bytes,
        workers=workers,
        title=Path(image).name,
    )
    try:
        server = make_server(app, "127.0.0.1", port, verbose=verbose)
    except OSError as e:
        app.close()
        raise UserInputError(f"cannot listen on 127.0.0.1:{port}: {e.strerror or e}") from None
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    h, w = app.input_size
    top = app.levels[-1]
    names = ", ".join(v.name for v in views)
    print(
        f"gblsr-view: {Path(image).name} {w}x{h}, up to x{max_scale:g} ({top.width}x{top.height})"
    )
    print(f"gblsr-view: views: {names}")
    print(f"gblsr-view: serving {url}  (Ctrl-C to stop)", flush=True)
    if servers is not None:
        servers.append(server)
    if ready is not None:
        ready.set()
    if open_browser:
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("gblsr-view: stopped", file=sys.stderr)
    finally:
        server.server_close()
        app.close()
    return 0

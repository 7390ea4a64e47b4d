"""gblsr-view in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
driven by Selenium; nothing downloads a browser) opens the page, zooms in several steps, and
the page's state and a screenshot show tiles beyond the input's size requested and drawn, in
every view, with the views in sync."""

from __future__ import annotations

import io
import math
import shutil
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

import gblsr
from gblsr.data.image_io import to_uint8
from gblsr.viewer import View, ViewerApp, make_server
from gblsr.viewer.bicubic import BicubicRepresentation

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster than two on busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _browser_paths() -> tuple[str, str]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("browser test skipped: selenium is not installed (pip install -e .[dev])")
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "browser test skipped: no Chromium here (apt-get install chromium chromium-driver)"
        )
    return browser, driver


def _test_image(h: int, w: int) -> torch.Tensor:
    """(1, 3, h, w): colour ramps under a checkerboard, so every region has structure."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    checker = ((x // 4 + y // 4) % 2).float()
    img = torch.stack([x / (w - 1), y / (h - 1), 0.2 + 0.6 * checker])
    return img[None].float()


@pytest.fixture
def served():
    lr = _test_image(48, 64)
    torch.manual_seed(0)
    model = gblsr.create_model(
        "gblsr_asr",
        encoder="edsr",
        encoder_cfg={"num_blocks": 1, "num_features": 8},
        decoder_cfg={"p_max": 4},
    ).eval()
    with torch.no_grad():
        rep = model.encode(lr)
    views = [View("gblsr_asr", rep, (48, 64)), View("bicubic", BicubicRepresentation(lr), (48, 64))]
    app = ViewerApp(views, max_scale=16, tile_size=128, workers=2, title="browser test")
    server = make_server(app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield app, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    app.close()


@pytest.fixture
def driver():
    browser, chromedriver = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1000,640",
        "--force-device-scale-factor=1",
    ):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(chromedriver), options=opts)
    d.set_script_timeout(30)
    yield d
    d.quit()


def _wait(d, script: str, timeout: float = 60.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if d.execute_script(script):
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


def _expected_view(d, app: ViewerApp, index: int, box: dict) -> np.ndarray:
    """What view ``index`` should show: its visible window of the top level, rendered by the
    server's own representation, resized to the view's size on screen."""
    b = d.execute_script(
        "const v = window.gblsrViewer.viewers[arguments[0]].viewport;"
        "const r = v.viewportToImageRectangle(v.getBounds(true));"
        "return [r.x, r.y, r.width, r.height];",
        index,
    )
    top = app.levels[-1]
    x0, y0 = max(0, math.floor(b[0])), max(0, math.floor(b[1]))
    x1, y1 = min(top.width, math.ceil(b[0] + b[2])), min(top.height, math.ceil(b[1] + b[3]))
    with torch.no_grad():
        win = app.views[index].rep.render_region(y0, x0, y1 - y0, x1 - x0, top.height, top.width)
    img = Image.fromarray(to_uint8(win[0]).permute(1, 2, 0).numpy())
    return np.asarray(img.resize((int(box["w"]), int(box["h"])), Image.BILINEAR), dtype=float)


def test_zooming_past_the_input_size_draws_rendered_tiles_in_sync(served, driver):
    app, url = served
    d = driver
    d.get(url)
    _wait(d, "return window.gblsrViewer && window.gblsrViewer.ready")
    _wait(d, "return window.gblsrViewer.idle()")
    mags = [d.execute_script("return window.gblsrViewer.view().magnification")]
    # zoom in several steps about a point off the centre, as a user would
    for _ in range(4):
        d.execute_script("window.gblsrViewer.zoomBy(1.7, 0.6, 0.4)")
        time.sleep(0.2)
        _wait(d, "return window.gblsrViewer.idle()")
        state = d.execute_script("return window.gblsrViewer.view()")
        mags.append(state["magnification"])
        zooms = {round(v["zoom"], 9) for v in state["views"]}
        centers = {tuple(round(c, 9) for c in v["center"]) for v in state["views"]}
        assert len(zooms) == 1 and len(centers) == 1, state  # views in sync
    # deeper at every step until --max-scale, which zooming never passes
    assert all(b > a or b == pytest.approx(16) for a, b in zip(mags, mags[1:])), mags
    assert 8 < mags[-1] <= 16 + 1e-6, mags

    page = d.execute_script(
        "const s = window.gblsrViewer;"
        "return {requested: s.requested, drawn: s.drawn, failed: s.failed,"
        " mag: document.getElementById('mag').textContent,"
        " labels: Array.from(document.querySelectorAll('.label')).map(e => e.textContent),"
        " boxes: Array.from(document.querySelectorAll('.view')).map(e => {"
        "   const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height};"
        " })};"
    )
    assert page["failed"] == 0
    assert page["mag"] == f"\u00d7{mags[-1]:.1f}"
    assert page["labels"][0].startswith("gblsr_asr") and page["labels"][1].startswith("bicubic")
    deep = [lv.index for lv in app.levels if lv.scale > 8]
    for view in (0, 1):
        assert any(page["requested"].get(f"{view}:{lv}", 0) > 0 for lv in deep), page
        assert any(page["drawn"].get(f"{view}:{lv}", 0) > 0 for lv in deep), page
    assert sum(app.served.get(lv, 0) for lv in deep) >= 2

    shot = np.asarray(Image.open(io.BytesIO(d.get_screenshot_as_png())).convert("RGB"), float)
    for index, box in enumerate(page["boxes"]):
        x, y, w, h = (int(round(box[k])) for k in ("x", "y", "w", "h"))
        seen = shot[y : y + h, x : x + w]
        want = _expected_view(d, app, index, box)
        # the label overlay sits in the top-left corner; compare below it
        diff = np.abs(seen[40:] - want[40 : seen.shape[0]]).mean()
        assert diff < 12, f"view {index}: screen differs from the rendered tiles by {diff:.1f}"
        # and it is not the empty view's background (#3c3c3c), which an undrawn canvas shows
        assert np.abs(seen[40:] - 0x3C).mean() > 20, f"view {index} looks blank"
    bicubic = shot[int(page["boxes"][1]["y"]) + 40 :, int(page["boxes"][1]["x"]) :][:200, :200]
    assert bicubic.std() > 20  # the checkerboard is on screen, not a blank canvas


class _SlowBicubic(BicubicRepresentation):
    """Bicubic whose deep tiles take a while, as a big model's would."""

    def render_region(self, top, left, height, width, H, W, **options):
        if H > 8 * self.input_size[0]:
            time.sleep(0.3)
        return super().render_region(top, left, height, width, H, W, **options)


def test_tiles_left_behind_are_aborted_and_not_rendered(driver):
    lr = _test_image(96, 128)
    app = ViewerApp([View("slow", _SlowBicubic(lr), (96, 128))], 16, tile_size=256, workers=1)
    server = make_server(app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        d = driver
        d.get(f"http://127.0.0.1:{server.server_address[1]}/")
        _wait(d, "return window.gblsrViewer && window.gblsrViewer.ready")
        _wait(d, "return window.gblsrViewer.idle()")
        d.execute_script("window.gblsrViewer.zoomBy(3, 0.2, 0.2)")  # many slow tiles start
        _wait(d, "return window.gblsrViewer.inflight >= 2", timeout=10)
        # the user moves on to the other side of the image before they arrive
        d.execute_script(
            "window.gblsrViewer.viewers[0].viewport.panTo(new OpenSeadragon.Point(0.85, 0.6), true)"
        )
        _wait(d, "return window.gblsrViewer.dropped > 0", timeout=10)
        _wait(d, "return window.gblsrViewer.idle()")
        state = d.execute_script("const s = window.gblsrViewer; return [s.dropped, s.failed]")
        assert state[0] > 0 and state[1] == 0, state
        assert app.pool.pending == 0
        # the dropped tiles were not all rendered: fewer renders than requests
        requested = sum(d.execute_script("return Object.values(window.gblsrViewer.requested)"))
        assert app.pool.completed < requested, (app.pool.completed, requested)
    finally:
        server.shutdown()
        server.server_close()
        app.close()

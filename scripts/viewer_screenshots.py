#!/usr/bin/env python
"""Screenshots of gblsr-view for docs/viewer.md: the whole image, and a deep zoom beside
bicubic. Needs selenium and Debian's chromium + chromium-driver.

    python scripts/viewer_screenshots.py --checkpoint model.safetensors --image lr.png \
        --out docs/images --zoom-at 0.62 0.35

Writes viewer_whole.png and viewer_deep_zoom.png into --out, and prints the magnifications.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path

from gblsr.viewer import ViewerApp, build_views, make_server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--out", default="docs/images")
    p.add_argument("--max-scale", type=float, default=16.0)
    p.add_argument("--zoom-at", type=float, nargs=2, default=(0.5, 0.33), metavar=("X", "Y"))
    p.add_argument("--zoom", type=float, default=16.0, help="total zoom factor from the fit")
    p.add_argument("--window", default="1280,640")
    args = p.parse_args(argv)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    views = build_views(args.image, args.checkpoint, ["bicubic"])
    app = ViewerApp(views, max_scale=args.max_scale, title=Path(args.image).name)
    server = make_server(app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("google-chrome")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(a)
    opts.add_argument(f"--window-size={args.window}")
    opts.add_argument("--force-device-scale-factor=1")
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)

    def wait(script: str) -> None:
        end = time.time() + 300
        while not d.execute_script(script):
            if time.time() > end:
                raise TimeoutError(script)
            time.sleep(0.2)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        d.get(f"http://127.0.0.1:{server.server_address[1]}/")
        wait("return window.gblsrViewer && window.gblsrViewer.ready")
        wait("return window.gblsrViewer.idle()")
        time.sleep(0.5)
        d.save_screenshot(str(out / "viewer_whole.png"))
        print("whole:", d.execute_script("return window.gblsrViewer.view().magnification"))
        x, y = args.zoom_at
        steps = 4
        for _ in range(steps):
            d.execute_script(f"window.gblsrViewer.zoomBy({args.zoom ** (1 / steps)}, {x}, {y})")
            time.sleep(0.3)
        d.execute_script(
            f"window.gblsrViewer.viewers[0].viewport.panTo(new OpenSeadragon.Point({x}, {y}), true)"
        )
        wait("return window.gblsrViewer.idle()")
        time.sleep(0.5)
        d.save_screenshot(str(out / "viewer_deep_zoom.png"))
        print("deep:", d.execute_script("return window.gblsrViewer.view().magnification"))
    finally:
        d.quit()
        server.shutdown()
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The viewer's HTTP server: page, assets and tiles over real HTTP, 4xx for bad requests,
bounded concurrency and memory, withdrawn work, and the command line."""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gblsr
from gblsr.cli import view as view_cli
from gblsr.data.image_io import to_uint8
from gblsr.representation import Representation
from gblsr.viewer import View, ViewerApp, make_server, run_viewer
from gblsr.viewer.bicubic import BicubicRepresentation
from gblsr.viewer.server import RenderPool, TileCache
from gblsr.viewer.tiles import tile_window

H_IN, W_IN = 24, 30
TINY = {"encoder": "edsr", "encoder_cfg": {"num_blocks": 1, "num_features": 8}}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster than two on busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _asr_model():
    torch.manual_seed(0)
    return gblsr.create_model("gblsr_asr", **TINY, decoder_cfg={"p_max": 4}).eval()


@pytest.fixture(scope="module")
def lr():
    torch.manual_seed(1)
    return torch.rand(1, 3, H_IN, W_IN)


class Running:
    def __init__(self, app: ViewerApp):
        self.app = app
        self.server = make_server(app)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def get(self, path: str, method: str = "GET", headers=None, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.getheader("Content-Type"), r.read()
        finally:
            conn.close()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.app.close()


@pytest.fixture(scope="module")
def running(lr):
    with torch.no_grad():
        rep = _asr_model().encode(lr)
    views = [
        View("gblsr_asr", rep, (H_IN, W_IN)),
        View("bicubic", BicubicRepresentation(lr), (H_IN, W_IN)),
    ]
    run = Running(ViewerApp(views, max_scale=10, tile_size=32, cache_bytes=48 << 10, workers=2))
    yield run
    run.close()


def _info(running) -> dict:
    status, ctype, body = running.get("/info.json")
    assert status == 200 and ctype == "application/json"
    return json.loads(body)


def test_page_assets_and_info_load(running):
    status, ctype, page = running.get("/")
    assert status == 200 and ctype.startswith("text/html")
    for asset in (b"static/openseadragon.min.js", b"static/viewer.js", b"static/viewer.css"):
        assert asset in page
    status, ctype, osd = running.get("/static/openseadragon.min.js")
    assert status == 200 and ctype.startswith("text/javascript") and b"openseadragon 6.1.1" in osd
    status, _, lic = running.get("/static/LICENSE-openseadragon.txt")
    assert status == 200 and b"OpenSeadragon contributors" in lic
    assert running.get("/static/viewer.css")[0] == 200
    assert running.get("/static/viewer.js", method="HEAD")[0] == 200
    info = _info(running)
    assert info["input"] == {"height": H_IN, "width": W_IN}
    assert [v["name"] for v in info["views"]] == ["gblsr_asr", "bicubic"]
    top = info["levels"][-1]
    assert (top["height"], top["width"], top["scale"]) == (240, 300, 10.0)
    assert any(lv["scale"] == 1.0 for lv in info["levels"])


def test_tiles_over_http_equal_the_whole_render(running, lr):
    info = _info(running)
    app = running.app
    for view in (0, 1):
        for lv in (info["levels"][0], info["levels"][2], info["levels"][-1]):
            level = app.levels[lv["index"]]
            with torch.no_grad():
                whole = to_uint8(app.views[view].rep.render(level.height, level.width)[0])
            for col, row in {(0, 0), (lv["cols"] - 1, lv["rows"] - 1), (lv["cols"] // 2, 0)}:
                url = f"/tile/{info['session']}/{view}/{lv['index']}/{col}_{row}.png"
                status, ctype, body = running.get(url)
                assert status == 200 and ctype == "image/png"
                got = np.asarray(Image.open(io.BytesIO(body)))
                top, left, h, w = tile_window(level, col, row, 32)
                want = whole[:, top : top + h, left : left + w].permute(1, 2, 0).numpy()
                assert got.shape == (h, w, 3) and np.array_equal(got, want)
    assert app.served[len(app.levels) - 1] >= 6


@pytest.mark.parametrize(
    "path, code",
    [
        ("/nothing", 404),
        ("/static/../../../etc/passwd", 404),
        ("/static/%2e%2e/%2e%2e/etc/passwd", 404),
        ("/static/..%2f..%2fpyproject.toml", 404),
        ("/../src/gblsr/viewer/server.py", 404),
        ("/static/", 404),
        ("/tile/SESSION/0/99/0_0.png", 404),  # unknown level
        ("/tile/SESSION/7/0/0_0.png", 404),  # unknown view
        ("/tile/SESSION/0/0/1_0.png", 404),  # outside level 0 (one tile)
        ("/tile/SESSION/0/LAST/999_0.png", 404),  # outside the top level
        ("/tile/SESSION/0/LAST/0_999999999.png", 404),
        ("/tile/stale/0/0/0_0.png", 404),  # an earlier session
        ("/tile/SESSION/0/0/x_0.png", 400),  # non-numeric
        ("/tile/SESSION/0/0/-1_0.png", 400),
        ("/tile/SESSION/0/1e3/0_0.png", 400),
        ("/tile/SESSION/zero/0/0_0.png", 400),
        ("/tile/SESSION/0/0/0_0.jpg", 400),
        ("/tile/SESSION/0/0/1234567890123_0.png", 400),
        ("/tile/SESSION/0/0/0_0.png/extra", 404),
        ("/" + "a" * 5000, 414),  # oversized URL
    ],
)
def test_bad_requests_get_4xx_without_traceback(running, path, code):
    info = _info(running)
    path = path.replace("SESSION", info["session"]).replace("LAST", str(len(info["levels"]) - 1))
    status, ctype, body = running.get(path)
    assert status == code, (path, body)
    assert ctype.startswith("text/plain") and b"Traceback" not in body and len(body) < 300


def test_methods_bodies_and_malformed_requests_get_4xx(running):
    assert running.get("/", method="POST", body=b"x")[0] == 405
    assert running.get("/", method="PUT", body=b"x")[0] == 405
    assert running.get("/", method="DELETE")[0] == 405
    assert running.get("/", method="BREW")[0] == 405
    assert running.get("/", headers={"Content-Length": "5"}, body=b"12345")[0] == 413
    for raw in (b"GET / HTTP/9.9\r\n\r\n", b"GARBAGE\r\n\r\n", b"GET /" + b"x" * 70000 + b"\r\n"):
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as s:
            s.sendall(raw)
            reply = s.recv(200)
        # (a request without a valid version is answered HTTP/0.9 style: no status line)
        assert re.match(rb"(HTTP/1\.[01] )?4[0-9][0-9] ", reply), reply


def _rss_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def test_fifty_concurrent_tiles_complete_with_bounded_work_and_memory(running):
    info = _info(running)
    top = info["levels"][-1]
    tiles = [(i % 2, (i // 2) % top["cols"], i // 2 // top["cols"]) for i in range(50)]
    urls = [f"/tile/{info['session']}/{v}/{top['index']}/{c}_{r}.png" for v, c, r in tiles]
    app = running.app
    rss0 = _rss_mib()
    with ThreadPoolExecutor(50) as ex:
        results = list(ex.map(running.get, urls))
    assert [r[0] for r in results] == [200] * 50
    assert all(r[2].startswith(b"\x89PNG") for r in results)
    assert app.pool.peak_running <= 2  # never more renders at once than workers
    assert app.cache.peak_bytes <= 48 << 10 and app.cache.nbytes <= 48 << 10
    assert app.pool.pending == 0
    rss1 = _rss_mib()
    if rss0 is not None:
        assert rss1 - rss0 < 200, f"RSS grew by {rss1 - rss0:.0f} MiB"


class BlockingRep(Representation):
    """Renders grey tiles, but only after ``gate`` is set; records what it rendered."""

    def __init__(self):
        self.gate = threading.Event()
        self.rendered: list[tuple[int, int]] = []
        self.input_size = (8, 8)

    def bytes_per_pixel(self, H, W):
        return 48

    def render_region(self, top, left, height, width, H, W, **options):
        self.gate.wait(20)
        self.rendered.append((top, left))
        return torch.full((1, 3, height, width), 0.5)


def test_requests_the_client_dropped_are_withdrawn_not_rendered():
    rep = BlockingRep()
    app = ViewerApp([View("blocking", rep, (8, 8))], max_scale=8, tile_size=16, workers=1)
    run = Running(app)
    try:
        session = app.session
        top = len(app.levels) - 1
        first = threading.Thread(target=run.get, args=(f"/tile/{session}/0/{top}/0_0.png",))
        first.start()
        deadline = time.time() + 10
        while app.pool.running == 0 and time.time() < deadline:
            time.sleep(0.01)
        assert app.pool.running == 1  # the worker is busy with tile (0, 0)
        with socket.create_connection(("127.0.0.1", run.port)) as s:
            s.sendall(f"GET /tile/{session}/0/{top}/1_1.png HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            while app.pool.pending == 0 and time.time() < deadline:
                time.sleep(0.01)
            assert app.pool.pending == 1
        while app.pool.withdrawn == 0 and time.time() < deadline:
            time.sleep(0.01)
        assert app.pool.withdrawn == 1 and app.pool.pending == 0
        rep.gate.set()
        first.join(10)
        assert rep.rendered == [(0, 0)]  # tile (1, 1) was never rendered
    finally:
        rep.gate.set()
        run.close()


def test_pool_renders_newest_first_and_shares_duplicate_requests():
    gate = threading.Event()
    order = []

    def job(name):
        def fn():
            gate.wait(10)
            order.append(name)
            return name.encode()

        return fn

    pool = RenderPool(workers=1)
    try:
        first = pool.submit(("a",), job("a"))
        while pool.running == 0:
            time.sleep(0.01)
        jobs = [pool.submit((n,), job(n)) for n in "bcd"]
        again = pool.submit(("c",), job("c-duplicate"))
        assert again is jobs[1] and again.waiters == 2
        gate.set()
        for j in [first, *jobs]:
            assert j.done.wait(10) and j.state == "done"
        assert order == ["a", "d", "c", "b"]
    finally:
        pool.close()


def test_tile_cache_evicts_least_recently_used_within_its_budget():
    cache = TileCache(100)
    cache.put("a", b"x" * 40)
    cache.put("b", b"x" * 40)
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", b"x" * 40)
    assert cache.get("b") is None and cache.get("a") and cache.get("c")
    assert cache.nbytes == 80 and cache.peak_bytes <= 100
    cache.put("huge", b"x" * 101)
    assert cache.get("huge") is None and cache.nbytes == 80


# ----------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def files(tmp_path_factory, lr):
    d = tmp_path_factory.mktemp("view")
    Image.fromarray(to_uint8(lr[0]).permute(1, 2, 0).numpy()).save(d / "in.png")
    torch.manual_seed(0)
    peer = gblsr.create_model("liif", **TINY, hidden=[16, 16])
    return {
        "image": str(d / "in.png"),
        "asr": str(gblsr.save_model(_asr_model(), d / "asr.safetensors")),
        "liif": str(gblsr.save_model(peer, d / "liif.safetensors")),
    }


def test_cli_without_checkpoint_or_default_is_one_clear_line(files, capsys, monkeypatch):
    # With the built-in default model installed, no --checkpoint views it; without one:
    import gblsr.viewer.app as app

    monkeypatch.setattr(app, "default_checkpoint", lambda: None)
    assert view_cli.main([files["image"]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--checkpoint FILE is required" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--compare", "nope.safetensors"], "not 'bicubic' and not a model file"),
        (["--max-scale", "100"], "--max-scale must be between 1 and 64"),
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_cli_user_mistakes(files, capsys, extra, message):
    assert view_cli.main([files["image"], "--checkpoint", files["asr"], *extra]) == 2
    assert message in capsys.readouterr().err


def test_cli_missing_image(files, capsys):
    assert view_cli.main(["missing.png", "--compare", "bicubic"]) == 2
    assert "image not found" in capsys.readouterr().err


def test_run_viewer_serves_a_model_a_peer_and_bicubic(files, capsys):
    ready, servers = threading.Event(), []
    args = dict(checkpoint=files["asr"], compare=[files["liif"], "bicubic"], max_scale=4)
    t = threading.Thread(
        target=run_viewer,
        args=(files["image"],),
        kwargs={**args, "ready": ready, "servers": servers},
    )
    t.start()
    try:
        assert ready.wait(60)
        port = servers[0].server_address[1]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/info.json")
        info = json.loads(conn.getresponse().read())
        names = [v["name"] for v in info["views"]]
        assert names == ["gblsr_asr (asr.safetensors)", "liif (liif.safetensors)", "bicubic"]
        for v in range(3):
            conn.request("GET", f"/tile/{info['session']}/{v}/{len(info['levels']) - 1}/0_0.png")
            r = conn.getresponse()
            assert r.status == 200 and r.read().startswith(b"\x89PNG")
        conn.close()
    finally:
        if servers:
            servers[0].shutdown()
        t.join(10)
    out = capsys.readouterr().out
    assert f"serving http://127.0.0.1:{port}/" in out
    assert servers[0].server_address[0] == "127.0.0.1"


def test_bicubic_alone_needs_no_checkpoint(files, capsys, monkeypatch):
    import gblsr.viewer.app as app

    monkeypatch.setattr(app, "default_checkpoint", lambda: None)  # as without a built-in model
    ready, servers = threading.Event(), []
    t = threading.Thread(
        target=run_viewer,
        args=(files["image"],),
        kwargs={"compare": ["bicubic"], "ready": ready, "servers": servers},
    )
    t.start()
    try:
        assert ready.wait(30)
    finally:
        if servers:
            servers[0].shutdown()
        t.join(10)
    assert "views: bicubic" in capsys.readouterr().out


def test_connections_beyond_the_ceiling_get_503_at_once(lr):
    app = ViewerApp([View("bicubic", BicubicRepresentation(lr), (H_IN, W_IN))], max_scale=2)
    run = Running(app)
    run.server.max_connections = 1
    try:
        with socket.create_connection(("127.0.0.1", run.port), timeout=10) as idle:
            deadline = time.time() + 10
            while run.server._active < 1 and time.time() < deadline:
                time.sleep(0.01)
            status, _, _ = run.get("/")  # the idle connection holds the only slot
            assert status == 503
            idle.sendall(b"GET /info.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert idle.recv(12) == b"HTTP/1.1 200"
    finally:
        run.close()


def test_module_entry_point_help():
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "gblsr.cli.view", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0
    for flag in ("IMAGE", "--checkpoint", "--compare", "--max-scale", "--port", "--open"):
        assert flag in res.stdout

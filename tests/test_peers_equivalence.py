"""Numerical equivalence of ``gblsr.peers`` with the official LIIF, LTE and LMF code.

Every ``tests/fixtures/peers/*.safetensors`` file was written by
``tests/fixtures/generate_peer_fixtures.py`` from the official repositories (commits in its
docstring and in each file's metadata): an official state dict (seeded random weights), inputs,
and the official test-time outputs mapped to [0, 1]. Here the state dict goes through *our*
converter (:func:`gblsr.peers.convert.convert_official`), our model is built from the result and
loaded strictly, and every call is repeated:

    max |ours - official| <= 1e-5 * max |official|

Calls: ``predict_full`` (whole images at x2, x2.5, x3, x4, x6, x12; batch 1 and 2), ``forward``
(random queries and cells, eval and training mode), ``cmsr`` (LM-LIIF / LM-LTE with the shipped
S2M tables at x6, x8, x12, x18). The CMSR-table files check :func:`gblsr.peers.cmsr.update_table`
against init_cmsr.py, table by table.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from gblsr.checkpoint import build_from_state_dict
from gblsr.peers import cmsr
from gblsr.peers.convert import convert_official

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "peers"
REL_TOL = 1e-5
COMMITS = {
    "yinboc/liif": "4c833f8f9d5d038df3ee2b50ebe649c30e628c0f",
    "jaewon-lee-b/lte": "a8815d6ac8a643cd0463a092fa0f58e03935b343",
    "HeZongyao/LMF": "17e356edb6b792b293d70450d64fad4e39e1b2e4",
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread avoids OpenMP hand-off costs on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@functools.cache
def load(name: str):
    with safe_open(str(FIXTURE_DIR / f"{name}.safetensors"), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return json.loads(meta["case"]), tensors, meta


def _model_files() -> list[str]:
    return sorted(p.stem for p in FIXTURE_DIR.glob("*.safetensors") if "spec" in load(p.stem)[0])


def _table_files() -> list[str]:
    return sorted(p.stem for p in FIXTURE_DIR.glob("cmsr_table_*.safetensors"))


@functools.cache
def model(name: str) -> torch.nn.Module:
    case, tensors, _ = load(name)
    sd = {k[len("state.") :]: v for k, v in tensors.items() if k.startswith("state.")}
    arch, cfg, sd = convert_official({**case["spec"], "sd": sd})
    if case.get("encoder_cfg"):  # the cut-down official RDN (see the generator)
        cfg["encoder_cfg"] = case["encoder_cfg"]
    return build_from_state_dict(arch, cfg, sd).eval()


def _calls():
    out = []
    for name in _model_files():
        for call in load(name)[0]["calls"]:
            out.append(pytest.param(name, call["name"], id=f"{name}::{call['name']}"))
    return out


def assert_rel_close(ours: torch.Tensor, ref: torch.Tensor, what: str):
    assert tuple(ours.shape) == tuple(ref.shape), f"{what}: shape {tuple(ours.shape)}"
    scale = ref.abs().max().item()
    err = (ours.double() - ref.double()).abs().max().item()
    assert err <= REL_TOL * scale, f"{what}: relative error {err / scale:.3e}"


def test_fixture_set_is_complete_and_small():
    names = _model_files()
    assert {
        "liif_edsr",
        "liif_rdn",
        "lte_edsr",
        "lteplus_edsr",
        "lmliif_edsr",
        "lmlte_edsr",
    } <= set(names)
    assert len(_table_files()) == 2
    total = sum(p.stat().st_size for p in FIXTURE_DIR.glob("*.safetensors"))
    assert total < 2 * 1024 * 1024, total
    for name in names + _table_files():
        _, tensors, meta = load(name)
        assert COMMITS[meta["official_repo"]] == meta["official_commit"]
        assert all(t.dtype == torch.float32 for t in tensors.values())
    # the scales, at batch 1 and 2, for every method
    for name in ("liif_edsr", "lte_edsr", "lteplus_edsr", "lmliif_edsr", "lmlte_edsr"):
        calls = [c for c in load(name)[0]["calls"] if c["method"] == "predict_full"]
        assert {c["scale"] for c in calls} == {2, 2.5, 3, 4, 6, 12}
        assert {c["shape"][0] for c in calls} == {1, 2}


@pytest.mark.parametrize("name, call_name", _calls())
def test_matches_official_output(name, call_name):
    case, t, _ = load(name)
    call = next(c for c in case["calls"] if c["name"] == call_name)
    m = model(name)
    lr = t[call["inputs"]["lr"]]
    with torch.no_grad():
        if call["method"] == "predict_full":
            out = m.predict_full(lr, call["H"], call["W"])
        elif call["method"] == "cmsr":
            tables = {k: dict(v) for k, v in call["cmsr_tables"]}
            out = m.predict_full(lr, call["H"], call["W"], cmsr=tables)
        else:
            m.train(call.get("train", False))
            try:
                out = m(lr, t[call["inputs"]["coord"]], t[call["inputs"]["cell"]])
            finally:
                m.eval()
    assert_rel_close(out, t[call["outputs"]["pred"]], f"{name}::{call_name}")


def test_predict_full_does_not_depend_on_tiling():
    case, t, _ = load("lmliif_edsr")
    call = next(c for c in case["calls"] if c["name"] == "full_x12_b2_3x4")
    m = model("lmliif_edsr")
    lr = t[call["inputs"]["lr"]]
    whole = m.predict_full(lr, call["H"], call["W"], tile=None)
    tiled = m.predict_full(lr, call["H"], call["W"], tile=97)
    assert_rel_close(tiled, whole, "tiled")


@pytest.mark.parametrize("name", _table_files())
def test_cmsr_table_update_matches_init_cmsr(name):
    case, t, _ = load(name)
    m = model(case["model_case"])
    S = case["scale"]
    table = {s: 1 for s in cmsr.INITIAL_SCALES if s <= S}
    for i, (h, w) in enumerate(case["lr_sizes"]):
        cmsr.update_table(m, t[f"input.image{i}.lr"], S, S * h, S * w, table, case["mse_threshold"])
        assert [list(kv) for kv in table.items()] == case["tables_after_each_image"][i], i

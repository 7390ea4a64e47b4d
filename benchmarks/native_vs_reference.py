"""Native GB-LSR: our trainer against the reference trainer on identical crops.

Trains the main native variant (``local_spectral``, ``bandwidth_mode: global_scalar``, the arm
of ``configs/example.yaml``) twice from the SAME initial weights on the SAME crops in the SAME
order, once with the reference's own ``train_one`` (KempnerInstitute/gblsr, commit 6a3cd60,
run on the CPU) and once with ours (``gblsr.training.native.train_one``), and compares the
per-step training losses. Both trainers run unmodified; only their data loaders, region
thresholds, figures and final evaluation are replaced at run time (so both see the batches
prepared here and spend no time on LPIPS), and ours starts from the reference's initial
``state_dict``. The final weights of both are then evaluated with one piece of code (our model
class, which the golden fixtures tie to the reference): PSNR on held-out images, and PSNR on the
pixels next to a 32-px patch border against the interior pixels (the seam gap).

Nothing of the reference is copied here: its package is imported from ``--reference`` in a
separate process (our package has the same name).

    python benchmarks/native_vs_reference.py --reference /path/to/gblsr-checkout \
        --steps 300 --out results/native-cpu/investigation

Sub-commands (``prepare``, ``ref``, ``ours``, ``report``) run the stages one at a time; the
default runs them all (the two trainings one after the other, one thread each).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REF_REPO = "KempnerInstitute/gblsr"
REF_COMMIT = "6a3cd60"
HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
# ../shared beside the repository (a worktree elsewhere falls back to /work/shared).
_SHARED = next(
    (p for p in (REPO.parent / "shared", Path("/work/shared")) if p.is_dir()),
    REPO.parent / "shared",
)
DEFAULT_DATA = _SHARED / "data" / "train" / "SunHays80"

# --------------------------------------------------------------------------- data (no gblsr)


def prepare(
    work: Path,
    data_dir: Path,
    crop: int,
    per_image: int,
    steps: int,
    batch: int,
    seed: int,
    val_size: int,
    val_fraction: float = 0.1,
) -> dict:
    """Fixed crop pool, batch order and validation images, saved to ``work/data.pt``.

    The images are split like ``data.val_fraction: 0.1`` (seeded permutation, first 10% to
    validation). Every training image gives ``per_image`` random crops (fixed for the whole run,
    as in the reference's loader); each epoch visits the pool in a new seeded order; validation
    images are centre crops of ``val_size`` (a multiple of the patch size, so patch borders sit
    at the same pixels in both models).
    """
    import numpy as np
    import torch
    from PIL import Image

    paths = sorted(p for p in data_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    n = len(paths)
    n_val = max(1, int(val_fraction * n))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    val_paths = [paths[i] for i in perm[:n_val]]
    train_paths = [paths[i] for i in perm[n_val:]]
    g = torch.Generator().manual_seed(seed + 1)

    def load(p):
        return np.asarray(Image.open(p).convert("RGB"))

    pool, pool_names = [], []
    for p in train_paths:
        a = load(p)
        h, w = a.shape[:2]
        if min(h, w) < crop:
            continue
        for _ in range(per_image):
            t = int(torch.randint(0, h - crop + 1, (1,), generator=g))
            left = int(torch.randint(0, w - crop + 1, (1,), generator=g))
            pool.append(a[t : t + crop, left : left + crop])
            pool_names.append(p.name)
    pool_t = torch.from_numpy(np.stack(pool)).permute(0, 3, 1, 2).contiguous()
    order, e = [], 0
    while len(order) < steps * batch:
        go = torch.Generator().manual_seed(seed * 1000 + e)
        order.extend(torch.randperm(len(pool), generator=go).tolist())
        e += 1
    order_t = torch.tensor(order[: steps * batch]).view(steps, batch)
    vals, val_names = [], []
    for p in val_paths:
        a = load(p)
        h, w = a.shape[:2]
        s = min(val_size, (min(h, w) // 32) * 32)
        t, left = (h - s) // 2, (w - s) // 2
        vals.append(torch.from_numpy(a[t : t + s, left : left + s].copy()).permute(2, 0, 1))
        val_names.append(p.name)
    meta = {
        "data_dir": str(data_dir),
        "crop": crop,
        "per_image": per_image,
        "pool_size": len(pool),
        "n_train_images": len(train_paths),
        "val_images": val_names,
        "val_sizes": [list(v.shape[-2:]) for v in vals],
        "steps": steps,
        "batch": batch,
        "seed": seed,
    }
    work.mkdir(parents=True, exist_ok=True)
    torch.save({"pool": pool_t, "order": order_t, "val": vals, "meta": meta}, work / "data.pt")
    return meta


class FixedBatches:
    """The prepared batches in order, as ``(x, names, paths)`` (both trainers' batch layout).

    Starting at ``start`` (a resumed loop asks for its step); iterates once over the order.
    """

    def __init__(self, pool, order, start: int = 0):
        self.pool, self.order, self.start = pool, order, start

    def __len__(self):
        return len(self.order) - self.start

    def __iter__(self):
        for idx in self.order[self.start :]:
            x = self.pool[idx].float() / 255.0
            names = ["sunhays"] * x.shape[0]
            yield x, names, [f"crop{int(i)}" for i in idx]


class ValBatches:
    def __init__(self, vals):
        self.vals = vals

    def __iter__(self):
        for i, v in enumerate(self.vals):
            yield (v[None].float() / 255.0, ["val"], [f"val{i}"])


def _load_data(work: Path):
    import torch

    return torch.load(work / "data.pt", weights_only=True)


class GradNormRecorder:
    """Wraps ``torch.nn.utils.clip_grad_norm_`` to record the pre-clip norm of every step."""

    def __init__(self):
        import torch

        self.norms: list[float] = []
        self._orig = torch.nn.utils.clip_grad_norm_
        rec = self

        def wrapped(params, max_norm, *a, **k):
            n = rec._orig(params, max_norm, *a, **k)
            rec.norms.append(float(n))
            return n

        torch.nn.utils.clip_grad_norm_ = wrapped


# --------------------------------------------------------------------------- reference run


def _stub_torchvision():
    """The reference's loaders import torchvision.transforms.functional at module level; its
    loaders are replaced here, so an empty stand-in module is enough."""
    import types

    if "torchvision" in sys.modules:
        return
    tv = types.ModuleType("torchvision")
    tr = types.ModuleType("torchvision.transforms")
    fn = types.ModuleType("torchvision.transforms.functional")

    def _unused(*a, **k):
        raise RuntimeError("torchvision stub: not used by this benchmark")

    fn.to_tensor = fn.to_pil_image = _unused
    tv.transforms, tr.functional = tr, fn
    sys.modules.update(
        {"torchvision": tv, "torchvision.transforms": tr, "torchvision.transforms.functional": fn}
    )


def run_reference(work: Path, reference: Path, steps: int, lr: float, seed: int) -> dict:
    import importlib

    import torch

    torch.set_num_threads(1)
    src = (reference / "src").resolve()
    if not (src / "gblsr" / "__init__.py").is_file():
        sys.exit(f"--reference {reference} has no src/gblsr package")
    for m in [m for m in sys.modules if m == "gblsr" or m.startswith("gblsr.")]:
        del sys.modules[m]
    sys.path.insert(0, str(src))
    _stub_torchvision()
    torch.Tensor.cuda = lambda self, *a, **k: self  # never called on CPU; belt and braces
    T = importlib.import_module("gblsr.training.trainer")
    if src not in Path(T.__file__).resolve().parents:
        sys.exit(f"refusing to run: reference trainer imported from {T.__file__}")

    data = _load_data(work)
    pool, order = data["pool"], data["order"][:steps]
    held: dict = {}
    T.build_loaders = lambda data_cfg, bs, nw: (FixedBatches(pool, order), ValBatches(data["val"]))
    T.fit_region_thresholds = lambda *a, **k: T.RegionThresholds(0.1, 0.3, 0.1)
    T.evaluate = lambda *a, **k: []
    T.measure_inference_ms = lambda *a, **k: 0.0
    T.save_figures = lambda *a, **k: None
    orig_build = T.build_model_from_run_config

    def build(rc):
        m = orig_build(rc)
        held["model"] = m
        torch.save(
            {k: v.detach().clone() for k, v in m.state_dict().items()}, work / "init_state.pt"
        )
        return m

    T.build_model_from_run_config = build
    rec = GradNormRecorder()
    rc = T.RunConfig(
        experiment_id="native_vs_reference",
        run_dir=str(work / "ref_run"),
        arm="local_spectral",
        seed=seed,
        total_steps=steps,
        batch_size=order.shape[1],
        lr=lr,
        log_every=1,
        num_val_images=len(data["val"]),
        image_size=data["meta"]["crop"],
        patch_size=32,
        bandwidth_mode="global_scalar",
        data=T.DataConfig(
            dtd_root="/unused", div2k_root="/unused", image_size=data["meta"]["crop"], patch_size=32
        ),
    )
    t0 = time.time()
    exp = T.train_one(rc)
    wall = time.time() - t0
    torch.save(
        {k: v.detach().clone() for k, v in held["model"].state_dict().items()},
        work / "ref_final_state.pt",
    )
    out = {
        "trainer": "reference",
        "reference": f"{REF_REPO}@{REF_COMMIT}",
        "loss": [r["L_total"] for r in exp["train_log"]],
        "grad_norm": rec.norms,
        "wall_s": wall,
        "adaptivity_final": exp.get("adaptivity_final"),
        "torch_threads": torch.get_num_threads(),
    }
    (work / "ref_losses.json").write_text(json.dumps(out))
    return out


# --------------------------------------------------------------------------- our run


def run_ours(
    work: Path,
    steps: int,
    lr: float,
    seed: int,
    tag: str = "ours",
    overrides: dict | None = None,
    init: str | None = "init_state.pt",
) -> dict:
    """Our ``train_one`` on the prepared batches; returns losses, grad norms and evaluation.

    overrides: extra RunConfig fields (the ablation uses this); init: a state file in ``work``
    to start from (None: our own seeded initialisation).
    """
    import torch

    torch.set_num_threads(1)
    import gblsr.training.native as N
    from gblsr.data.regions import RegionThresholds
    from gblsr.data.training_data import DataConfig
    from gblsr.training.config import RunConfig

    data = _load_data(work)
    pool, order = data["pool"], data["order"][:steps]
    held: dict = {}
    N.build_loaders = lambda data_cfg, batch_size, num_workers, **kw: (
        FixedBatches(pool, order, kw.get("start_step", 0)),
        ValBatches(data["val"]),
    )
    N.build_datasets = lambda cfg, run_seed=0: (range(len(pool)), range(len(data["val"])))
    N._fit_thresholds = lambda rc, run_dir: RegionThresholds(0.1, 0.3, 0.1)
    N.evaluate = lambda *a, **k: []
    N.measure_inference_ms = lambda *a, **k: 0.0
    N.save_figures = lambda *a, **k: []
    orig_build = N.build_model_from_run_config

    def build(rc):
        m = orig_build(rc)
        if init:
            state = torch.load(work / init, weights_only=True)
            missing, unexpected = m.load_state_dict(state, strict=False)
            if unexpected or [k for k in missing if not k.endswith("_buffer")]:
                sys.exit(f"init state mismatch: missing {missing}, unexpected {unexpected}")
            if rc.s_e_init is not None or rc.p_soft_init is not None:  # re-apply the options
                m.decoder.set_initial_spectrum(rc.s_e_init, rc.p_soft_init)
        held["model"] = m
        return m

    N.build_model_from_run_config = build
    rec = GradNormRecorder()
    fields = dict(
        experiment_id="native_vs_reference",
        run_dir=str(work / f"{tag}_run"),
        arm="local_spectral",
        seed=seed,
        total_steps=steps,
        batch_size=order.shape[1],
        lr=lr,
        log_every=1,
        num_val_images=len(data["val"]),
        image_size=data["meta"]["crop"],
        patch_size=32,
        bandwidth_mode="global_scalar",
        checkpoint_every=0,
        progress=False,
        tensorboard=False,
        data=DataConfig(image_dirs=(str(work),), image_size=data["meta"]["crop"], num_workers=0),
    )
    fields.update(overrides or {})
    rc = RunConfig(**fields)
    t0 = time.time()
    exp = N.train_one(rc, device="cpu", overwrite=True)
    wall = time.time() - t0
    model = held["model"]
    torch.save(
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        work / f"{tag}_final_state.pt",
    )
    out = {
        "trainer": "ours",
        "tag": tag,
        "overrides": overrides or {},
        "loss": [r["L_total"] for r in exp["train_log"]],
        "grad_norm": rec.norms,
        "wall_s": wall,
        "eval": evaluate_model(model, data["val"]),
        "torch_threads": torch.get_num_threads(),
    }
    (work / f"{tag}_losses.json").write_text(json.dumps(out))
    return out


# --------------------------------------------------------------------------- evaluation


def border_mask(h: int, w: int, patch: int = 32):
    """(H, W) bool: pixels in the first or last row/column of a patch (next to a border)."""
    import torch

    r = torch.arange(h) % patch
    c = torch.arange(w) % patch
    rb = (r == 0) | (r == patch - 1)
    cb = (c == 0) | (c == patch - 1)
    return rb[:, None] | cb[None, :]


def _psnr(mse: float) -> float:
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def seam_psnr(pred, gt, patch: int = 32) -> dict:
    """PSNR on all pixels, on border pixels and on interior pixels of one (1, 3, H, W) pair.

    A seam shows up as border PSNR well below interior PSNR (the gap)."""
    err = (pred.clamp(0, 1) - gt).pow(2).mean(dim=(0, 1))  # (H, W)
    m = border_mask(*err.shape, patch=patch).to(err.device)
    return {
        "psnr": _psnr(float(err.mean())),
        "psnr_border": _psnr(float(err[m].mean())),
        "psnr_interior": _psnr(float(err[~m].mean())),
    }


def evaluate_model(model, vals, patch: int = 32) -> dict:
    """Mean PSNR / border / interior PSNR over validation images, plus s_e and p_soft."""
    import torch

    rows, se, ps = [], [], []
    was = model.training
    model.eval()
    with torch.no_grad():
        for v in vals:
            x = v[None].float() / 255.0
            out = model(x)
            rows.append(seam_psnr(out["recon"].float(), x, patch))
            if out.get("s_e") is not None:
                se.append(out["s_e"].flatten())
                ps.append(out["p_soft"].flatten())
    model.train(was)
    res = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    res["seam_gap_db"] = res["psnr_interior"] - res["psnr_border"]
    res["per_image"] = rows
    if se:
        s, p = torch.cat(se), torch.cat(ps)
        res["s_e_mean"] = float(s.mean())
        res["p_soft_mean"] = float(p.mean())
        res["p_soft_min"] = float(p.min())
        res["p_soft_max"] = float(p.max())
    return res


def evaluate_state(work: Path, state_file: str, overrides: dict | None = None) -> dict:
    """Evaluate saved weights with our model class (architecture from the run's settings)."""
    import torch

    from gblsr.training.config import RunConfig, build_model_from_run_config

    torch.set_num_threads(1)
    data = _load_data(work)
    fields = dict(
        experiment_id="e",
        run_dir=str(work),
        arm="local_spectral",
        seed=0,
        image_size=data["meta"]["crop"],
        patch_size=32,
        bandwidth_mode="global_scalar",
    )
    fields.update(overrides or {})
    m = build_model_from_run_config(RunConfig(**fields))
    m.load_state_dict(torch.load(work / state_file, weights_only=True), strict=False)
    return evaluate_model(m, data["val"])


# --------------------------------------------------------------------------- report


def report(work: Path, out: Path) -> dict:
    ref = json.loads((work / "ref_losses.json").read_text())
    ours = json.loads((work / "ours_losses.json").read_text())
    ref["eval"] = evaluate_state(work, "ref_final_state.pt")
    init_eval = evaluate_state(work, "init_state.pt")
    n = min(len(ref["loss"]), len(ours["loss"]))
    a, b = ref["loss"][:n], ours["loss"][:n]
    diffs = [abs(x - y) for x, y in zip(a, b)]
    rel = [d / max(abs(x), 1e-12) for d, x in zip(diffs, a)]
    first_div = next((i for i, r in enumerate(rel) if r > 1e-3), None)
    windows = []
    for lo in range(0, n, 50):
        hi = min(n, lo + 50)
        windows.append(
            {
                "steps": f"{lo}-{hi - 1}",
                "ref_mean": sum(a[lo:hi]) / (hi - lo),
                "ours_mean": sum(b[lo:hi]) / (hi - lo),
            }
        )
    summary = {
        "reference": f"{REF_REPO}@{REF_COMMIT}",
        "steps": n,
        "max_abs_loss_diff": max(diffs),
        "max_rel_loss_diff": max(rel),
        "first_step_rel_diff_over_1e-3": first_div,
        "loss_windows": windows,
        "ref_final_loss_mean_last20": sum(a[-20:]) / len(a[-20:]),
        "ours_final_loss_mean_last20": sum(b[-20:]) / len(b[-20:]),
        "ref_wall_s": ref["wall_s"],
        "ours_wall_s": ours["wall_s"],
        "ref_eval": {k: v for k, v in ref["eval"].items() if k != "per_image"},
        "ours_eval": {k: v for k, v in ours["eval"].items() if k != "per_image"},
        "init_eval": {k: v for k, v in init_eval.items() if k != "per_image"},
        "max_rel_grad_norm_diff": max(
            abs(x - y) / max(abs(x), 1e-12) for x, y in zip(ref["grad_norm"], ours["grad_norm"])
        ),
        "grad_norm_first": [ref["grad_norm"][0], ours["grad_norm"][0]],
        "grad_norm_median": sorted(ref["grad_norm"])[len(ref["grad_norm"]) // 2],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "native_vs_reference.json").write_text(
        json.dumps(
            {
                "summary": summary,
                "ref_loss": a,
                "ours_loss": b,
                "ref_grad_norm": ref["grad_norm"],
                "ours_grad_norm": ours["grad_norm"],
                "data": _load_data(work)["meta"],
            },
            indent=1,
        )
    )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(11, 4))
        ax[0].plot(a, label="reference train_one", lw=1.5)
        ax[0].plot(b, label="ours train_one", lw=1, ls="--")
        ax[0].set_yscale("log")
        ax[0].set_xlabel("step")
        ax[0].set_ylabel("MSE loss (training batch)")
        ax[0].legend()
        ax[0].set_title("global_scalar, identical crops and init")
        ax[1].semilogy([max(d, 1e-12) for d in rel])
        ax[1].set_xlabel("step")
        ax[1].set_ylabel("|ours - ref| / ref")
        ax[1].set_title("relative loss difference")
        fig.tight_layout()
        fig.savefig(out / "loss_ours_vs_reference.png", dpi=110)
        plt.close(fig)
    except ImportError:
        pass
    return summary


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "stage", nargs="?", default="all", choices=["all", "prepare", "ref", "ours", "report"]
    )
    ap.add_argument("--reference", type=Path, help="checkout of KempnerInstitute/gblsr")
    ap.add_argument("--work", type=Path, default=Path("/tmp/native_vs_reference"))
    ap.add_argument("--out", type=Path, default=REPO / "results/native-cpu/investigation")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--per-image", type=int, default=4)
    ap.add_argument("--val-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.stage in ("all", "prepare"):
        print(
            json.dumps(
                prepare(
                    args.work,
                    args.data,
                    args.crop,
                    args.per_image,
                    args.steps,
                    args.batch,
                    args.seed,
                    args.val_size,
                )
            )
        )
    if args.stage == "all":
        if args.reference is None:
            ap.error("--reference is required")
        common = [
            "--work",
            str(args.work),
            "--steps",
            str(args.steps),
            "--lr",
            str(args.lr),
            "--seed",
            str(args.seed),
        ]
        for st in ("ref", "ours"):
            extra = ["--reference", str(args.reference)] if st == "ref" else []
            subprocess.run([sys.executable, str(HERE), st, *common, *extra], check=True)
        print(json.dumps(report(args.work, args.out), indent=1))
    elif args.stage == "ref":
        if args.reference is None:
            ap.error("--reference is required")
        r = run_reference(args.work, args.reference, args.steps, args.lr, args.seed)
        print(f"reference: {len(r['loss'])} steps in {r['wall_s']:.1f}s, last {r['loss'][-1]:.5f}")
    elif args.stage == "ours":
        r = run_ours(args.work, args.steps, args.lr, args.seed)
        print(f"ours: {len(r['loss'])} steps in {r['wall_s']:.1f}s, last {r['loss'][-1]:.5f}")
    elif args.stage == "report":
        print(json.dumps(report(args.work, args.out), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

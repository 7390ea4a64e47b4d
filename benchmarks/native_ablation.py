"""Native GB-LSR: what limits the main variant, one short run per change.

Uses the crops, batch order, initial weights and evaluation of
``benchmarks/native_vs_reference.py`` (run its ``prepare`` and ``ref`` stages first: they write
``data.pt`` and ``init_state.pt`` into ``--work``). Stages:

``oracle``
    No training. The best any encoder could do with a basis: every 32x32 validation patch is
    projected by least squares onto the first ``n`` modes per axis of a family at bandwidth
    ``s_e`` (closed form, ``Phi pinv(Phi) X (Phi pinv(Phi))^T``), giving the PSNR ceiling and
    the seam gap (border-pixel against interior-pixel PSNR) of that basis. The soft order mask
    only rescales coefficients, so with ``n`` equal to the modes it leaves on, this is also the
    ceiling of a model whose order has settled at ``n``.
``train --arm NAME``
    One run of our trainer from the reference's initial weights with one change (see ``ARMS``).
``report``
    Markdown table, JSON and a loss-curve figure over every finished arm.

    python benchmarks/native_ablation.py oracle --work /tmp/native_vs_reference
    python benchmarks/native_ablation.py train --arm lr_1e-3 --work /tmp/native_vs_reference
    python benchmarks/native_ablation.py report --work /tmp/native_vs_reference
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import native_vs_reference as nvr  # noqa: E402

# name -> (RunConfig overrides, start from the reference's initial weights, what it tests)
ARMS: dict[str, tuple[dict, bool, str]] = {
    "baseline": ({}, True, "example.yaml arm: lr 2e-4, s_e from 0.707, p_soft from 8.5"),
    "lr_5e-4": ({"lr": 5e-4}, True, "learning rate x2.5"),
    "lr_1e-4": ({"lr": 1e-4}, True, "learning rate /2"),
    "lr_1e-3": ({"lr": 1e-3}, True, "learning rate x5"),
    "lr_1e-3_no_adapt_order": (
        {"lr": 1e-3, "adapt_order": False},
        True,
        "learning rate x5 with every mode on",
    ),
    "no_adapt_order": ({"adapt_order": False}, True, "p_soft fixed at 16: every mode on"),
    "sharpness_1": ({"cutoff_sharpness": 1.0}, True, "softer order mask"),
    "sharpness_0.5": ({"cutoff_sharpness": 0.5}, True, "much softer order mask"),
    "sharpness_1_long": ({"cutoff_sharpness": 1.0}, True, "softer order mask (run 300 steps)"),
    "cosine_s_e_1": ({"family": "cosine", "s_e_init": 1.0}, True, "cosine family at s_e 1"),
    "d_feat_64": ({"d_feat": 64}, False, "feature width /2 (own seeded init)"),
    "cosine_s_e_1_lr_1e-3_no_adapt_order": (
        {"family": "cosine", "s_e_init": 1.0, "adapt_order": False, "lr": 1e-3},
        True,
        "well-conditioned basis (cosine, s_e 1), every mode on, lr 1e-3",
    ),
}


# --------------------------------------------------------------------------- oracle


def _basis(family: str, n: int, s_e: float, patch: int = 32):
    """(P, n) first n modes of a family on the patch's pixel grid (linspace(-1, 1, P))."""
    import torch

    from gblsr.models.basis import build_1d_basis

    coord = torch.linspace(-1.0, 1.0, patch, dtype=torch.float64)
    phi = build_1d_basis(coord, 16, torch.tensor([s_e], dtype=torch.float64), family)
    return phi[:, :n]


def oracle(work: Path, families=("fourier", "cosine"), s_values=None, n_values=(6, 8, 10, 16)):
    """PSNR ceiling and seam gap of least-squares projections (see module docstring)."""
    import torch

    from gblsr.models.basis import image_to_patches, patches_to_image

    torch.set_num_threads(1)
    s_values = s_values or (0.25, 0.5, 0.68, 0.707, 1.0, 1.125, 1.4, 1.7, 2.0)
    data = nvr._load_data(work)
    xs = torch.stack([v.double() / 255.0 for v in data["val"]])  # (N, 3, 256, 256)
    patches = image_to_patches(xs, 32)  # (N, nH, nW, 3, P, P)
    rows = []
    for fam in families:
        for n in n_values:
            for s in s_values:
                phi = _basis(fam, n, s)
                proj = phi @ torch.linalg.pinv(phi, rtol=1e-10)  # (P, P) projector
                rec = patches_to_image(proj @ patches @ proj.T).clamp(0, 1)
                per = [nvr.seam_psnr(rec[i : i + 1], xs[i : i + 1]) for i in range(len(xs))]
                r = {k: sum(p[k] for p in per) / len(per) for k in per[0]}
                r.update(family=fam, n_modes=n, s_e=s, cond=float(torch.linalg.cond(phi)))
                r["seam_gap_db"] = r["psnr_interior"] - r["psnr_border"]
                rows.append(r)
    (work / "oracle.json").write_text(json.dumps(rows, indent=1))
    return rows


def oracle_rank(work: Path, ranks=(64, 128, 256)) -> list[dict]:
    """Ceiling of the native decoder with a d-dimensional patch feature.

    The decoder is linear in the feature (``coeff_proj``: d -> 3 p_max^2), so its patches lie
    in a d-dimensional affine subspace of the basis span. The best such subspace for the
    training crops is their principal subspace, computed in an orthonormal basis of the span
    (QR of the 1-D basis; pixel error equals coefficient error there). Validation patches
    projected onto it give the PSNR no encoder can beat at that width.
    """
    import torch

    from gblsr.models.basis import image_to_patches, patches_to_image

    torch.set_num_threads(1)
    data = nvr._load_data(work)
    train = image_to_patches(data["pool"].double() / 255.0, 32).reshape(-1, 3, 32, 32)
    xs = torch.stack([v.double() / 255.0 for v in data["val"]])
    val = image_to_patches(xs, 32)
    rows = []
    configs = [
        ("fourier", 8, 0.707),
        ("fourier", 16, 0.707),
        ("fourier", 16, 1.0),
        ("cosine", 8, 1.0),
        ("cosine", 16, 1.0),
    ]
    for fam, n, s in configs:
        q, _ = torch.linalg.qr(_basis(fam, n, s))  # (P, n) orthonormal columns

        def to_c(p, q=q):
            return (q.T @ p @ q).reshape(*p.shape[:-3], -1)

        def to_p(c, q=q, n=n):
            return q @ c.reshape(*c.shape[:-1], 3, n, n) @ q.T

        c = to_c(train)
        mu = c.mean(0)
        _, _, vh = torch.linalg.svd(c - mu, full_matrices=False)
        for r in ranks:
            v = vh[:r]
            img = patches_to_image(to_p(((to_c(val) - mu) @ v.T) @ v + mu)).clamp(0, 1)
            per = [nvr.seam_psnr(img[i : i + 1], xs[i : i + 1]) for i in range(len(xs))]
            row = {"family": fam, "n_modes": n, "s_e": s, "rank": r}
            row.update({k: sum(p[k] for p in per) / len(per) for k in per[0]})
            rows.append(row)
    (work / "oracle_rank.json").write_text(json.dumps(rows, indent=1))
    return rows


# --------------------------------------------------------------------------- report


def report(work: Path, out: Path, steps: int) -> dict:
    arms = {}
    for name in ARMS:
        f = work / f"{name}_losses.json"
        if name == "baseline" and not f.is_file():
            f = work / "ours_losses.json"
        if f.is_file():
            arms[name] = json.loads(f.read_text())
    if (work / "ours_losses.json").is_file() and "baseline" in arms:
        # the 300-step run of native_vs_reference.py (same init, crops and order)
        arms["baseline_300"] = json.loads((work / "ours_losses.json").read_text())
    described = {**ARMS, "baseline_300": ({}, True, "baseline, the 300-step run of section 1")}
    oracle_rows = (
        json.loads((work / "oracle.json").read_text()) if (work / "oracle.json").is_file() else []
    )
    rank_rows = (
        json.loads((work / "oracle_rank.json").read_text())
        if (work / "oracle_rank.json").is_file()
        else []
    )
    table = []
    k = min(len(r["loss"]) for r in arms.values())  # compare every arm at the same step
    for name, r in arms.items():
        loss = r["loss"]
        win = loss[k - 20 : k]
        ev = r["eval"]
        table.append(
            {
                "arm": name,
                "change": described[name][2],
                "overrides": described[name][0],
                "steps": len(loss),
                "train_loss_last20": sum(loss[-20:]) / len(loss[-20:]),
                "train_psnr_last20": 10 * math.log10(1 / (sum(loss[-20:]) / len(loss[-20:]))),
                "compare_step": k,
                "train_psnr_at_compare_step": 10 * math.log10(1 / (sum(win) / len(win))),
                "val_psnr": ev["psnr"],
                "val_psnr_border": ev["psnr_border"],
                "val_psnr_interior": ev["psnr_interior"],
                "seam_gap_db": ev["seam_gap_db"],
                "s_e": ev.get("s_e_mean"),
                "p_soft_mean": ev.get("p_soft_mean"),
                "wall_s": r["wall_s"],
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "native_ablation.json").write_text(
        json.dumps(
            {
                "arms": table,
                "oracle": oracle_rows,
                "oracle_rank": rank_rows,
                "curves": {k: v["loss"] for k, v in arms.items()},
            },
            indent=1,
        )
    )
    lines = [
        f"| arm | change | train PSNR, steps {k - 20}-{k - 1} | steps run | val PSNR "
        "| border | interior | seam gap | s_e | mean p_soft | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in table:
        lines.append(
            f"| {t['arm']} | {t['change']} | {t['train_psnr_at_compare_step']:.2f} "
            f"| {t['steps']} | {t['val_psnr']:.2f} "
            f"| {t['val_psnr_border']:.2f} | {t['val_psnr_interior']:.2f} "
            f"| {t['seam_gap_db']:+.2f} | {_fmt(t['s_e'])} | {_fmt(t['p_soft_mean'])} "
            f"| {t['wall_s']:.0f} |"
        )
    if oracle_rows:
        lines += [
            "",
            "| family | modes/axis | "
            + " | ".join(f"s_e {s:g}" for s in sorted({r["s_e"] for r in oracle_rows}))
            + " |",
        ]
        svals = sorted({r["s_e"] for r in oracle_rows})
        lines.append("| --- | --- |" + " --- |" * len(svals))
        for fam in dict.fromkeys(r["family"] for r in oracle_rows):
            for n in sorted({r["n_modes"] for r in oracle_rows}):
                cells = []
                for sv in svals:
                    r = next(
                        r
                        for r in oracle_rows
                        if r["family"] == fam and r["n_modes"] == n and r["s_e"] == sv
                    )
                    cells.append(f"{r['psnr']:.2f} ({r['seam_gap_db']:+.1f})")
                lines.append(f"| {fam} | {n} | " + " | ".join(cells) + " |")
    if rank_rows:
        ranks = sorted({r["rank"] for r in rank_rows})
        lines += [
            "",
            "| family | modes/axis | s_e | "
            + " | ".join(f"feature width {r}" for r in ranks)
            + " |",
            "| --- | --- | --- |" + " --- |" * len(ranks),
        ]
        for key in dict.fromkeys((r["family"], r["n_modes"], r["s_e"]) for r in rank_rows):
            cells = [
                f"{r['psnr']:.2f} ({r['psnr_interior'] - r['psnr_border']:+.1f})"
                for r in rank_rows
                if (r["family"], r["n_modes"], r["s_e"]) == key
            ]
            lines.append(f"| {key[0]} | {key[1]} | {key[2]:g} | " + " | ".join(cells) + " |")
    (out / "native_ablation_tables.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 5))
        for name, r in arms.items():
            loss = r["loss"]
            k = 10  # running mean over 10 steps: single batches are noisy
            sm = [
                sum(loss[max(0, i - k + 1) : i + 1]) / len(loss[max(0, i - k + 1) : i + 1])
                for i in range(len(loss))
            ]
            i = list(arms).index(name)
            ax.plot(
                [10 * math.log10(1 / v) for v in sm],
                label=name,
                lw=1.2,
                color=plt.cm.tab20(i % 20),
                ls="-" if i < 10 else "--",
            )
        ax.set_xlabel("step")
        ax.set_ylabel("training PSNR, dB (10-step running mean of batch MSE)")
        ax.set_title("native global_scalar ablations (same crops, order and init)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "ablation_curves.png", dpi=110)
        plt.close(fig)
    except ImportError:
        pass
    return {"arms": table}


def seam_figure(work: Path, out: Path, arms: list[str], image: int = 0, crop: int = 96) -> None:
    """GT, reconstructions and error maps of one validation crop (patch grid drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from gblsr.training.config import RunConfig, build_model_from_run_config

    data = nvr._load_data(work)
    x = data["val"][image][None].float() / 255.0
    cols = [("ground truth", x)]
    for name in arms:
        f = work / f"{'ours' if name == 'baseline_300' else name}_final_state.pt"
        if not f.is_file():
            continue
        ov = {k: v for k, v in ARMS.get(name, ({},))[0].items() if k != "lr"}
        rc = RunConfig(
            experiment_id="e",
            run_dir=str(work),
            arm="local_spectral",
            seed=0,
            image_size=data["meta"]["crop"],
            bandwidth_mode="global_scalar",
            **ov,
        )
        m = build_model_from_run_config(rc)
        m.load_state_dict(torch.load(f, weights_only=True))
        m.eval()
        with torch.no_grad():
            cols.append((name, m(x)["recon"].clamp(0, 1)))
    fig, ax = plt.subplots(2, len(cols), figsize=(3.2 * len(cols), 6.4), squeeze=False)
    for j, (name, img) in enumerate(cols):
        a = img[0, :, :crop, :crop].permute(1, 2, 0).numpy()
        ax[0, j].imshow(a, interpolation="nearest")
        ax[0, j].set_title(name, fontsize=8)
        err = (img - x)[0, :, :crop, :crop].abs().mean(0).numpy()
        ax[1, j].imshow(err, cmap="inferno", vmin=0, vmax=0.25, interpolation="nearest")
        ax[1, j].set_title("|error|" if j else "", fontsize=8)
        for r in range(2):
            for b in range(32, crop, 32):
                ax[r, j].axhline(b - 0.5, color="c", lw=0.4)
                ax[r, j].axvline(b - 0.5, color="c", lw=0.4)
            ax[r, j].axis("off")
    fig.tight_layout()
    fig.savefig(out / "seam_crops.png", dpi=110)
    plt.close(fig)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=["oracle", "train", "report"])
    ap.add_argument("--arm", choices=sorted(ARMS))
    ap.add_argument("--work", type=Path, default=Path("/tmp/native_vs_reference"))
    ap.add_argument("--out", type=Path, default=nvr.REPO / "results/native-cpu/investigation")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument(
        "--figure-arms",
        nargs="*",
        default=["baseline"],
        help="arms shown in seam_crops.png (report stage)",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.stage == "oracle":
        for r in oracle_rank(args.work):
            print(
                f"{r['family']:8s} n={r['n_modes']:2d} s_e={r['s_e']:.3f} rank={r['rank']:3d} "
                f"psnr={r['psnr']:.2f} border={r['psnr_border']:.2f} "
                f"interior={r['psnr_interior']:.2f}"
            )
        rows = oracle(args.work)
        for r in rows:
            print(
                f"{r['family']:8s} n={r['n_modes']:2d} s_e={r['s_e']:.3f} psnr={r['psnr']:.2f} "
                f"border={r['psnr_border']:.2f} interior={r['psnr_interior']:.2f} "
                f"cond={r['cond']:.1e}"
            )
    elif args.stage == "train":
        if not args.arm:
            ap.error("train needs --arm")
        overrides, use_init, _ = ARMS[args.arm]
        overrides = dict(overrides)
        lr = overrides.pop("lr", 2e-4)
        r = nvr.run_ours(
            args.work,
            args.steps,
            lr,
            args.seed,
            tag=args.arm,
            overrides=overrides,
            init="init_state.pt" if use_init else None,
        )
        print(json.dumps({k: v for k, v in r["eval"].items() if k != "per_image"}))
    else:
        print(json.dumps(report(args.work, args.out, args.steps), indent=1))
        seam_figure(args.work, args.out, args.figure_arms)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Print the README's headline table for an SR study: Y-PSNR at x4 on each set, Set5 at x2 and
x12, and the x4 / x12 decode times, from the study's report folder.

    python scripts/study_headline.py results/cpu-small
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gblsr.study.summary import cell

SETS = ["Set5", "Set14", "B100", "Kodak24"]


def psnr(result: dict, dataset: str, scale: float) -> str:
    value = cell(result, dataset, scale, "psnr")
    return "-" if value is None else f"{value:.2f}"


def ms(timing: dict, key: str) -> str:
    value = (timing.get(key) or {}).get("decode_ms")
    return f"{value:.1f}" if value else "-"


def main(folder: str) -> None:
    rep = Path(folder)
    res = json.loads((rep / "results.json").read_text())
    bicubic = res["bicubic"]
    timing = (res.get("timing") or {}).get("methods", {})
    head = ["method", "params", *(f"{d} x4" for d in SETS), "Set5 x2", "Set5 x12"]
    head += ["decode x4 ms", "decode x12 ms"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    rows = [("bicubic", "-", bicubic, {})]
    rows += [(n, f"{r['n_params']:,}", r, timing.get(n, {})) for n, r in res["methods"].items()]
    for name, params, r, t in rows:
        cells = [name, params, *(psnr(r, d, 4) for d in SETS), psnr(r, "Set5", 2)]
        cells += [psnr(r, "Set5", 12), ms(t, "x4"), ms(t, "x12")]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])

"""The standard SR evaluation protocol as a Python API (what ``gblsr-eval`` runs).

    from gblsr.evaluation import evaluate, get_baseline
    rows = evaluate(get_baseline("bicubic"), ["benchmark/Set5"], scales=[2, 3, 4])

For each dataset and scale, every HR image is paired with its LR image (the dataset's MATLAB-made
file when there is one, else MATLAB bicubic of the HR cropped to a multiple of the scale; see
:class:`gblsr.data.SRPairs`), the model renders the HR size from the LR, the prediction is clamped
to [0, 1] (never rounded to 8 bits) and compared with the HR image:

* ``benchmark`` protocol (default): PSNR on BT.601 Y, ceil(scale) border pixels shaved;
* ``div2k`` protocol: PSNR on RGB, ceil(scale) + 6 border pixels shaved;
* SSIM: Y channel, Gaussian 11 / 1.5 window, valid region, on the same shaved images;
* LPIPS (optional, AlexNet, on the same shaved RGB images).

Each row reports the mean of the per-image values. Native reconstruction models (``task ==
"reconstruction"``) are evaluated at scale 1 on the HR image itself with the ``reconstruction``
protocol (RGB PSNR, no shave).
"""

from .core import (
    BASELINES,
    PROTOCOLS,
    InterpolationBaseline,
    InterpolationRepresentation,
    Protocol,
    evaluate,
    evaluate_reconstruction,
    evaluate_sr,
    get_baseline,
    parse_scale,
)
from .report import (
    DEFAULT_SCALES,
    data_roots_from_config,
    markdown_report,
    plot_psnr_vs_scale,
    resolve_model,
    result_json,
    run_evaluation,
    write_reports,
)

__all__ = [
    "Protocol",
    "PROTOCOLS",
    "InterpolationBaseline",
    "InterpolationRepresentation",
    "BASELINES",
    "get_baseline",
    "evaluate",
    "evaluate_sr",
    "evaluate_reconstruction",
    "parse_scale",
    "DEFAULT_SCALES",
    "run_evaluation",
    "resolve_model",
    "data_roots_from_config",
    "markdown_report",
    "plot_psnr_vs_scale",
    "write_reports",
    "result_json",
]

"""The study YAML: which methods, trained how, scored on what, timed how (validated, hashed).

A study trains every listed method under one protocol, scores it and times it. Two kinds:

* ``kind: sr``: arbitrary-scale SR methods (registry model names) sharing one encoder, trained
  with the SR recipe (:mod:`gblsr.training.sr`), scored on benchmark sets at in- and
  out-of-distribution scales;
* ``kind: native``: native GB-LSR arms (the reference's RunConfig settings) trained with the
  native trainer (:mod:`gblsr.training.native`), scored on whole images with the metric panel,
  per region, and a patch-seam measure.

Every mistake raises :class:`~gblsr.errors.UserInputError` with one line naming the key.
See ``docs/study.md`` for the schema.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import UserInputError

__all__ = [
    "MethodSpec",
    "StudyConfig",
    "load_study_config",
    "study_config_from_dict",
    "stable_hash",
    "NATIVE_ARMS",
]

NATIVE_ARMS = ("local_spectral", "global_fourier_mlp")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Allowed keys of each section, with defaults. Unknown keys are errors (typos must not pass).
_TOP = {
    "name",
    "kind",
    "description",
    "budget",
    "output",
    "runs",
    "seed",
    "device",
    "threads",
    "reference",
    "encoder",
    "native",
    "methods",
    "data",
    "train",
    "optim",
    "schedule",
    "eval",
    "timing",
    "visual",
}
_DATA_SR = {
    "train_dirs": None,
    "first_k": None,
    "repeat": 20,
    "cache": "memory",
    "inp_size": 48,
    "scale_min": 1.0,
    "scale_max": 4.0,
    "sample_q": 2304,
    "augment": True,
    "lr_kernel": "pil",
    "num_workers": 0,
}
_DATA_NATIVE = {
    "train_dirs": None,
    "image_size": 128,
    "val_fraction": 0.05,
    "augment": False,
    "num_workers": 0,
}
_TRAIN = {
    "steps": 1000,
    "batch_size": 16,
    "loss": "l1",
    "grad_clip": 0.0,
    "checkpoint_every": 200,
    "log_every": 50,
    "val_every": 0,
    "val_images": 8,
    "progress": "auto",
}
_OPTIM = {"name": "adam", "lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}
_SCHEDULE = {"name": "cosine", "milestones": [], "gamma": 0.5, "min_factor": 0.0, "warmup_steps": 0}
_EVAL = {
    "sets": None,
    "scales_in": [2, 3, 4],
    "scales_out": [6, 8, 12],
    "protocol": "benchmark",
    "lr_source": "auto",
    "max_images": None,
}
_TIMING = {"lr_size": 48, "scales": [4], "image_size": 256, "warmup": 2, "runs": 5}
_VISUAL = {"set": 0, "image": 0, "crop": 96, "scales": [4, 12]}


@dataclass
class MethodSpec:
    """One method of the study: ``name`` (its label and folder), ``model`` (an SR registry
    name, or a native arm), ``args`` (SR: model arguments, merged over the shared encoder;
    native: RunConfig overrides), ``train`` (dotted trainer-config overrides, for a method's
    own loss or sampling rules) and ``note`` (said in the report)."""

    name: str
    model: str
    args: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass
class StudyConfig:
    name: str
    kind: str
    methods: list[MethodSpec]
    data: dict[str, Any]
    train: dict[str, Any]
    optim: dict[str, Any]
    schedule: dict[str, Any]
    eval: dict[str, Any]
    timing: dict[str, Any]
    visual: dict[str, Any]
    encoder: dict[str, Any] | None = None
    native: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    budget: str = ""
    output: str = ""
    runs: str = ""
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    reference: str | None = None
    source: str = ""

    @property
    def scales(self) -> list[float]:
        return [*self.eval["scales_in"], *self.eval["scales_out"]]

    def method(self, name: str) -> MethodSpec:
        for m in self.methods:
            if m.name == name:
                return m
        raise UserInputError(f"no method named {name!r} in the study")

    def to_dict(self) -> dict[str, Any]:
        skip = ("methods", "source")
        d = {
            f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name not in skip
        }
        d["methods"] = [vars(m).copy() for m in self.methods]
        return d


def stable_hash(obj: Any) -> str:
    """sha256 (16 hex digits) of the canonical JSON of ``obj``."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _section(d: dict, key: str, defaults: dict[str, Any]) -> dict[str, Any]:
    raw = d.get(key)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserInputError(f"'{key}' must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        raise UserInputError(
            f"unknown key(s) in '{key}': {', '.join(unknown)}; known: {', '.join(sorted(defaults))}"
        )
    return {**copy.deepcopy(defaults), **raw}


def _number(sec: str, d: dict, key: str, kind: type, lo: float | None = None) -> None:
    v = d[key]
    if v is None:
        return
    try:
        if isinstance(v, bool):
            raise ValueError
        f = float(v)
        if kind is int and not f.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise UserInputError(f"{sec}.{key} must be a number, got {v!r}") from None
    if lo is not None and f < lo:
        raise UserInputError(f"{sec}.{key} must be >= {lo:g}, got {v!r}")
    d[key] = int(f) if kind is int else f


def _scales(sec: str, d: dict, key: str) -> None:
    v = d[key]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, list):
        raise UserInputError(f"{sec}.{key} must be a list of scales, got {v!r}")
    out = []
    for s in v:
        try:
            f = float(s)
        except (TypeError, ValueError):
            raise UserInputError(f"{sec}.{key}: scale {s!r} is not a number") from None
        if not f >= 1:
            raise UserInputError(f"{sec}.{key}: scales must be >= 1, got {s!r}")
        out.append(int(f) if f.is_integer() else f)
    d[key] = out


def _folders(sec: str, d: dict, key: str) -> None:
    v = d[key]
    if isinstance(v, str):
        v = [v]
    if not v or not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise UserInputError(f"{sec}.{key} must list one or more folders")
    d[key] = v


def _eval_sets(ev: dict) -> None:
    """``eval.sets``: folders, or ``{path, max_images}`` mappings (a per-set cap on the first
    images, for CPU budgets); normalised to a list of folders and ``eval.caps``."""
    raw = ev["sets"]
    if isinstance(raw, (str, dict)):
        raw = [raw]
    if not raw or not isinstance(raw, list):
        raise UserInputError("eval.sets must list one or more folders")
    paths, caps = [], []
    for i, item in enumerate(raw):
        cap = None
        if isinstance(item, dict):
            if set(item) - {"path", "max_images"} or not isinstance(item.get("path"), str):
                raise UserInputError(f"eval.sets[{i}] must be a folder or {{path, max_images}}")
            d = {"max_images": item.get("max_images")}
            _number(f"eval.sets[{i}]", d, "max_images", int, 1)
            item, cap = item["path"], d["max_images"]
        if not isinstance(item, str) or not item:
            raise UserInputError("eval.sets must list one or more folders")
        paths.append(item)
        caps.append(cap if cap is not None else ev.get("max_images"))
    ev["sets"], ev["caps"] = paths, caps


def _methods(raw: Any, kind: str) -> list[MethodSpec]:
    if not isinstance(raw, list) or not raw:
        raise UserInputError("'methods' must be a non-empty list")
    out, seen = [], set()
    for i, m in enumerate(raw):
        if isinstance(m, str):
            m = {"name": m, "model": m}
        if not isinstance(m, dict):
            raise UserInputError(f"methods[{i}] must be a mapping or a model name")
        unknown = sorted(set(m) - {"name", "model", "args", "train", "note"})
        if unknown:
            raise UserInputError(f"unknown key(s) in methods[{i}]: {', '.join(unknown)}")
        model = m.get("model") or m.get("name")
        name = str(m.get("name") or model or "")
        if not model or not _NAME.match(name):
            raise UserInputError(f"methods[{i}] needs a model and a name of letters, digits, _.-")
        if name in seen or name == "bicubic":
            raise UserInputError(f"methods[{i}]: the name {name!r} is used twice or reserved")
        seen.add(name)
        if kind == "native" and model not in NATIVE_ARMS:
            raise UserInputError(
                f"methods[{i}]: native arm {model!r} unknown; use {' or '.join(NATIVE_ARMS)}"
            )
        for key in ("args", "train"):
            if not isinstance(m.get(key) or {}, dict):
                raise UserInputError(f"methods[{i}].{key} must be a mapping")
        out.append(
            MethodSpec(
                name=name,
                model=str(model),
                args=dict(m.get("args") or {}),
                train=dict(m.get("train") or {}),
                note=str(m.get("note") or ""),
            )
        )
    return out


def study_config_from_dict(d: dict[str, Any], source: str = "") -> StudyConfig:
    """Validate a study YAML dict (one-line :class:`UserInputError` on any mistake)."""
    if not isinstance(d, dict):
        raise UserInputError("a study config must be a YAML mapping")
    unknown = sorted(set(d) - _TOP)
    if unknown:
        raise UserInputError(f"unknown top-level key(s): {', '.join(unknown)}")
    kind = d.get("kind", "sr")
    if kind not in ("sr", "native"):
        raise UserInputError(f"kind must be 'sr' or 'native', got {kind!r}")
    name = str(d.get("name") or (Path(source).stem if source else ""))
    if not _NAME.match(name):
        raise UserInputError(f"name must be letters, digits, _.- (got {name!r})")
    data = _section(d, "data", _DATA_SR if kind == "sr" else _DATA_NATIVE)
    train = _section(d, "train", _TRAIN)
    optim = _section(d, "optim", _OPTIM)
    sched = _section(d, "schedule", _SCHEDULE)
    ev = _section(d, "eval", _EVAL)
    timing = _section(d, "timing", _TIMING)
    visual = _section(d, "visual", _VISUAL)
    _folders("data", data, "train_dirs")
    _number("eval", ev, "max_images", int, 1)
    _eval_sets(ev)
    for key in ("steps", "batch_size"):
        _number("train", train, key, int, 1)
    for key in ("checkpoint_every", "val_every", "val_images"):
        _number("train", train, key, int, 0)
    _number("train", train, "log_every", int, 1)
    _number("train", train, "grad_clip", float, 0)
    _number("optim", optim, "lr", float, 0)
    if not optim["lr"] > 0:
        raise UserInputError("optim.lr must be positive")
    if optim["name"] not in ("adam", "adamw"):
        raise UserInputError(f"optim.name must be adam or adamw, got {optim['name']!r}")
    if train["loss"] not in ("l1", "mse", "charbonnier"):
        raise UserInputError(f"train.loss must be l1, mse or charbonnier, got {train['loss']!r}")
    if sched["name"] not in ("multistep", "cosine", "constant"):
        raise UserInputError("schedule.name must be multistep, cosine or constant")
    _scales("eval", ev, "scales_in")
    _scales("eval", ev, "scales_out")
    _scales("timing", timing, "scales")
    _scales("visual", visual, "scales")
    if ev["protocol"] not in ("benchmark", "div2k"):
        raise UserInputError(f"eval.protocol must be benchmark or div2k, got {ev['protocol']!r}")
    for key in ("lr_size", "image_size", "runs"):
        _number("timing", timing, key, int, 1)
    _number("timing", timing, "warmup", int, 0)
    _number("visual", visual, "crop", int, 8)
    methods = _methods(d.get("methods"), kind)
    encoder = d.get("encoder")
    if kind == "sr":
        _number("data", data, "inp_size", int, 4)
        for key in ("scale_min", "scale_max"):
            _number("data", data, key, float, 1)
        if data["scale_max"] < data["scale_min"]:
            raise UserInputError("data.scale_max must be >= data.scale_min")
        if data["lr_kernel"] not in ("pil", "matlab"):
            raise UserInputError(f"data.lr_kernel must be pil or matlab, got {data['lr_kernel']!r}")
        if not isinstance(encoder, dict) or not isinstance(encoder.get("name"), str):
            raise UserInputError("'encoder' must be a mapping with a name (and args)")
        if set(encoder) - {"name", "args"} or not isinstance(encoder.get("args") or {}, dict):
            raise UserInputError("'encoder' takes only name and args (a mapping)")
        encoder = {"name": encoder["name"], "args": dict(encoder.get("args") or {})}
    else:
        if encoder is not None:
            raise UserInputError("native studies take no 'encoder' (set native.d_feat etc.)")
        _number("data", data, "image_size", int, 8)
        if optim["name"] != "adamw" or sched["name"] != "constant":
            raise UserInputError(
                "the native trainer uses AdamW (betas 0.9, 0.95) at a constant learning rate: "
                "set optim.name: adamw and schedule.name: constant"
            )
    native = d.get("native") or {}
    if not isinstance(native, dict):
        raise UserInputError("'native' must be a mapping of RunConfig settings")
    reference = d.get("reference")
    if reference is not None and reference not in {m.name for m in methods}:
        raise UserInputError(f"reference {reference!r} is not one of the methods")
    threads = d.get("threads")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UserInputError(f"threads must be a positive integer or null, got {threads!r}")
    return StudyConfig(
        name=name,
        kind=kind,
        methods=methods,
        data=data,
        train=train,
        optim=optim,
        schedule=sched,
        eval=ev,
        timing=timing,
        visual=visual,
        encoder=encoder,
        native=dict(native),
        description=str(d.get("description") or ""),
        budget=str(d.get("budget") or ""),
        output=str(d.get("output") or f"results/{name}"),
        runs=str(d.get("runs") or f"runs/study/{name}"),
        seed=int(d.get("seed") or 0),
        device=str(d.get("device") or "auto"),
        threads=threads,
        reference=reference,
        source=source,
    )


def load_study_config(path: str | Path, overrides: list[str] | None = None) -> StudyConfig:
    """Read, override (``section.key=value``) and validate a study YAML."""
    from ..training import apply_overrides, load_config

    d = apply_overrides(load_config(path), overrides or [])
    return study_config_from_dict(d, source=str(path))

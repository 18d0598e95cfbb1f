"""Method metadata from the registry: paper, family, defaults, and the docstring's sections."""

from __future__ import annotations

import dataclasses
import re
import sys

import pandas as pd
import streamlit as st

import data  # noqa: F401  (puts the code root on sys.path)

LABELS = {"mechanism": "mechanism", "paper defaults": "defaults", "defaults": "defaults",
          "deviations": "deviations", "deviation": "deviations"}
_LABEL = re.compile(r"^(" + "|".join(sorted(LABELS, key=len, reverse=True)) + r")(\s*\(.*?\))?:\s*",
                    re.IGNORECASE)  # "Mechanism:" or "Mechanism (local DIM):" (the qualifier is kept)


def _unwrap(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def docstring_sections(doc: str) -> dict[str, str]:
    """Split a method docstring into title, mechanism, defaults and deviations.

    Sections open with "Mechanism:", "Paper defaults:"/"Defaults:" or
    "Deviations:"/"Deviation:" at the start of a line; without a "Mechanism:"
    section the first unlabelled paragraph after the title is the mechanism.
    """
    paragraphs = [p for p in re.split(r"\n\s*\n", (doc or "").strip()) if p.strip()]
    out = {"title": _unwrap(paragraphs[0]) if paragraphs else "", "mechanism": "", "defaults": "", "deviations": ""}
    unlabelled = []
    for paragraph in paragraphs[1:]:
        key, chunk = None, []
        for line in paragraph.splitlines() + [None]:
            match = _LABEL.match(line.strip()) if line is not None else None
            if line is None or match:
                text = _unwrap("\n".join(chunk))
                if key:
                    out[key] = f"{out[key]} {text}".strip()
                elif text:
                    unlabelled.append(text)
                if match:
                    qualifier = (match.group(2) or "").strip()
                    key = LABELS[match.group(1).lower()]
                    chunk = [f"{qualifier} {line.strip()[match.end():]}".strip()]
            else:
                chunk.append(line)
    if not out["mechanism"]:
        out["mechanism"] = unlabelled[0] if unlabelled else out["title"]
    return out


@st.cache_data(show_spinner=False)
def method_cards() -> list[dict]:
    """One dict per registered method (registry order: by name)."""
    from methods.registry import get_method, method_names

    cards = []
    for name in method_names():
        cls = get_method(name)
        doc = sys.modules[cls.__module__].__doc__ or ""
        cards.append({"name": name, "paper": cls.paper, "family": cls.family, "view_recipe": cls.view_recipe,
                      "trains": cls.trains, "flag": cls.deviation, "doc": doc,
                      "hparams": dataclasses.asdict(cls.Hparams()), **docstring_sections(doc)})
    return cards


def families() -> dict[str, str]:
    """Registry name -> family; {} with a visible warning if the registry cannot be imported."""
    try:
        cards = method_cards()
    except Exception as err:  # a method file mid-edit must not take the leaderboard down
        st.warning(f"The method registry could not be loaded ({err}); families read 'unregistered'.", icon="⚠️")
        return {}
    return {card["name"]: card["family"] for card in cards}


_ROLE = re.compile(r":(?:mod|class|func|meth|attr|data|obj|exc|ref|doc|py:\w+):`~?([^`]+)`")
_MARKDOWN = re.compile(r"([\\*_$~|\[\]#<>])")


def to_markdown(text: str) -> str:
    """Docstring text as Markdown that shows what it says: Sphinx roles and ``literals`` become `code`, and
    Markdown's own characters (``*``, ``_``, ``$``, ...) outside code are escaped, so formulas stay intact."""
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", text or "").replace("``", "`")
    parts = text.split("`")
    return "`".join(part if i % 2 else _MARKDOWN.sub(r"\\\1", part) for i, part in enumerate(parts))


def params_overrides(path) -> dict[str, dict]:
    """Per method, the overrides params.yaml gives it ({} = none), or {} when the file is absent or unreadable."""
    try:
        import yaml

        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, ValueError):
        return {}
    methods = loaded.get("methods") if isinstance(loaded, dict) else None
    return {k: v or {} for k, v in (methods or {}).items() if isinstance(v, dict) or v is None}


def params_suite(path) -> str | None:
    """The suite params.yaml runs (``suite:``), or None when the file is absent or unreadable."""
    try:
        import yaml

        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, ValueError):
        return None
    suite = loaded.get("suite") if isinstance(loaded, dict) else None
    return suite if isinstance(suite, str) else None


def hparams_ran(defaults: dict, overrides: dict, resolved: dict | None = None) -> list[dict]:
    """One row per hyper-parameter: the code's default, the params.yaml override, and the value that ran
    (``resolved``: the pipeline's own resolution, which also applies the suite's optimizer; without it the
    override, else the default)."""
    flat, given = flat_hparams(defaults), flat_hparams(overrides)
    ran = flat_hparams(resolved) if resolved is not None else {}
    rows = [{"hyper-parameter": k, "default": v, "params.yaml": given.get(k, ""), "ran": ran.get(k, given.get(k, v))}
            for k, v in flat.items()]
    rows += [{"hyper-parameter": k, "default": "", "params.yaml": v, "ran": v} for k, v in given.items()
             if k not in flat]  # run options such as backbones
    return rows


def flat_hparams(hparams: dict, prefix: str = "") -> dict[str, str]:
    """Nested defaults as ``optimizer.lr``-style keys with printable values."""
    out = {}
    for key, value in hparams.items():
        if isinstance(value, dict):
            out.update(flat_hparams(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


def _scaling_rules() -> dict:
    """(method, swept hyper-parameter) -> the method's own rule for the value it runs at (methods.modules)."""
    from methods import modules

    return {("mocov2", "momentum"): lambda v, c: modules.scale_momentum(v, 256, c),
            ("mocov2", "queue_length"): lambda v, c: modules.scale_length(int(v), c.dataset_size, c.batch_size),
            ("byol", "tau_base"): lambda v, c: modules.scale_momentum(v, 4096, c),
            ("instdisc", "negatives"): lambda v, c: modules.scaled_negatives(int(v), c, True)}


def run_context(info: dict):
    """What a method knows of a suite's run (dataset size, batch, steps, EMA cap), from the suite's file."""
    from types import SimpleNamespace

    train, budget = info.get("train") or {}, info.get("budget") or {}
    size = (info.get("dataset") or {}).get("pretrain_subset") or 60000
    batch = train.get("batch_size", 256)
    steps = int(budget.get("value", 0) // batch) if budget.get("unit") == "images_seen" else 0
    return SimpleNamespace(dataset_size=size, batch_size=batch, total_steps=steps,
                           ema_horizon_cap=train.get("ema_horizon_cap", 1.0))


def effective_value(method: str, parameter: str, value, info: dict):
    """The value a swept hyper-parameter really ran at after the method scales it to the suite, or None
    when the method uses it as given."""
    rule = _scaling_rules().get((method, parameter))
    number = pd.to_numeric(value, errors="coerce")
    if rule is None or pd.isna(number) or not info:
        return None
    return rule(float(number), run_context(info))


def _dataset_shape(suite) -> tuple[int, int, int]:
    """(channels, classes, pretraining images) of a suite's dataset: from its prepared cache
    (data/<suite>/dataset.json) when present, else Fashion-MNIST's or a 3-channel guess. They only size a
    method's modules (a memory bank, CMC's second encoder); no view depends on them."""
    info = data.read_json(data.root() / "data" / suite.name / "dataset.json") or {}
    channels = (info.get("shape") or [1 if suite.dataset.name == "fashion_mnist" else 3])[0]
    train = int(info.get("train") or 60000)
    subset = suite.dataset.pretrain_subset
    return int(channels), int(info.get("num_classes") or 10), min(subset, train) if subset else train


@st.cache_data(show_spinner="Building each method as the pipeline does ...")
def method_run(name: str, suite_name: str, overrides: dict) -> dict:
    """What the pipeline runs for method ``name`` on ``suite_name`` with params.yaml's ``overrides``:
    ``hparams`` (``pipeline.plan.method_hparams``, what ``run_plan`` gives the runs: paper defaults, the
    suite's optimizer, the overrides) and ``views`` (the crops its ``views(resolution)`` returns on the suite's
    backbone, as dicts; None for a method that never trains)."""
    from dataclasses import asdict, replace

    import torch
    from bench.backbones import build_backbone
    from bench.config import load_suite
    from methods.base import Context
    from methods.registry import get_method
    from pipeline.plan import method_hparams

    suite = load_suite(suite_name)
    cls = get_method(name)
    hp = method_hparams(suite, name, overrides)
    out = {"hparams": asdict(hp), "views": None, "resolution": suite.resolution,
           "backbone": suite.backbone.name}
    if not cls.trains:
        return out
    channels, classes, size = _dataset_shape(suite)
    batch, budget = suite.train.batch_size, suite.budget
    steps = {"images_seen": budget.value / batch, "epochs": budget.value * size / batch}.get(budget.unit, 0)
    ctx = Context(size, classes, batch, max(1, int(steps)), suite.resolution, channels, suite.train.ema_horizon_cap)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        method = cls(build_backbone(replace(suite.backbone, in_channels=channels)), hp, ctx)
    out["views"] = [asdict(crop) for crop in method.views(suite.resolution).crops]
    return out

"""Method metadata from the registry: paper, family, defaults, and the docstring's sections."""

from __future__ import annotations

import dataclasses
import re
import sys

import streamlit as st

import data  # noqa: F401  (puts the code root on sys.path)

LABELS = {"mechanism": "mechanism", "paper defaults": "defaults", "defaults": "defaults",
          "deviations": "deviations", "deviation": "deviations"}
_LABEL = re.compile(r"^(" + "|".join(sorted(LABELS, key=len, reverse=True)) + r"):\s*", re.IGNORECASE)


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
                    key, chunk = LABELS[match.group(1).lower()], [line.strip()[match.end():]]
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
                      "trains": cls.trains, "flag": cls.deviation,
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


def flat_hparams(hparams: dict, prefix: str = "") -> dict[str, str]:
    """Nested defaults as ``optimizer.lr``-style keys with printable values."""
    out = {}
    for key, value in hparams.items():
        if isinstance(value, dict):
            out.update(flat_hparams(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out

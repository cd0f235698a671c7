"""Ionic (membrane) models behind one interface, looked up by name."""
from __future__ import annotations

from typing import Mapping

from .base import CELL_TYPE_CODES, CELL_TYPE_NAMES, ENDO, EPI, MID, IonicModel
from .mitchell_schaeffer import MitchellSchaeffer
from .tt06 import TenTusscherPanfilov2006

MODELS: dict[str, type[IonicModel]] = {
    MitchellSchaeffer.name: MitchellSchaeffer,
    TenTusscherPanfilov2006.name: TenTusscherPanfilov2006,
}


def create_model(name: str, parameters: Mapping[str, float] | None = None, **options: str) -> IonicModel:
    """The ionic model called ``name`` with its parameter overrides and
    model options (TT06: ``kernel``)."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown ionic model {name!r}; choose one of: {', '.join(sorted(MODELS))}"
        ) from None
    return cls(parameters=dict(parameters or {}), **options)


__all__ = [
    "CELL_TYPE_CODES", "CELL_TYPE_NAMES", "ENDO", "MID", "EPI", "IonicModel",
    "MODELS", "create_model", "MitchellSchaeffer", "TenTusscherPanfilov2006",
]

"""Checkpoints: written atomically, read with clear errors, turned back into a model.

A checkpoint is one ``torch.save`` file with the weights, optimiser and
scheduler state, the number of completed epochs, every rank's RNG states, the
validated configuration and what inference needs to prepare an ECG (input
scaling and its statistics, trace length).  It is loaded with
``weights_only=True``, so only tensors and plain Python values are accepted
and opening a file from elsewhere cannot run code.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from solver.common.errors import ConfigError, OutputError
from solver.common.files import atomic_output, remove_stale_temporaries

from .network import EcgiNet, build_network

FORMAT = "ecgi-checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("epoch", "model", "config", "inputs")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write under a temporary name in the same directory, fsync, then rename over ``path``.

    A reader (or a resume after the job is killed mid-write) sees the old
    file or the new one, never a partial one.
    """
    path = Path(path)
    try:
        with atomic_output(path, fsync=True) as tmp:
            torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, tmp)
    except RuntimeError as exc:  # torch's writer reports a full disk as "unexpected pos ..."
        raise _write_error(path, exc) from exc
    remove_stale_temporaries(path)


def _write_error(path: Path, exc: RuntimeError) -> OutputError:
    free = shutil.disk_usage(path.parent).free
    reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    if free < 64 << 20:
        return OutputError(f"{path}: no space left on device ({free >> 20} MiB free); free some space "
                           "or choose another --output")
    return OutputError(f"{path}: could not be written ({reason})")


def publish_copy(source: Path, target: Path) -> None:
    """Atomically make ``target`` a copy of the finished file ``source``.

    A hard link costs no I/O and stays valid when ``source`` is later
    replaced (os.replace swaps the name, not the file); filesystems without
    links get a real copy.
    """
    with atomic_output(target) as tmp:
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
    remove_stale_temporaries(target)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU, turning a missing, truncated or foreign file into a ConfigError.

    Optimiser state follows the parameters to their device when loaded into it.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the safe unpickler fails on junk in many ways (IndexError, KeyError, ...)
        raise ConfigError(f"{path}: not a readable checkpoint (truncated or corrupt?): {_load_failure(exc)}; "
                          "use a best.pt or last.pt written by `ecgi train`") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"{path}: not an ecgi checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{path}: checkpoint format version {state.get('format_version')} is not supported")
    missing = [key for key in _REQUIRED if key not in state]
    if missing:
        raise ConfigError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state


def _load_failure(exc: BaseException) -> str:
    """Why torch could not load a file, in a few words.

    torch's own message for a file it will not unpickle safely suggests
    loading it with ``weights_only=False``, which would run any code the
    file holds: that advice is never passed on."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.strerror or str(exc)
    first = (str(exc).splitlines() or [""])[0]
    if not first or "weights_only" in str(exc) or "Weights only load failed" in first:
        return "not a weights-only torch file"
    return first.split(". ")[0][:200]


def model_from_checkpoint(state: dict[str, Any], path: str | Path = "checkpoint") -> EcgiNet:
    """Rebuild the network a checkpoint was trained with and load its weights."""
    network = state["config"]["network"]
    model = build_network(network["architecture"], network["dropout"], network["softargmax_temperature"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ConfigError(f"{path}: weights do not fit a {network['architecture']} network: {str(exc).splitlines()[0]}") from None
    return model.eval()


def rng_state() -> dict[str, Any]:
    """This process's torch (and CUDA), numpy and Python RNG states, as checkpointable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached_gaussian": cached},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` saved."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])

"""Checkpoints: written atomically, read with clear errors, turned back into a model.

A checkpoint is one ``torch.save`` file with the weights, optimiser and
scheduler state, the number of completed epochs, every rank's RNG states, the
validated configuration and what inference needs to prepare an ECG (input
scaling and its statistics, trace length).  It is loaded with
``weights_only=True``, so only tensors and plain Python values are accepted
and opening a file from elsewhere cannot run code.

Two checks on every load keep a damaged or forged file from being used:
the SHA-256 digest of every value, written with them, must match (bytes
changed in place otherwise give wrong predictions without an error), and
the metadata must pass the same typed validation as a training file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import shutil
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import torch

from solver.common.errors import ConfigError, OutputError
from solver.common.files import atomic_output, remove_stale_temporaries
from solver.common.typedconfig import from_mapping, to_mapping

from .config import config_from_dict
from .network import EcgiNet, build_network

FORMAT = "ecgi-checkpoint"
#: 2: a digest of every value is stored and checked on every load.
FORMAT_VERSION = 2
_REQUIRED = ("epoch", "model", "config", "inputs")
_DIGEST = "sha256"


@dataclasses.dataclass
class CheckpointInputs:
    """How the network reads an ECG (``model.train.checkpoint_inputs``)."""

    scaling: Literal["range", "common_range", "standardise"]
    samples: int
    dt_ms: float
    ecg_mean: list[float]
    ecg_std: list[float]
    ood: Optional[dict[str, Any]] = None

    def validate(self) -> None:
        if self.samples < 1 or not self.dt_ms > 0:
            raise ConfigError(f"traces of {self.samples} samples x {self.dt_ms} ms cannot be read")
        if len(self.ecg_mean) != 12 or len(self.ecg_std) != 12:
            raise ConfigError("ecg_mean and ecg_std must have one value per lead (12)")
        if self.ood is not None:
            from .clinical.trust import OodReference

            from_mapping(OodReference, self.ood, "ood")


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 of every value of a checkpoint, in a canonical order: tensors
    by dtype, shape and bytes, everything else by its representation."""
    digest = hashlib.sha256()

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous().reshape(-1)  # 1-D: a scalar cannot be viewed as bytes
            digest.update(f"tensor {value.dtype} {tuple(value.shape)};".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        elif isinstance(value, dict):
            digest.update(f"dict {len(value)};".encode())
            for key in sorted(value, key=repr):
                digest.update(repr(key).encode())
                walk(value[key])
        elif isinstance(value, (list, tuple)):
            digest.update(f"{type(value).__name__} {len(value)};".encode())
            for item in value:
                walk(item)
        else:
            digest.update(f"{type(value).__name__} {value!r};".encode())

    walk({key: value for key, value in state.items() if key != _DIGEST})
    return digest.hexdigest()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write under a temporary name in the same directory, fsync, then rename over ``path``.

    A reader (or a resume after the job is killed mid-write) sees the old
    file or the new one, never a partial one.
    """
    path = Path(path)
    payload = {**state, "format": FORMAT, "format_version": FORMAT_VERSION}
    payload[_DIGEST] = state_digest(payload)
    try:
        with atomic_output(path, fsync=True) as tmp:
            torch.save(payload, tmp)
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
        raise ConfigError(f"{path}: checkpoint format version {state.get('format_version')} is not supported "
                          f"(this ecgi reads version {FORMAT_VERSION}, whose weights carry a digest); train it again")
    if state.pop(_DIGEST, None) != state_digest(state):
        raise ConfigError(f"{path}: its contents do not match the digest written with them (changed or damaged "
                          "since `ecgi train` wrote it); use an intact copy or train again")
    missing = [key for key in _REQUIRED if key not in state]
    if missing:
        raise ConfigError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return _validated(state, path)


def _validated(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """The metadata checked as a training file is, with every default filled in."""
    try:
        state["config"] = to_mapping(config_from_dict(state["config"]))
        state["inputs"] = dataclasses.asdict(from_mapping(CheckpointInputs, state["inputs"], "inputs"))
    except ConfigError as exc:
        raise ConfigError(f"{path}: checkpoint metadata: {exc}") from None
    if not isinstance(state["epoch"], int) or state["epoch"] < 0:
        raise ConfigError(f"{path}: checkpoint metadata: epoch {state['epoch']!r} is not a count of epochs")
    if not isinstance(state["model"], dict) or not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        raise ConfigError(f"{path}: checkpoint metadata: model is not a set of named weights")
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
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": pos,
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

"""Files written so that no reader ever sees half of one, and their digests.

Every file a user or another process relies on (sample files, records,
shards, manifests, checkpoints, caches) is written under a hidden temporary
name in the same directory and renamed into place: a rename within a file
system is atomic, so a crash leaves the old file or the new one, never a mix.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def temporary_path(path: Path) -> Path:
    """A hidden name beside ``path``, unique to this process."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()

"""Files written so that no reader ever sees half of one, and their digests.

Every file a user or another process relies on (sample files, records,
shards, manifests, checkpoints, caches) is written under a hidden temporary
name in the same directory and renamed into place: a rename within a file
system is atomic, so a crash leaves the old file or the new one, never a mix.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Iterable, Iterator


def temporary_path(path: Path) -> Path:
    """A hidden name beside ``path``, unique to this process."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_output(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """The one way ecgi writes a file: yields a temporary name beside
    ``path`` to write (and close) the file under; on success it is renamed
    over ``path`` (after an fsync if asked), on any failure removed, so a
    reader never sees a partial file and a full disk is not filled further.

        with atomic_output(path) as tmp:
            with h5py.File(tmp, "w") as f:
                ...
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: Free space every output location must have before a command starts work.
MIN_FREE_BYTES = 1 << 20


def check_writable(path: str | Path, need_bytes: int = MIN_FREE_BYTES, directory: bool = False,
                   inputs: Iterable[str | Path] = ()) -> Path:
    """Refuse, before any work, an output location that cannot be written.

    ``path`` is the file (or, with ``directory``, the directory) a command
    will write; it need not exist yet.  Checked: it is none of the command's
    ``inputs``, an existing path is of the
    right kind, the nearest existing folder accepts a new file (a real probe:
    root ignores permission bits but not a read-only mount) and its file
    system has ``need_bytes`` free.  Raises OutputError naming the fix;
    returns the absolute path.
    """
    from .errors import OutputError

    path = Path(path).expanduser().absolute()
    _check_not_an_input(path, inputs)
    if directory and path.exists() and not path.is_dir():
        raise OutputError(f"{path} is an existing file, not a directory; choose another output directory")
    if not directory and path.is_dir():
        raise OutputError(f"{path} is a directory; give the name of a file to write")
    folder = path if directory else path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"{folder} is a file, so {path} cannot be created; choose another output location")
    probe = folder / f".ecgi-write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
    except OSError as exc:
        raise OutputError(f"cannot write in {folder} ({describe_os_error(exc)}); "
                          "choose a writable output location") from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    if free < need_bytes:
        raise OutputError(f"only {_size(free)} free on the file system of {folder}, {_size(need_bytes)} needed; "
                          "free some space or choose another output location")
    return path


def _check_not_an_input(output: Path, inputs: Iterable[str | Path]) -> None:
    """An output that is one of the inputs, by any name (links, ``..``),
    would replace what the command reads."""
    from .errors import OutputError

    target = output.resolve()
    for given in inputs:
        if Path(given).expanduser().resolve() == target:
            raise OutputError(f"the output {output} is the input {given}; choose another output name, "
                              "so that the input is kept")


def describe_os_error(exc: OSError) -> str:
    """A short reason for an OS error, without Python's class name."""
    import errno

    reasons = {errno.ENOSPC: "no space left on device", errno.EROFS: "read-only file system",
               errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
               errno.EDQUOT: "disk quota exceeded"}
    return reasons.get(exc.errno or 0, exc.strerror or str(exc))


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries of ``path`` (``temporary_path``) left by processes
    that no longer run, e.g. after a kill or a full disk."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True

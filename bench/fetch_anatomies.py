"""Fetch the real heart meshes that ``ecgi anatomy import`` is measured on.

    python -m bench.fetch_anatomies [--output DIR]

Downloads each mesh from its repository at a pinned commit and checks its
SHA-256 (tests/data/anatomy/SOURCES.md lists the sources and licences).
The files are the ones tests/data/anatomy holds; the command is for a
checkout without them, and for adding anatomies to ``MESHES``.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

COBIVECO = "https://raw.githubusercontent.com/KIT-IBT/Cobiveco/27cd9a66af8d5b35a09502e550c3ded5b882f886"
CARDIAC_ML = "https://raw.githubusercontent.com/landajuela/cardiac_ml/9659af490237784e8b769baf4508be4a907b6534"


@dataclass(frozen=True)
class Mesh:
    name: str  #: local file name
    url: str
    sha256: str


MESHES = (
    Mesh("cardiac_ml_heart_mesh.vtk", f"{CARDIAC_ML}/geometry/heart_mesh.vtk",
         "dd8f628a672ac7c0a6c466b042cf7762f5ccafb8b5770028400dc8ae62cf84a4"),
    Mesh("cobiveco_geo1_heart.vtp", f"{COBIVECO}/examples/geo1/heart.vtp",
         "d5474ac870b679ca8f1235661ae7e12212ddde2953ae7df7848721f757e96339"),
    Mesh("cobiveco_geo2_heart_base.ply", f"{COBIVECO}/examples/geo2/heart_base.ply",
         "19e4a916d0b86cdb39f46723694fa71ee8261e6ff7a35ee8b818d093274831dd"),
    Mesh("cobiveco_geo2_heart_endo_lv.ply", f"{COBIVECO}/examples/geo2/heart_endo_lv.ply",
         "648707cf6b15cb3fd53a08ab1099d13a9bb26af45d6fc45e6be6e0088244758f"),
    Mesh("cobiveco_geo2_heart_endo_rv.ply", f"{COBIVECO}/examples/geo2/heart_endo_rv.ply",
         "be5c470632a853179aaf77852d43c3585fef548fed622de63a0fa2cbbf915a0d"),
    Mesh("cobiveco_geo2_heart_epi.ply", f"{COBIVECO}/examples/geo2/heart_epi.ply",
         "f2a08929dc1f91f4ffca45e7e4407fe8c383b506a4c3a3e567761b932690258b"),
)


def fetch(mesh: Mesh, folder: Path) -> Path:
    """The mesh in ``folder``, downloaded unless a file with its digest is there."""
    path = folder / mesh.name
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == mesh.sha256:
        return path
    with urllib.request.urlopen(mesh.url, timeout=60) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != mesh.sha256:
        raise RuntimeError(f"{mesh.url}: SHA-256 {digest}, expected {mesh.sha256}")
    path.write_bytes(data)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("anatomies"), help="folder (default ./anatomies)")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    for mesh in MESHES:
        print(fetch(mesh, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())

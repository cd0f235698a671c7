"""User anatomies: labelled voxel images and tetrahedral meshes as region codes.

``load_labelled_anatomy(path, dx)`` returns what ``solver.patient.heart.build_heart``
needs: an int8 image of region codes (``OUTSIDE``, ``TISSUE``, ``LV_CAVITY``,
``RV_CAVITY`` of ``solver.patient.biventricle``) on a grid of spacing ``dx`` mm, and
the centre of voxel (0, 0, 0) in mm.  Surfaces (endocardia, epicardium, base)
are derived from the codes later, so the codes are all a file must supply.

Labelled voxel images (codes 0..3 as above):

* ``.h5`` / ``.hdf5``: dataset ``labels`` (3-D integers) with attributes
  ``spacing_mm`` (one value, or one per axis) and ``origin_mm`` (3 values,
  centre of voxel (0, 0, 0)); attributes of the file root are used where the
  dataset has none.  ``save_labelled_image`` writes this format.
* ``.npz``: arrays ``labels``, ``spacing_mm`` and ``origin_mm``.
* ``.npy``: the labels only, with a sidecar JSON file named after the whole
  file name (``heart.npy.json``) holding ``{"spacing_mm": ..., "origin_mm": ...}``.

An image whose spacing differs from ``dx`` (anisotropic spacing allowed) is
resampled by nearest neighbour onto a ``dx`` grid covering the same extent.
An image whose labelled voxels touch its border gets one OUTSIDE layer so that
the epicardium is closed.

Tetrahedral meshes (``.vtk`` legacy or ``.vtu``, read with meshio): the
tetrahedra are the myocardium; triangle cells carry surface tags in an integer
cell-data array (``labels``, ``tags``, ``surface``, ``gmsh:physical``,
``medit:ref``, ... or the name given as ``tag_array``).  Default tags: LV
endocardium 1, RV endocardium 2, epicardium 3 (``SurfaceTags``).  Coordinates
are in mm unless ``scale`` says otherwise (1000 for metres, 10 for cm).

A voxel is tissue when its centre lies in a tetrahedron.  A cavity is made of
the non-tissue voxels inside the convex hull of that endocardium's vertices
(the base opening is closed by the hull too); the RV cavity excludes the LV
cavity.  This is exact for a convex LV cavity and an approximation for the
crescent-shaped RV, whose hull also spans the septum (tissue, so excluded) and
may take in a few outside voxels in the interventricular grooves near the base.
The mesh grid has two OUTSIDE voxel layers on every side.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Optional, Union

import h5py
import numpy as np
from scipy.spatial import ConvexHull, Delaunay, QhullError

from .biventricle import LV_CAVITY, OUTSIDE, RV_CAVITY, TISSUE
from ..common.errors import ConfigError

if TYPE_CHECKING:
    import meshio

PathLike = Union[str, os.PathLike]
KNOWN_CODES = (OUTSIDE, TISSUE, LV_CAVITY, RV_CAVITY)
#: Cell-data names searched (case-insensitively, in order) for surface tags.
TAG_ARRAY_NAMES = ("labels", "label", "tags", "tag", "surface", "surface_id", "gmsh:physical",
                   "medit:ref", "cellentityids", "ref")
MESH_SUFFIXES = (".vtk", ".vtu")
#: OUTSIDE voxel layers around a voxelised mesh.
MESH_PADDING = 2
#: Barycentric tolerance: voxel centres on a shared face or edge count as inside.
BARYCENTRIC_TOL = 1e-9
#: Candidate (voxel, tetrahedron) pairs tested at once; bounds the memory used.
CANDIDATE_BATCH = 1 << 16
#: A grid larger than this is a unit mistake rather than an anatomy.
MAX_GRID_VOXELS = 1_000_000_000


@dataclass(frozen=True)
class SurfaceTags:
    """Values of the triangle tags marking each surface of a tetrahedral mesh."""

    lv_endo: int = 1
    rv_endo: int = 2
    epi: int = 3


@dataclass
class LabelledImage:
    """A labelled image as stored, before resampling to the simulation grid."""

    labels: np.ndarray
    spacing: np.ndarray  #: (3,) mm
    origin: np.ndarray  #: (3,) mm, centre of voxel (0, 0, 0)


def load_labelled_anatomy(path: PathLike, dx: float, *,
                          surface_tags: Union[SurfaceTags, Mapping[str, int], None] = None,
                          tag_array: Optional[str] = None,
                          scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Region codes (int8) on a ``dx`` grid and the grid origin (mm) of a user anatomy.

    ``surface_tags``, ``tag_array`` and ``scale`` apply to tetrahedral meshes only.
    """
    path = Path(path)
    if not dx > 0:
        raise ConfigError(f"{path}: dx must be positive, got {dx}")
    if not path.is_file():
        raise ConfigError(f"{path}: anatomy file not found")
    suffix = path.suffix.lower()
    if suffix in MESH_SUFFIXES:
        return _mesh_codes(path, dx, _surface_tags(surface_tags, path), tag_array, scale)
    reader = IMAGE_READERS.get(suffix)
    if reader is None:
        known = ", ".join(sorted(IMAGE_READERS) + list(MESH_SUFFIXES))
        raise ConfigError(f"{path}: unknown anatomy file type '{path.suffix}'; use one of {known}")
    image = reader(path)
    _validate_labels(image.labels, path)
    code, origin = _resample(image, dx)
    return _outside_border(code, origin, dx)


def save_labelled_image(path: PathLike, code: np.ndarray, spacing: Union[float, np.ndarray],
                        origin: np.ndarray) -> None:
    """Write region codes as the HDF5 labelled image ``load_labelled_anatomy`` reads."""
    with h5py.File(path, "w") as f:
        labels = f.create_dataset("labels", data=np.asarray(code, dtype=np.int8), compression="gzip")
        labels.attrs["spacing_mm"] = np.broadcast_to(np.asarray(spacing, dtype=float), (3,))
        labels.attrs["origin_mm"] = np.asarray(origin, dtype=float)


# Labelled images


def _read_hdf5(path: Path) -> LabelledImage:
    try:
        with h5py.File(path, "r") as f:
            if "labels" not in f or not isinstance(f["labels"], h5py.Dataset):
                raise ConfigError(f"{path}: no 'labels' dataset; a labelled image needs one")
            meta = {**f.attrs, **f["labels"].attrs}
            labels = f["labels"][...]
    except OSError as exc:
        raise ConfigError(f"{path}: not a readable HDF5 file ({exc})") from exc
    return _image(labels, meta, path)


def _read_npz(path: Path) -> LabelledImage:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable .npz file ({exc})") from exc
    if "labels" not in arrays:
        raise ConfigError(f"{path}: no 'labels' array; a labelled image needs one")
    return _image(arrays.pop("labels"), arrays, path)


def _read_npy(path: Path) -> LabelledImage:
    sidecar = path.with_name(path.name + ".json")
    if not sidecar.is_file():
        raise ConfigError(f"{path}: a .npy image needs a sidecar {sidecar.name} with spacing_mm and origin_mm")
    try:
        meta = json.loads(sidecar.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{sidecar}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ConfigError(f"{sidecar}: must hold a JSON object with spacing_mm and origin_mm")
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable .npy file ({exc})") from exc
    return _image(labels, meta, path)


IMAGE_READERS: dict[str, Callable[[Path], LabelledImage]] = {
    ".h5": _read_hdf5, ".hdf5": _read_hdf5, ".npz": _read_npz, ".npy": _read_npy,
}


def _image(labels: np.ndarray, meta: Mapping, path: Path) -> LabelledImage:
    """Checks the geometry metadata every image format shares."""
    if labels.ndim != 3:
        raise ConfigError(f"{path}: labels must be a 3-D array, got shape {labels.shape}")
    for key in ("spacing_mm", "origin_mm"):
        if key not in meta:
            raise ConfigError(f"{path}: missing '{key}'")
    spacing = np.asarray(meta["spacing_mm"], dtype=float).ravel()
    origin = np.asarray(meta["origin_mm"], dtype=float).ravel()
    if spacing.size not in (1, 3) or not np.all(np.isfinite(spacing) & (spacing > 0)):
        raise ConfigError(f"{path}: spacing_mm must be one or three positive numbers, got {spacing.tolist()}")
    if origin.size != 3 or not np.all(np.isfinite(origin)):
        raise ConfigError(f"{path}: origin_mm must be three numbers, got {origin.tolist()}")
    return LabelledImage(labels, np.broadcast_to(spacing, (3,)).copy(), origin)


def _validate_labels(labels: np.ndarray, path: Path) -> None:
    """A heart needs tissue and both cavities; other codes mean a different labelling."""
    values = np.unique(labels)
    unknown = values[~np.isin(values, KNOWN_CODES)]
    if unknown.size:
        raise ConfigError(
            f"{path}: unknown label value(s) {unknown[:10].tolist()}; labels must be {OUTSIDE} outside, "
            f"{TISSUE} tissue, {LV_CAVITY} LV cavity, {RV_CAVITY} RV cavity")
    for value, name in ((TISSUE, "tissue"), (LV_CAVITY, "LV cavity"), (RV_CAVITY, "RV cavity")):
        if value not in values:
            raise ConfigError(f"{path}: no {name} voxels (label {value}); the heart needs tissue and both cavities")


def _resample(image: LabelledImage, dx: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour resampling onto a ``dx`` grid over the image's extent.

    Each new voxel takes the label of the image voxel containing its centre,
    so an image already at spacing ``dx`` comes back unchanged."""
    labels = image.labels.astype(np.int8)
    lower_edge = image.origin - image.spacing / 2
    index = []
    for n, spacing in zip(labels.shape, image.spacing):
        count = max(1, int(round(n * spacing / dx)))
        centres = (np.arange(count) + 0.5) * dx
        index.append(np.clip(np.floor(centres / spacing).astype(np.int64), 0, n - 1))
    return labels[np.ix_(*index)], lower_edge + dx / 2


def _outside_border(code: np.ndarray, origin: np.ndarray, dx: float) -> tuple[np.ndarray, np.ndarray]:
    """Pad with one OUTSIDE layer when labels touch the border, so every surface has an outside."""
    faces = (code[0], code[-1], code[:, 0], code[:, -1], code[:, :, 0], code[:, :, -1])
    if all((face == OUTSIDE).all() for face in faces):
        return code, origin
    return np.pad(code, 1, constant_values=OUTSIDE), origin - dx


# Tetrahedral meshes


def _surface_tags(tags: Union[SurfaceTags, Mapping[str, int], None], path: Path) -> SurfaceTags:
    if tags is None:
        return SurfaceTags()
    if isinstance(tags, SurfaceTags):
        return tags
    names = {f.name for f in fields(SurfaceTags)}
    unknown = set(tags) - names
    if unknown:
        raise ConfigError(f"{path}: unknown surface tag name(s) {sorted(unknown)}; use {sorted(names)}")
    return SurfaceTags(**{name: int(value) for name, value in tags.items()})


def _mesh_codes(path: Path, dx: float, tags: SurfaceTags, tag_array: Optional[str],
                scale: float) -> tuple[np.ndarray, np.ndarray]:
    if not scale > 0:
        raise ConfigError(f"{path}: scale must be positive, got {scale}")
    mesh = _read_mesh(path)
    if mesh.points.ndim != 2 or mesh.points.shape[1] != 3:
        raise ConfigError(f"{path}: mesh points must be 3-D, got shape {mesh.points.shape}")
    points = np.asarray(mesh.points, dtype=float) * scale
    tets = _cells(mesh, ("tetra", "tetra10"), 4)
    if len(tets) == 0:
        present = sorted({block.type for block in mesh.cells})
        raise ConfigError(f"{path}: no tetrahedra (cell types: {present}); the myocardium must be a tetrahedral mesh")
    lv_endo, rv_endo = _endocardial_vertices(points, *_tagged_triangles(mesh, path, tag_array), tags, path)
    try:
        tissue, origin = voxelise_tetrahedra(points, tets, dx)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not tissue.any():
        raise ConfigError(f"{path}: no voxel centre lies in a tetrahedron at dx {dx} mm; "
                          f"refine dx or check the mesh units (scale)")
    code = np.where(tissue, TISSUE, OUTSIDE).astype(np.int8)
    code[_inside_hull(lv_endo, code == OUTSIDE, origin, dx, path, "LV endocardium")] = LV_CAVITY
    code[_inside_hull(rv_endo, code == OUTSIDE, origin, dx, path, "RV endocardium")] = RV_CAVITY
    return code, origin


def _endocardial_vertices(points: np.ndarray, triangles: np.ndarray, triangle_tags: np.ndarray,
                          tags: SurfaceTags, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """LV and RV endocardial vertex positions.  All three surfaces must be
    tagged: a missing one means the file follows another tag convention."""
    for name in ("lv_endo", "rv_endo", "epi"):
        value = getattr(tags, name)
        if not (triangle_tags == value).any():
            raise ConfigError(
                f"{path}: no triangles tagged {value} ({name}); tags present: {np.unique(triangle_tags).tolist()}; "
                f"pass surface_tags to map lv_endo, rv_endo and epi to them")
    return tuple(points[np.unique(triangles[triangle_tags == value])] for value in (tags.lv_endo, tags.rv_endo))


def _read_mesh(path: Path) -> meshio.Mesh:
    """meshio is needed for meshes only, so a missing install fails here, with advice."""
    try:
        import meshio
    except ImportError as exc:
        raise ConfigError(f"{path}: reading tetrahedral meshes needs meshio (pip install meshio)") from exc
    try:
        return meshio.read(path)
    except (meshio.ReadError, OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: cannot read the mesh ({exc})") from exc


def _cells(mesh: meshio.Mesh, types: tuple[str, ...], corners: int) -> np.ndarray:
    """Corner vertices of all cells of the given types (higher-order nodes dropped)."""
    blocks = [block.data[:, :corners] for block in mesh.cells if block.type in types]
    return np.concatenate(blocks).astype(np.int64) if blocks else np.empty((0, corners), np.int64)


def _tag_array_name(mesh: meshio.Mesh, path: Path, tag_array: Optional[str]) -> str:
    if tag_array is not None:
        if tag_array not in mesh.cell_data:
            raise ConfigError(f"{path}: no cell-data array '{tag_array}'; arrays: {sorted(mesh.cell_data)}")
        return tag_array
    by_lower = {name.lower(): name for name in mesh.cell_data}
    for candidate in TAG_ARRAY_NAMES:
        if candidate in by_lower:
            return by_lower[candidate]
    raise ConfigError(
        f"{path}: no surface-tag cell data (looked for {', '.join(TAG_ARRAY_NAMES)}; arrays: "
        f"{sorted(mesh.cell_data)}); tag the triangles of the LV/RV endocardium and epicardium and "
        f"name the array with tag_array")


def _tagged_triangles(mesh: meshio.Mesh, path: Path, tag_array: Optional[str]) -> tuple[np.ndarray, np.ndarray]:
    """Triangle corners and their surface tags."""
    has_triangles = any(block.type in ("triangle", "triangle6") for block in mesh.cells)
    if not has_triangles:
        raise ConfigError(f"{path}: no triangle cells; surfaces are given by tagged triangles "
                          f"(LV endocardium, RV endocardium, epicardium)")
    name = _tag_array_name(mesh, path, tag_array)
    triangles, tags = [], []
    for block, values in zip(mesh.cells, mesh.cell_data[name]):
        if block.type in ("triangle", "triangle6"):
            triangles.append(block.data[:, :3])
            tags.append(np.asarray(values).reshape(len(block.data), -1)[:, 0])
    return np.concatenate(triangles).astype(np.int64), np.concatenate(tags)


def _inside_hull(vertices: np.ndarray, candidates: np.ndarray, origin: np.ndarray, dx: float,
                 path: Path, name: str) -> np.ndarray:
    """Candidate voxels whose centres lie in the convex hull of ``vertices``."""
    try:
        hull = Delaunay(vertices[ConvexHull(vertices).vertices])
    except QhullError as exc:
        raise ConfigError(f"{path}: the {name} does not enclose a volume (flat or too few vertices)") from exc
    lo = np.maximum(np.floor((vertices.min(axis=0) - origin) / dx).astype(int), 0)
    hi = np.ceil((vertices.max(axis=0) - origin) / dx).astype(int) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    ijk = np.argwhere(candidates[box]) + lo
    inside = np.zeros_like(candidates)
    hits = ijk[hull.find_simplex(origin + dx * ijk) >= 0]
    inside[tuple(hits.T)] = True
    return inside


def voxelise_tetrahedra(points: np.ndarray, tets: np.ndarray, dx: float,
                        origin: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Voxels whose centres lie in any tetrahedron, and the grid origin (mm).

    The grid covers the mesh with ``MESH_PADDING`` empty layers on every side.
    Its voxel centres lie on the lattice ``origin + dx * k``; by default the
    voxel faces meet the mesh's lower bounding-box corner.  Each tetrahedron is
    tested only against the voxel centres in its bounding box, so the work
    grows with the number of tetrahedra plus the number of voxels they cover.
    """
    points = np.asarray(points, dtype=float)
    tets = np.asarray(tets, dtype=np.int64)
    if tets.ndim != 2 or tets.shape[1] != 4 or len(tets) == 0:
        raise ConfigError(f"tetrahedra must be a non-empty (n, 4) array of vertex indices, got shape {tets.shape}")
    if tets.min() < 0 or tets.max() >= len(points):
        raise ConfigError(f"tetrahedron vertex indices must lie in [0, {len(points)}), "
                          f"got [{tets.min()}, {tets.max()}]")
    referenced = np.zeros(len(points), dtype=bool)
    referenced[tets.ravel()] = True
    used = points[referenced]
    lo, hi = used.min(axis=0), used.max(axis=0)
    anchor = lo + dx / 2 if origin is None else np.asarray(origin, dtype=float)
    first = np.ceil((lo - anchor) / dx).astype(np.int64) - MESH_PADDING
    last = np.floor((hi - anchor) / dx).astype(np.int64) + MESH_PADDING
    grid_origin = anchor + dx * first
    shape = tuple(int(n) for n in last - first + 1)
    if np.prod(shape, dtype=float) > MAX_GRID_VOXELS:
        raise ConfigError(f"a {shape} voxel grid at dx {dx} mm is too large; "
                          f"check the mesh units (scale) or coarsen dx")
    mask = np.zeros(shape, dtype=bool)
    v0, inverse, box_lo, box_size = _tet_boxes(points[tets], grid_origin, dx, shape)
    for batch in _batches(box_size.prod(axis=1)):
        ijk = _centres_in_tets(batch, v0, inverse, box_lo, box_size, grid_origin, dx)
        mask[tuple(ijk.T)] = True
    return mask, grid_origin


def _batches(counts: np.ndarray) -> Iterator[np.ndarray]:
    """Consecutive tetrahedron ranges with about ``CANDIDATE_BATCH`` candidate
    voxels each (at least one tetrahedron), so memory stays bounded."""
    ends = np.cumsum(counts)
    start = 0
    while start < len(counts):
        before = ends[start] - counts[start]
        stop = max(start + 1, int(np.searchsorted(ends, before + CANDIDATE_BATCH, side="right")))
        yield np.arange(start, stop)
        start = stop


def _tet_boxes(corners: np.ndarray, origin: np.ndarray, dx: float,
               shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per non-degenerate tetrahedron: first corner, inverse edge matrix (rows
    are the face normals over the determinant, cheaper than a batched inverse),
    and the index range of the voxel centres in its bounding box."""
    edges = corners[:, 1:] - corners[:, :1]
    adjugate = np.stack([np.cross(edges[:, 1], edges[:, 2]), np.cross(edges[:, 2], edges[:, 0]),
                         np.cross(edges[:, 0], edges[:, 1])], axis=1)
    det = np.einsum("ij,ij->i", edges[:, 0], adjugate[:, 0])
    solid = np.abs(det) > 1e-12 * dx ** 3
    corners = corners[solid]
    inverse = adjugate[solid] / det[solid, None, None]
    box_lo = np.ceil((corners.min(axis=1) - origin) / dx - BARYCENTRIC_TOL).astype(np.int64)
    box_hi = np.floor((corners.max(axis=1) - origin) / dx + BARYCENTRIC_TOL).astype(np.int64)
    box_lo = np.maximum(box_lo, 0)
    box_hi = np.minimum(box_hi, np.asarray(shape) - 1)
    box_size = np.maximum(box_hi - box_lo + 1, 0)
    return corners[:, 0], inverse, box_lo, box_size


def _centres_in_tets(batch: np.ndarray, v0: np.ndarray, inverse: np.ndarray, box_lo: np.ndarray,
                     box_size: np.ndarray, origin: np.ndarray, dx: float) -> np.ndarray:
    """Indices of voxel centres inside the tetrahedra of ``batch`` (barycentric test)."""
    counts = box_size[batch].prod(axis=1)
    tet = np.repeat(batch, counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    size = box_size[tet]
    i, rest = np.divmod(local, size[:, 1] * size[:, 2])
    j, k = np.divmod(rest, size[:, 2])
    ijk = box_lo[tet] + np.stack([i, j, k], axis=1)
    bary = np.einsum("nij,nj->ni", inverse[tet], origin + dx * ijk - v0[tet])
    b1, b2, b3 = bary.T
    inside = ((b1 >= -BARYCENTRIC_TOL) & (b2 >= -BARYCENTRIC_TOL) & (b3 >= -BARYCENTRIC_TOL)
              & (b1 + b2 + b3 <= 1 + BARYCENTRIC_TOL))
    return ijk[inside]

"""Real hearts as labelled voxel images: ``ecgi anatomy import``.

A user's mesh becomes the region codes of ``solver.patient.biventricle``
(OUTSIDE, TISSUE, LV_CAVITY, RV_CAVITY) on a ``dx`` grid, written by
``save_labelled_image`` so that it works as a patient's ``heart.anatomy_file``.

Accepted inputs (read with pyvista/vtk; gmsh with meshio):

* a volume mesh of tetrahedra (VTK legacy, VTU, gmsh ``.msh``): the
  tetrahedra are the myocardium;
* one closed surface of the myocardium (VTP, VTK, PLY, STL, OBJ), with or
  without a per-point or per-cell label array (``class``/``labels``/...:
  1 base, 2 epicardium, 3 LV endocardium, 4 RV endocardium, as Cobiveco);
* a set of surface patches, one file each, recognised by name (``epi``,
  ``lv``, ``rv``, ``base``) or given explicitly; they may be open at the
  valves and are capped there.

Where labels are given, the LV and RV cavities are the insides of the capped
LV and RV endocardia.  Where none are given they are found: enclosed voids of
the myocardium when its surface closes them, otherwise the non-tissue regions
that a valve plane cuts off (of planes facing every way and the surface's flat
parts, the one closing two cavities that hold the most), each then filled up
to its own rim.  The more convex cavity is the LV (the RV is a crescent).

Surface voxels (tissue voxels with a non-tissue face neighbour) are labelled
base, epicardium, LV endocardium, RV endocardium and septum (RV endocardium
within ``SEPTUM_REACH_MM`` of the LV cavity) for the report and the checks.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError, cKDTree

from ..common.errors import ConfigError
from .biventricle import LV_CAVITY, OUTSIDE, RV_CAVITY, TISSUE
from .user_anatomy import voxelise_tetrahedra

PathLike = str | os.PathLike

# Surface labels (Cobiveco's numbering, plus the septum).
BASE, EPI, LV_ENDO, RV_ENDO, SEPTUM = 1, 2, 3, 4, 5
SURFACE_NAMES = {BASE: "base", EPI: "epicardium", LV_ENDO: "LV endocardium", RV_ENDO: "RV endocardium",
                 SEPTUM: "septum"}
#: Point- or cell-data names searched (case-insensitively) for surface labels.
LABEL_ARRAY_NAMES = ("class", "labels", "label", "tags", "tag", "surface", "surface_id", "region")
#: Words in a patch file name that say which surface it is, in search order.
PATCH_WORDS = ((LV_ENDO, ("endo_lv", "lv_endo", "lvendo", "endolv", "lv")),
               (RV_ENDO, ("endo_rv", "rv_endo", "rvendo", "endorv", "rv")),
               (EPI, ("epicardium", "epi")), (BASE, ("base", "valve")))
SURFACE_SUFFIXES = (".vtp", ".ply", ".stl", ".obj", ".vtk")
VOLUME_SUFFIXES = (".vtu", ".vtk", ".msh")
#: A heart is 50-250 mm across: extents outside this range mean other units.
HEART_EXTENT_MM = (30.0, 400.0)
#: Myocardial tissue (1.05 g/mL) for the masses of the report.
MYOCARDIUM_G_PER_ML = 1.05
#: RV endocardium this close to the LV cavity faces it across the septum.
SEPTUM_REACH_MM = 15.0
#: A void smaller than this is a voxelisation artefact, not a cavity.
MIN_CAVITY_ML = 1.0
#: Flat base: face normals within this angle and planes within this distance.
BASE_ANGLE_DEG = 25.0
BASE_TOLERANCE_MM = 3.0
#: A flat region smaller than this share of the surface area is no base.
MIN_BASE_AREA_FRACTION = 0.005
#: A hole whose rim is further (RMS) from a plane than this share of its radius is
#: not a valve opening; capping it would invent wall (valve rims: at most 0.05;
#: a sphere missing a quarter wedge: 0.25).
MAX_RIM_FLATNESS = 0.2
#: The base: outward-facing wall within this of the top of the cavities (mm).
BASE_BAND_MM = 3.0
#: Voxel layers of OUTSIDE around the heart.
PADDING = 2


@dataclass
class Surface:
    """Triangles of one surface (or a patch of it), with optional per-triangle labels."""

    points: np.ndarray  #: (n, 3) mm
    triangles: np.ndarray  #: (m, 3) vertex indices
    labels: np.ndarray | None = None  #: (m,) surface labels, or None
    name: str = ""


@dataclass
class Volume:
    """Tetrahedra of the myocardium."""

    points: np.ndarray
    tets: np.ndarray
    name: str = ""


@dataclass(frozen=True)
class ImportOptions:
    """What ``ecgi anatomy import`` was asked for."""

    dx: float = 1.0
    labels: str = "auto"  #: "auto", "none" (ignore any), or the name of a label array
    scale: float = 1.0  #: multiplies coordinates into mm
    patches: tuple[tuple[int, str], ...] = ()  #: (surface label, file) given explicitly


@dataclass
class Anatomy:
    """An imported heart: region codes and surface labels on one grid."""

    code: np.ndarray  #: int8 region codes
    surface: np.ndarray  #: int8 surface labels (0 where not a surface voxel)
    origin: np.ndarray  #: centre of voxel (0, 0, 0), mm
    dx: float
    labelled_from: str  #: "given labels", "patches" or "automatic"
    notes: list[str] = field(default_factory=list)

    def volumes_ml(self) -> dict[str, float]:
        voxel_ml = self.dx ** 3 / 1000
        return {name: float((self.code == value).sum() * voxel_ml)
                for name, value in (("myocardium", TISSUE), ("LV cavity", LV_CAVITY), ("RV cavity", RV_CAVITY))}

    def wall_volumes_ml(self) -> dict[str, float]:
        """LV wall (septum included, as imaging counts LV mass) and RV free wall.

        A tissue voxel is RV free wall when it is nearer the RV cavity than the
        LV cavity and nearer the outside than the LV cavity: the septum lies
        between the cavities, far from the outside."""
        tissue = self.code == TISSUE
        to_lv, to_rv, to_out = (ndimage.distance_transform_edt(self.code != value)
                                for value in (LV_CAVITY, RV_CAVITY, OUTSIDE))
        rv_wall = tissue & (to_rv < to_lv) & (to_out < to_lv)
        voxel_ml = self.dx ** 3 / 1000
        return {"LV wall": float((tissue & ~rv_wall).sum() * voxel_ml), "RV wall": float(rv_wall.sum() * voxel_ml)}


def import_anatomy(paths: Sequence[PathLike], options: ImportOptions) -> Anatomy:
    """Region codes and surface labels of the heart in ``paths`` (one mesh, or patches)."""
    if not options.dx > 0:
        raise ConfigError(f"--dx must be positive, got {options.dx}")
    if not options.scale > 0:
        raise ConfigError(f"--scale must be positive, got {options.scale}")
    paths = [Path(p) for p in paths] + [Path(p) for _, p in options.patches]
    if not paths:
        raise ConfigError("no mesh given; pass a mesh file or the surface patches")
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"{path}: file not found")
    if len(paths) > 1:
        return _from_patches(_patch_roles(paths, options), options)
    mesh = read_mesh(paths[0], options)
    if isinstance(mesh, Volume):
        return _from_volume(mesh, options)
    return _from_surface(mesh, options)


# Reading


def read_mesh(path: Path, options: ImportOptions) -> Surface | Volume:
    """The tetrahedra of a volume mesh, or the triangles of a surface, in mm."""
    suffix = path.suffix.lower()
    if suffix not in SURFACE_SUFFIXES + VOLUME_SUFFIXES:
        known = ", ".join(sorted(set(SURFACE_SUFFIXES + VOLUME_SUFFIXES)))
        raise ConfigError(f"{path}: unknown mesh type '{path.suffix}'; use one of {known}")
    if path.stat().st_size == 0:
        raise ConfigError(f"{path}: the file is empty")
    dataset = _read_meshio(path) if suffix == ".msh" else _read_vtk(path)
    return _mesh_from_dataset(dataset, path, options)


def _read_vtk(path: Path):
    """pyvista reads VTP, legacy VTK (POLYDATA and UNSTRUCTURED_GRID), VTU, PLY, STL and OBJ."""
    try:
        import pyvista
        import vtk
    except ImportError as exc:
        raise ConfigError(f"{path}: reading meshes needs pyvista (pip install pyvista)") from exc
    # vtk reports unreadable files on its own output window; the error below says it once.
    vtk.vtkObject.GlobalWarningDisplayOff()
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)
    try:
        dataset = pyvista.read(path)
    except Exception as exc:  # noqa: BLE001 -- vtk readers raise anything from ValueError to their own errors
        raise ConfigError(f"{path}: cannot read the mesh ({type(exc).__name__}: {str(exc)[:120]})") from None
    if dataset is None or dataset.n_points == 0 or dataset.n_cells == 0:
        raise ConfigError(f"{path}: no points or cells could be read (empty, or not a {path.suffix} mesh)")
    return dataset


def _read_meshio(path: Path):
    import meshio
    import pyvista

    try:
        mesh = meshio.read(path)
    except Exception as exc:  # noqa: BLE001 -- meshio's readers raise ReadError, ValueError, KeyError, ...
        raise ConfigError(f"{path}: cannot read the gmsh mesh ({type(exc).__name__}: {str(exc)[:120]})") from None
    if len(mesh.points) == 0:
        raise ConfigError(f"{path}: the mesh has no points")
    return pyvista.from_meshio(mesh)


def _mesh_from_dataset(dataset, path: Path, options: ImportOptions) -> Surface | Volume:
    import pyvista

    points = np.asarray(dataset.points, dtype=float) * options.scale
    _check_units(points, path)
    if isinstance(dataset, pyvista.UnstructuredGrid):
        tets = dataset.cells_dict.get(pyvista.CellType.TETRA)
        if tets is None:
            tets = dataset.cells_dict.get(pyvista.CellType.QUADRATIC_TETRA)
        if tets is not None and len(tets):
            return Volume(points, np.asarray(tets[:, :4], dtype=np.int64), path.name)
        dataset = dataset.extract_surface(algorithm="dataset_surface")
        points = np.asarray(dataset.points, dtype=float) * options.scale
    if not isinstance(dataset, pyvista.PolyData):
        raise ConfigError(f"{path}: a {type(dataset).__name__} is neither tetrahedra nor a surface")
    surface = dataset.triangulate()
    if surface.n_cells == 0:
        raise ConfigError(f"{path}: no triangles or tetrahedra (lines or points only)")
    triangles = np.asarray(surface.faces, dtype=np.int64).reshape(-1, 4)[:, 1:]
    labels = None if options.labels == "none" else _triangle_labels(surface, path, options.labels)
    return Surface(np.asarray(surface.points, dtype=float) * options.scale, triangles, labels, path.name)


def _check_units(points: np.ndarray, path: Path) -> None:
    if not np.all(np.isfinite(points)):
        raise ConfigError(f"{path}: the mesh has non-finite coordinates")
    extent = float((points.max(axis=0) - points.min(axis=0)).max())
    low, high = HEART_EXTENT_MM
    if extent < low / 1000 * 10:
        raise ConfigError(f"{path}: the heart is {extent:.3g} units across: the units look like metres, "
                          f"not millimetres; pass --scale 1000")
    if extent < low:
        raise ConfigError(f"{path}: the heart is {extent:.3g} units across: the units look like centimetres, "
                          f"not millimetres; pass --scale 10")
    if extent > high:
        raise ConfigError(f"{path}: the heart is {extent:.3g} units across: too large for millimetres "
                          f"(micrometres?); pass --scale to convert to mm")


def _triangle_labels(surface, path: Path, wanted: str) -> np.ndarray | None:
    """Per-triangle labels from a cell array, or from a point array (the value
    most of a triangle's corners carry)."""
    arrays = {**{n: ("point", n) for n in surface.point_data}, **{n: ("cell", n) for n in surface.cell_data}}
    if wanted != "auto":
        if wanted not in arrays:
            raise ConfigError(f"{path}: no label array '{wanted}'; arrays: {sorted(arrays) or 'none'}")
        name = wanted
    else:
        by_lower = {n.lower(): n for n in arrays}
        found = next((by_lower[c] for c in LABEL_ARRAY_NAMES if c in by_lower), None)
        if found is None:
            return None
        name = found
    kind, _ = arrays[name]
    values = np.asarray(surface.cell_data[name] if kind == "cell" else surface.point_data[name])
    if values.ndim != 1:
        raise ConfigError(f"{path}: label array '{name}' must have one value per {kind}")
    if kind == "point":
        corners = values[np.asarray(surface.faces).reshape(-1, 4)[:, 1:]]
        values = np.where(corners[:, 1] == corners[:, 2], corners[:, 1], corners[:, 0])
    values = np.rint(values).astype(np.int64)
    missing = [SURFACE_NAMES[v] for v in (EPI, LV_ENDO, RV_ENDO) if not (values == v).any()]
    if missing:
        raise ConfigError(f"{path}: label array '{name}' has no {', '.join(missing)} (values "
                          f"{np.unique(values)[:10].tolist()}; expected 1 base, 2 epicardium, 3 LV endocardium, "
                          f"4 RV endocardium); pass --labels none to label automatically")
    return values


def _patch_roles(paths: Sequence[Path], options: ImportOptions) -> dict[int, Surface]:
    """Each patch file's surface: given by option, else recognised by its name."""
    explicit = {Path(p): role for role, p in options.patches}
    roles: dict[int, Surface] = {}
    for path in paths:
        role = explicit.get(path) or _role_from_name(path)
        if role in roles:
            raise ConfigError(f"{path}: a second {SURFACE_NAMES[role]} patch (first: {roles[role].name}); "
                              f"give one file per surface")
        mesh = read_mesh(path, ImportOptions(options.dx, "none", options.scale))
        if isinstance(mesh, Volume):
            raise ConfigError(f"{path}: a volume mesh among surface patches; give it alone")
        roles[role] = mesh
    missing = [SURFACE_NAMES[r] for r in (EPI, LV_ENDO, RV_ENDO) if r not in roles]
    if missing:
        raise ConfigError(f"no {', '.join(missing)} patch among {[p.name for p in paths]}; name the files "
                          f"with epi, lv, rv (or pass --epi, --lv, --rv)")
    return roles


def _role_from_name(path: Path) -> int:
    words = re.split(r"[^a-z]+", path.stem.lower())
    stem = "_".join(words)
    for role, names in PATCH_WORDS:
        if any(name in words or (len(name) > 3 and name in stem) for name in names):
            return role
    raise ConfigError(f"{path}: cannot tell which surface this patch is from its name; name it with epi, "
                      f"lv, rv or base, or pass it as --epi, --lv, --rv or --base")


# Topology


def _edges(triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges and how many triangles share each."""
    edges = np.sort(triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    return np.unique(edges, axis=0, return_counts=True)


def _merge_points(surface: Surface, tolerance: float = 1e-6) -> Surface:
    """Coincident points as one, so that patches meet and shared edges are seen as shared."""
    key = np.round(surface.points / max(tolerance, 1e-12)).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    triangles = inverse.ravel()[surface.triangles]
    keep = (triangles[:, 0] != triangles[:, 1]) & (triangles[:, 1] != triangles[:, 2]) & (triangles[:, 0] != triangles[:, 2])
    labels = None if surface.labels is None else surface.labels[keep]
    return Surface(surface.points[first], triangles[keep], labels, surface.name)


def _check_manifold(surface: Surface) -> None:
    _, counts = _edges(surface.triangles)
    if (counts > 2).any():
        raise ConfigError(f"{surface.name}: the surface is non-manifold ({int((counts > 2).sum())} edges shared "
                          f"by more than two triangles); repair it (e.g. with meshfix) and import again")


def _boundary_loops(triangles: np.ndarray, name: str) -> list[np.ndarray]:
    """Vertex loops of the open edges (each used by one triangle)."""
    edges, counts = _edges(triangles)
    open_edges = edges[counts == 1]
    if len(open_edges) == 0:
        return []
    degree = np.bincount(open_edges.ravel())
    if (degree[degree > 0] != 2).any():
        raise ConfigError(f"{name}: the open rim touches itself (a vertex on more than two open edges), so it "
                          f"cannot be capped; supply a closed surface or clean the rim")
    neighbours: dict[int, list[int]] = {}
    for a, b in open_edges.tolist():
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    loops, seen = [], set()
    for start in neighbours:
        if start in seen:
            continue
        loop, previous, current = [start], -1, start
        seen.add(start)
        while True:
            a, b = neighbours[current]
            following = b if a == previous else a
            if following == start:
                break
            loop.append(following)
            seen.add(following)
            previous, current = current, following
        loops.append(np.asarray(loop))
    return loops


def cap_holes(surface: Surface) -> Surface:
    """The surface closed by a fan of triangles across each open rim (a valve opening).

    A rim far from planar is not a valve opening but missing wall: refused."""
    _check_manifold(surface)
    points, triangles = [surface.points], [surface.triangles]
    count = len(surface.points)
    for loop in _boundary_loops(surface.triangles, surface.name):
        rim = surface.points[loop]
        centre = rim.mean(axis=0)
        singular = np.linalg.svd(rim - centre, compute_uv=False)
        radius = float(np.sqrt((singular[:2] ** 2).sum() / len(rim)))
        if len(loop) < 3 or singular[2] / np.sqrt(len(rim)) > MAX_RIM_FLATNESS * max(radius, 1e-9):
            raise ConfigError(f"{surface.name}: an open rim of {len(loop)} vertices is far from flat, so it is "
                              f"missing wall rather than a valve opening and cannot be capped; supply a "
                              f"closed surface or the missing patch")
        points.append(centre[None])
        triangles.append(np.stack([np.full(len(loop), count), loop, np.roll(loop, -1)], axis=1))
        count += 1
    labels = None
    if surface.labels is not None:
        labels = np.concatenate([surface.labels, np.full(sum(len(t) for t in triangles[1:]), BASE)])
    return Surface(np.concatenate(points), np.concatenate(triangles), labels, surface.name)


# Voxelising


@dataclass(frozen=True)
class Grid:
    origin: np.ndarray  #: centre of voxel (0, 0, 0), mm
    shape: tuple[int, int, int]
    dx: float

    def centres(self, ijk: np.ndarray) -> np.ndarray:
        return self.origin + self.dx * ijk


def grid_around(points: np.ndarray, dx: float) -> Grid:
    lo, hi = points.min(axis=0), points.max(axis=0)
    origin = lo + dx / 2 - PADDING * dx
    nx, ny, nz = (int(n) for n in np.floor((hi - origin) / dx).astype(int) + PADDING + 1)
    shape = (nx, ny, nz)
    if np.prod(shape, dtype=float) > 4e8:
        raise ConfigError(f"a {shape} voxel grid at dx {dx} mm is too large; coarsen --dx or check the units")
    return Grid(origin, shape, dx)


def inside_surface(surface: Surface, grid: Grid) -> np.ndarray:
    """Voxels whose centres lie inside a closed surface: rays along +z count crossings."""
    # Rays slightly off the lattice so that none passes exactly through an edge or a vertex.
    shift = grid.dx * np.array([1.234e-4, 2.718e-4])
    corners = surface.points[surface.triangles]
    xy = (corners[:, :, :2] - grid.origin[:2] - shift) / grid.dx
    lo = np.maximum(np.ceil(xy.min(axis=1)), 0).astype(np.int64)
    hi = np.minimum(np.floor(xy.max(axis=1)), np.array(grid.shape[:2]) - 1).astype(np.int64)
    size = np.maximum(hi - lo + 1, 0)
    count = size.prod(axis=1)
    nz = grid.shape[2]
    crossings = np.zeros(grid.shape[0] * grid.shape[1] * (nz + 1), dtype=np.int32)
    for batch in np.array_split(np.arange(len(corners)), max(1, int(count.sum() // (1 << 18)))):
        n = count[batch]
        tri = np.repeat(batch, n)
        local = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        i, j = np.divmod(local, size[tri, 1])
        i, j = i + lo[tri, 0], j + lo[tri, 1]
        a, b, c = xy[tri, 0], xy[tri, 1], xy[tri, 2]
        p = np.stack([i, j], axis=1).astype(float)
        det = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
        with np.errstate(divide="ignore", invalid="ignore"):  # det 0: the triangle is edge-on to the rays
            u = ((p[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (p[:, 1] - a[:, 1])) / det
            v = ((b[:, 0] - a[:, 0]) * (p[:, 1] - a[:, 1]) - (p[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])) / det
            hit = (det != 0) & (u >= 0) & (v >= 0) & (u + v <= 1)
        tri, u, v, i, j = tri[hit], u[hit], v[hit], i[hit], j[hit]
        z = corners[tri, 0, 2] + u * (corners[tri, 1, 2] - corners[tri, 0, 2]) + v * (corners[tri, 2, 2] - corners[tri, 0, 2])
        k = np.clip(np.ceil((z - grid.origin[2]) / grid.dx), 0, nz).astype(np.int64)
        flat = (i * grid.shape[1] + j) * (nz + 1) + k
        crossings += np.bincount(flat, minlength=crossings.size).astype(np.int32)
    parity = np.cumsum(crossings.reshape(grid.shape[0], grid.shape[1], nz + 1), axis=2)[..., :nz] % 2
    return parity.astype(bool)


def surface_voxels(code: np.ndarray) -> np.ndarray:
    """Tissue voxels with a non-tissue face neighbour."""
    tissue = code == TISSUE
    return tissue & ~ndimage.binary_erosion(tissue, border_value=0)


# Labelling


def _from_patches(roles: dict[int, Surface], options: ImportOptions) -> Anatomy:
    merged = {role: _merge_points(s) for role, s in roles.items()}
    everything = Surface(np.concatenate([s.points for s in merged.values()]),
                         np.concatenate([s.triangles + sum(len(t.points) for t in list(merged.values())[:n])
                                         for n, s in enumerate(merged.values())]),
                         np.concatenate([np.full(len(s.triangles), role) for role, s in merged.items()]),
                         "patches")
    grid = grid_around(everything.points, options.dx)
    # The whole heart: the capped epicardium, or the closed union when a base patch closes it.
    whole = _merge_points(everything, tolerance=1e-3)
    if len(_open_edges(whole)) == 0 and BASE in merged:
        _check_manifold(whole)
        tissue = inside_surface(whole, grid)
        tissue &= ~inside_surface(cap_holes(merged[LV_ENDO]), grid)
        tissue &= ~inside_surface(cap_holes(merged[RV_ENDO]), grid)
    else:
        tissue = inside_surface(cap_holes(merged[EPI]), grid)
        tissue &= ~inside_surface(cap_holes(merged[LV_ENDO]), grid)
        tissue &= ~inside_surface(cap_holes(merged[RV_ENDO]), grid)
    lv = inside_surface(cap_holes(merged[LV_ENDO]), grid) & ~tissue
    rv = inside_surface(cap_holes(merged[RV_ENDO]), grid) & ~tissue & ~lv
    code = _codes(tissue, lv, rv)
    return _finish(code, grid, "patches", given=everything)


def _open_edges(surface: Surface) -> np.ndarray:
    """Edges used by one triangle: where the surface is open."""
    edges, counts = _edges(surface.triangles)
    return edges[counts == 1]


def _from_surface(surface: Surface, options: ImportOptions) -> Anatomy:
    surface = _merge_points(surface)
    if surface.labels is not None:
        roles = {role: _sub_surface(surface, surface.labels == role) for role in (BASE, EPI, LV_ENDO, RV_ENDO)
                 if (surface.labels == role).any()}
        watertight = len(_open_edges(surface)) == 0
        if watertight:
            _check_manifold(surface)
            grid = grid_around(surface.points, options.dx)
            tissue = inside_surface(surface, grid)
            lv = inside_surface(cap_holes(roles[LV_ENDO]), grid) & ~tissue
            rv = inside_surface(cap_holes(roles[RV_ENDO]), grid) & ~tissue & ~lv
            return _finish(_codes(tissue, lv, rv), grid, "given labels", given=surface)
        return _from_patches(roles, options)
    closed = cap_holes(surface)
    grid = grid_around(closed.points, options.dx)
    return _automatic(inside_surface(closed, grid), grid, closed)


def _sub_surface(surface: Surface, keep: np.ndarray) -> Surface:
    used, triangles = np.unique(surface.triangles[keep], return_inverse=True)
    return Surface(surface.points[used], triangles.reshape(-1, 3), None, surface.name)


def _from_volume(volume: Volume, options: ImportOptions) -> Anatomy:
    grid = grid_around(volume.points[np.unique(volume.tets)], options.dx)
    tissue, origin = voxelise_tetrahedra(volume.points, volume.tets, options.dx,
                                          origin=grid.origin + PADDING * options.dx)
    nx, ny, nz = tissue.shape
    grid = Grid(origin, (nx, ny, nz), options.dx)
    return _automatic(tissue, grid, _tet_boundary(volume))


def _tet_boundary(volume: Volume) -> Surface:
    faces = np.concatenate([volume.tets[:, [0, 1, 2]], volume.tets[:, [0, 1, 3]],
                            volume.tets[:, [0, 2, 3]], volume.tets[:, [1, 2, 3]]])
    _, first, counts = np.unique(np.sort(faces, axis=1), axis=0, return_index=True, return_counts=True)
    return Surface(volume.points, faces[first[counts == 1]], None, volume.name)


def _codes(tissue: np.ndarray, lv: np.ndarray, rv: np.ndarray) -> np.ndarray:
    code = np.full(tissue.shape, OUTSIDE, dtype=np.int8)
    code[tissue] = TISSUE
    code[lv] = LV_CAVITY
    code[rv] = RV_CAVITY
    return code


def _automatic(tissue: np.ndarray, grid: Grid, boundary: Surface) -> Anatomy:
    """Cavities of an unlabelled myocardium: enclosed voids, else cut off by the base plane."""
    name = boundary.name
    if not tissue.any():
        raise ConfigError(f"{name}: no voxel centre lies in the myocardium at dx {grid.dx} mm; refine --dx")
    voids = _enclosed(~tissue, grid)
    notes = []
    plane = None
    if len(voids) < 2:
        plane = _base_plane(boundary, tissue, grid)
        voids = [_fill_to_own_rim(void, tissue, grid, plane) for void in _cut_cavities(tissue, grid, plane)]
        notes.append(f"base plane through {np.round(plane[0], 1).tolist()} mm, normal "
                     f"{np.round(plane[1], 3).tolist()}")
    if len(voids) > 2:
        raise ConfigError(f"{name}: {len(voids)} cavities found, a biventricular heart has two; remove the "
                          f"atria or vessels, or supply the LV and RV endocardia as labels or patches")
    if len(voids) < 2:
        raise ConfigError(f"{name}: {len(voids)} cavity found where the LV and RV should be; supply the LV and "
                          f"RV endocardia as labels (--labels ARRAY) or as patch files")
    lv, rv = sorted(voids, key=lambda mask: -_convexity(mask, grid))
    if plane is not None:
        lv, rv = _fill_openings(lv, rv, tissue, grid, plane)
    code = _codes(tissue, lv, rv)
    anatomy = _finish(code, grid, "automatic", plane=plane)
    anatomy.notes.extend(notes)
    return anatomy


def _convexity(mask: np.ndarray, grid: Grid) -> float:
    """Volume over convex-hull volume: near 1 for the LV, well below for the crescent RV."""
    points = grid.centres(np.argwhere(mask))
    try:
        return float(mask.sum() * grid.dx ** 3 / ConvexHull(points).volume)
    except QhullError:
        return 0.0


def _base_plane(boundary: Surface, tissue: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """The valve plane, as (point, outward normal): of the candidate planes (the
    flat parts of the myocardial surface, where a truncated mesh was cut, and
    planes across the long axis near either end), the one that closes two
    cavities holding the most volume.  Candidates are screened on a coarse
    grid, whose walls are thickened so that they do not leak."""
    coarse, coarse_grid = _coarsen(tissue, grid)
    scored = []
    # Along one direction the first plane in from the end that closes two cavities holds the most.
    for planes in [[plane] for plane in _flat_regions(boundary, tissue, grid)] + _axis_planes(tissue, grid):
        for plane in planes:
            voids = _cut_cavities(coarse, coarse_grid, plane)
            if len(voids) == 2:
                scored.append((sum(float(v.sum()) for v in voids), plane))
                break
    scored.sort(key=lambda item: -item[0])
    for _, plane in scored[:4]:
        if len(_cut_cavities(tissue, grid, plane)) == 2:
            return _raise_plane(plane, tissue, grid)
    raise ConfigError(f"{boundary.name}: the cavities are open and no valve plane closes them into two; "
                      f"supply the surfaces as labelled arrays (--labels ARRAY) or as epi/lv/rv patch files")


def _raise_plane(plane: tuple[np.ndarray, np.ndarray], tissue: np.ndarray,
                 grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """The plane moved out towards the base, a voxel at a time, while it still
    closes two cavities: the coarse search steps in by whole coarse voxels."""
    point, normal = plane
    for _ in range(int(np.ceil(2 * SEARCH_DX_MM / grid.dx))):
        raised = (point + normal * grid.dx, normal)
        if len(_cut_cavities(tissue, grid, raised)) != 2:
            break
        point = raised[0]
    return point, normal


def _fill_to_own_rim(void: np.ndarray, tissue: np.ndarray, grid: Grid,
                     plane: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The cavity filled up to its own valve opening: the common plane stops at
    the lower of the two rims, so each cavity is raised on its own, a voxel at a
    time, while the raised plane still encloses it apart from the other."""
    point, normal = plane
    for _ in range(int(np.ceil(PLANE_DEPTH_MM / grid.dx))):
        point = point + normal * grid.dx
        below = ~tissue & (_signed_distance((point, normal), grid) < 0)
        labels, _ = ndimage.label(below)
        grown = labels == np.bincount(labels[void]).argmax()
        border = np.concatenate([grown[0].ravel(), grown[-1].ravel(), grown[:, 0].ravel(), grown[:, -1].ravel(),
                                 grown[:, :, 0].ravel(), grown[:, :, -1].ravel()])
        # Leaking out, or joining the other cavity (more than a plane's step of growth), ends it.
        if border.any() or grown.sum() > 1.5 * void.sum():
            break
        void = grown
    return void


#: How far above the valve plane an opening is filled, and how far a ray
#: across it may run before it counts as escaping (mm).
OPENING_HEIGHT_MM = 20.0
OPENING_REACH_MM = 60.0


def _fill_openings(lv: np.ndarray, rv: np.ndarray, tissue: np.ndarray, grid: Grid,
                   plane: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each cavity grown above the plane up to its rim: into the voxels that
    the wall surrounds on every side across the plane (rays in eight directions
    parallel to it all meet tissue), as blood in a valve opening is."""
    sd = _signed_distance(plane, grid)
    band = ~tissue & (sd >= -grid.dx) & (sd <= OPENING_HEIGHT_MM)
    candidates = np.argwhere(band & ~lv & ~rv)
    if len(candidates) == 0:
        return lv, rv
    normal = plane[1]
    least = np.eye(3)[np.argmin(np.abs(normal))]  # the axis least along the normal
    u = np.cross(normal, least)
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    enclosed = np.ones(len(candidates), dtype=bool)
    steps = np.arange(1, int(OPENING_REACH_MM / grid.dx) + 1)
    shape = np.array(tissue.shape)
    for angle in np.arange(8) * np.pi / 4:
        direction = np.cos(angle) * u + np.sin(angle) * v
        hit = np.zeros(len(candidates), dtype=bool)
        for step in steps:
            ijk = np.round(candidates + step * direction).astype(np.int64)
            inside = np.all((ijk >= 0) & (ijk < shape), axis=1)
            hit[inside] |= tissue[tuple(ijk[inside].T)]
        enclosed &= hit
    opening = np.zeros_like(tissue)
    opening[tuple(candidates[enclosed].T)] = True
    # Grown a layer at a time from both cavities, so that each takes its own opening.
    while True:
        grow_lv = ndimage.binary_dilation(lv) & opening & ~rv
        grow_rv = ndimage.binary_dilation(rv) & opening & ~lv & ~grow_lv
        if not grow_lv.any() and not grow_rv.any():
            return lv, rv
        lv, rv = lv | grow_lv, rv | grow_rv
        opening &= ~(grow_lv | grow_rv)


#: Coarse voxel size (mm) of the valve-plane search.
SEARCH_DX_MM = 3.0
#: Directions tried for the valve plane's normal (about 20 degrees apart) and how far
#: in from the heart's end along each the plane is tried (mm).
PLANE_DIRECTIONS = 100
PLANE_DEPTH_MM = 30.0


def _coarsen(tissue: np.ndarray, grid: Grid) -> tuple[np.ndarray, Grid]:
    factor = max(1, round(SEARCH_DX_MM / grid.dx))
    if factor == 1:
        return tissue, grid
    shape = [-(-n // factor) * factor for n in tissue.shape]
    padded = np.zeros(shape, dtype=bool)
    padded[tuple(slice(0, n) for n in tissue.shape)] = tissue
    blocks = padded.reshape(shape[0] // factor, factor, shape[1] // factor, factor, shape[2] // factor, factor)
    coarse = blocks.any(axis=(1, 3, 5))
    origin = grid.origin + grid.dx * (factor - 1) / 2
    return coarse, Grid(origin, coarse.shape, grid.dx * factor)


def _axis_planes(tissue: np.ndarray, grid: Grid) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Planes facing every way (a Fibonacci sphere of normals), stepping in from
    the heart's end along each (one list per direction): a heart's longest
    axis need not be its long axis (a short wide mean shape)."""
    points = grid.centres(np.argwhere(tissue))
    centre = points.mean(axis=0)
    k = np.arange(PLANE_DIRECTIONS) + 0.5
    polar = np.arccos(1 - 2 * k / PLANE_DIRECTIONS)
    azimuth = np.pi * (1 + 5 ** 0.5) * k
    normals = np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1)
    ends = ((points - centre) @ normals.T).max(axis=0)
    return [[(centre + normal * (end - depth), normal) for depth in np.arange(SEARCH_DX_MM, PLANE_DEPTH_MM, SEARCH_DX_MM)]
            for normal, end in zip(normals, ends)]


def _cut_cavities(tissue: np.ndarray, grid: Grid, plane: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """Non-tissue regions below the plane that the plane and the wall enclose."""
    return _enclosed(~tissue & (_signed_distance(plane, grid) < 0), grid)


def _enclosed(mask: np.ndarray, grid: Grid) -> list[np.ndarray]:
    """Components of ``mask`` that do not reach the grid's border and hold at least ``MIN_CAVITY_ML``."""
    labels, count = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=count + 1) * grid.dx ** 3 / 1000
    border = np.concatenate([labels[0].ravel(), labels[-1].ravel(), labels[:, 0].ravel(),
                             labels[:, -1].ravel(), labels[:, :, 0].ravel(), labels[:, :, -1].ravel()])
    sizes[np.unique(border)] = 0
    sizes[0] = 0  # label 0 is the rest, not a component
    return [labels == n for n in np.flatnonzero(sizes >= MIN_CAVITY_ML)]


def _flat_regions(boundary: Surface, tissue: np.ndarray, grid: Grid,
                  count: int = 12) -> list[tuple[np.ndarray, np.ndarray]]:
    """Planes of the largest flat parts of the surface, distinct from one another."""
    corners = boundary.points[boundary.triangles]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    area = np.linalg.norm(normal, axis=1) / 2
    ok = area > 0
    corners, normal, area = corners[ok], normal[ok] / (2 * area[ok, None]), area[ok]
    centre = corners.mean(axis=1)
    offset = np.einsum("ij,ij->i", normal, centre)
    cos_limit = np.cos(np.radians(BASE_ANGLE_DEG))
    sample = np.argsort(-area)[:400]
    regions = []
    for f in sample:
        flat = (normal @ normal[f] > cos_limit) & (np.abs(centre @ normal[f] - offset[f]) < BASE_TOLERANCE_MM)
        regions.append((float(area[flat].sum()), f, flat))
    regions.sort(key=lambda r: -r[0])
    tissue_centre = grid.centres(np.argwhere(tissue)).mean(axis=0)
    planes: list[tuple[np.ndarray, np.ndarray]] = []
    taken: list[int] = []
    for region_area, f, flat in regions:
        if len(planes) == count or region_area < MIN_BASE_AREA_FRACTION * area.sum():
            break
        if any(normal[f] @ normal[g] > cos_limit and abs(centre[f] @ normal[g] - offset[g]) < 2 * BASE_TOLERANCE_MM
               for g in taken):
            continue
        taken.append(f)
        vertices = corners[flat].reshape(-1, 3)
        middle = vertices.mean(axis=0)
        direction = np.linalg.svd(vertices - middle)[2][2]
        if (middle - tissue_centre) @ direction < 0:
            direction = -direction
        lowest = vertices[np.argmin((vertices - middle) @ direction)]
        planes.append((lowest - direction * grid.dx / 2, direction))
    return planes


def _signed_distance(plane: tuple[np.ndarray, np.ndarray], grid: Grid) -> np.ndarray:
    point, normal = plane
    axes = [grid.origin[a] + grid.dx * np.arange(n) - point[a] for a, n in enumerate(grid.shape)]
    return (axes[0][:, None, None] * normal[0] + axes[1][None, :, None] * normal[1]
            + axes[2][None, None, :] * normal[2])


def _finish(code: np.ndarray, grid: Grid, labelled_from: str, given: Surface | None = None,
            plane: tuple[np.ndarray, np.ndarray] | None = None) -> Anatomy:
    for value, name in ((TISSUE, "myocardium"), (LV_CAVITY, "LV cavity"), (RV_CAVITY, "RV cavity")):
        if not (code == value).any():
            raise ConfigError(f"no {name} voxels at dx {grid.dx} mm; refine --dx or check the surfaces")
    surface = label_surface(code, grid, plane)
    if given is not None and given.labels is not None:
        surface = _given_surface_labels(surface, grid, given)
    return Anatomy(code, surface, np.asarray(grid.origin, dtype=float), grid.dx, labelled_from)


def _given_surface_labels(surface: np.ndarray, grid: Grid, given: Surface) -> np.ndarray:
    """Each surface voxel takes the label of the nearest labelled triangle; the
    septum stays where the RV endocardium faces the LV."""
    centroids = given.points[given.triangles].mean(axis=1)
    skin = np.argwhere(surface > 0)
    _, nearest = cKDTree(centroids).query(grid.centres(skin))
    assert given.labels is not None  # only labelled surfaces come here
    labels = given.labels[nearest].astype(np.int8)
    septum = surface[tuple(skin.T)] == SEPTUM
    labels[septum & (labels == RV_ENDO)] = SEPTUM
    out = np.zeros_like(surface)
    out[tuple(skin.T)] = labels
    return out


def label_surface(code: np.ndarray, grid: Grid,
                  plane: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Surface labels of tissue voxels from the region codes: the cavity or outside
    each faces; the base where the outside lies above the cavities' top."""
    surface = np.zeros(code.shape, dtype=np.int8)
    near = {value: ndimage.binary_dilation(code == value) for value in (OUTSIDE, LV_CAVITY, RV_CAVITY)}
    skin = surface_voxels(code)
    surface[skin & near[OUTSIDE]] = EPI
    surface[skin & near[RV_CAVITY]] = RV_ENDO
    surface[skin & near[LV_CAVITY]] = LV_ENDO
    to_lv = ndimage.distance_transform_edt(code != LV_CAVITY) * grid.dx
    surface[(surface == RV_ENDO) & (to_lv <= SEPTUM_REACH_MM)] = SEPTUM
    if plane is None:
        plane = _cavity_top(code, grid)
    if plane is not None:
        # The base is the top of the wall: near the plane, with no tissue one voxel further out along it.
        step = np.clip(np.round(plane[1] * 1.5), -1, 1).astype(int)
        above = np.roll(code, tuple(-step), axis=(0, 1, 2)) != TISSUE
        sd = _signed_distance(plane, grid)
        cavity_top = float(sd[code >= LV_CAVITY].max())
        base = (surface == EPI) & (sd >= max(cavity_top - BASE_BAND_MM, 0.0) - 1.5 * grid.dx) & above
        surface[base] = BASE
    return surface


def _cavity_top(code: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray] | None:
    """A plane through the top of the cavities: the long axis runs from the
    tissue's centre to the cavities' open end."""
    cavity = grid.centres(np.argwhere(code >= LV_CAVITY))
    tissue = grid.centres(np.argwhere(code == TISSUE))
    if len(cavity) < 4:
        return None
    centre = tissue.mean(axis=0)
    axis = np.linalg.svd(tissue - centre, full_matrices=False)[2][0]
    # The base is where the cavities reach furthest from the apex.
    if (cavity.mean(axis=0) - centre) @ axis < 0:
        axis = -axis
    top = float(((cavity - centre) @ axis).max())
    return centre + axis * top, axis


def surface_agreement(automatic: Anatomy, reference: Anatomy) -> float:
    """Share of the reference's surface voxels whose automatic label agrees
    (septum counted as RV endocardium: the references do not split it)."""
    if automatic.code.shape != reference.code.shape or not np.allclose(automatic.origin, reference.origin):
        raise ValueError("anatomies on different grids")
    auto = np.where(automatic.surface == SEPTUM, RV_ENDO, automatic.surface)
    ref = np.where(reference.surface == SEPTUM, RV_ENDO, reference.surface)
    mask = ref > 0
    return float((auto[mask] == ref[mask]).mean())

"""The 3D Shapes world: objects made of primitives, rendered from cameras around them, for NVS.

This stands in for the paper's novel-view-synthesis data (G.3, Table 4): the train split plays
Objaverse (many objects x 32 random views looking at the centre), the test split plays GSO
(held-out objects, one input view, then 16 azimuths at elevation 0 and 16 at elevation 30).
`import_views_folder` reads real multi-view renders (e.g. Zero123's Objaverse renders) into the
same record format.

Camera convention (used everywhere in this module)
--------------------------------------------------
* World frame: right-handed, z up, the object centred at the origin inside a sphere of radius
  ``OBJECT_RADIUS`` (= 1).
* A camera at azimuth ``az``, elevation ``el`` (degrees) and distance ``r`` sits at
  ``r * (cos(el) cos(az), cos(el) sin(az), sin(el))`` and looks at the origin. Azimuth 0 is on +x,
  azimuth 90 on +y; elevation 90 would be straight above (excluded: elevation must lie strictly
  inside (-90, 90)).
* Camera axes are OpenCV's: x right, y down, z forward (towards the origin). A camera is stored
  as its 4x4 camera-to-world matrix ``c2w``: the rotation's columns are the camera axes in world
  coordinates, the last column is the camera centre. ``world = c2w @ [x_cam, y_cam, z_cam, 1]``.
* The relative pose of a target camera seen from an input camera is
  ``inv(c2w_input) @ c2w_target`` (the target camera in the input camera's frame); the model is
  conditioned on ``pose_vector(rel)`` = R (3x3, row-major) then T (3), float32.
* Intrinsics: a pinhole with vertical (= horizontal, images are square) field of view
  ``FOV_DEG``; focal length in pixels ``f = (size / 2) / tan(FOV_DEG / 2)``; principal point at
  the image centre. Pixel ``(u, v)`` (column, row) covers ``[u, u+1) x [v, v+1)``, its centre is
  ``(u + 0.5, v + 0.5)``: a camera-frame point (x, y, z) lands at
  ``(f x / z + size / 2, f y / z + size / 2)``.

The renderer is our own: each primitive has a signed-distance function (SDF) in its local frame,
an object is the union (min) of its parts, rays are sphere-traced (vectorised numpy over every
pixel of every view at once, float32), normals come from central differences of the SDF, and
shading is Lambertian with one directional light fixed in the world frame plus ambient, on a
white background. Images are rendered at ``supersample`` x the resolution and box-downsampled.
Only exactly rounded operations (+, *, /, sqrt, min, max, floor) touch per-ray values, so a pixel
does not depend on which other views are rendered in the same batch: rendering is deterministic.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lumos.data.worlds.shapes import COLOURS, SHADE
from lumos.utils import log, progress

# -----------------------------------------------------------------------------
# Constants
# -----------------------------------------------------------------------------

FOV_DEG = 40.0  # vertical (= horizontal) field of view of every camera
RADIUS = 4.0  # standard camera distance; objects fit in the unit sphere, which then spans ~70% of the frame
OBJECT_RADIUS = 1.0  # every sampled object is scaled to fit exactly in this sphere
VIEWS_PER_TRAIN_OBJECT = 32
TEST_AZIMUTHS = tuple(k * 22.5 for k in range(16))
TEST_ELEVATIONS = (0.0, 30.0)
VIEWS_PER_TEST_OBJECT = 1 + len(TEST_AZIMUTHS) * len(TEST_ELEVATIONS)  # the input view, then 32 targets

PRIMITIVES = ("sphere", "box", "cylinder", "cone", "torus")
TEXTURES_3D = ("plain", "stripes", "checker")
TEXTURE_PERIOD = 0.4  # width of one stripe / checker cell, in object units

LIGHT_DIR = np.array([0.5, 0.3, 0.8]) / np.linalg.norm([0.5, 0.3, 0.8])  # towards the light, world frame
AMBIENT, DIFFUSE = 0.35, 0.65
BACKGROUND = 255.0

MAX_STEPS = 64  # sphere-tracing iterations per ray
HIT_EPS = 0.05  # a ray hits when the SDF is below this fraction of a (supersampled) pixel's footprint
NORMAL_STEP = 2e-3  # central-difference step of the normals, object units

# Fixed split ids: train and test objects come from different random streams (test objects are held out).
SPLIT_IDS_3D = {"train": 20, "test": 21}

# Axis flip between Blender camera axes (x right, y up, -z forward) and OpenCV's (x right, y down, z forward).
_BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])

# -----------------------------------------------------------------------------
# Cameras
# -----------------------------------------------------------------------------


def camera_position(azimuth_deg: float, elevation_deg: float, radius: float) -> np.ndarray:
    """Camera centre (3,) in world coordinates: r * (cos el cos az, cos el sin az, sin el)."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return radius * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


def camera_to_world(azimuth_deg: float, elevation_deg: float, radius: float) -> np.ndarray:
    """(4, 4) float64 c2w of a camera at (azimuth, elevation, radius) looking at the origin, with
    OpenCV axes (x right, y down, z forward) and world z up."""
    if not -90.0 < elevation_deg < 90.0:
        raise ValueError(f"elevation must lie strictly inside (-90, 90) degrees, not {elevation_deg}")
    if radius <= 0:
        raise ValueError(f"camera radius must be positive, not {radius}")
    centre = camera_position(azimuth_deg, elevation_deg, radius)
    forward = -centre / np.linalg.norm(centre)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, centre
    return c2w


def invert_pose(c2w: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform [R t; 0 1] -> [R^T, -R^T t; 0 1]."""
    rot, t = c2w[:3, :3], c2w[:3, 3]
    inv = np.eye(4)
    inv[:3, :3], inv[:3, 3] = rot.T, -rot.T @ t
    return inv


def relative_pose(c2w_input: np.ndarray, c2w_target: np.ndarray) -> np.ndarray:
    """(4, 4) pose of the target camera in the input camera's frame: inv(c2w_input) @ c2w_target.
    Identity for the same camera; rel(a, b) @ rel(b, c) == rel(a, c)."""
    return invert_pose(np.asarray(c2w_input, dtype=np.float64)) @ np.asarray(c2w_target, dtype=np.float64)


def pose_vector(rel: np.ndarray) -> np.ndarray:
    """(12,) float32 condition of a relative pose: R row-major (9) then T (3)."""
    rel = np.asarray(rel, dtype=np.float64)
    return np.concatenate([rel[:3, :3].reshape(-1), rel[:3, 3]]).astype(np.float32)


def focal_pixels(image_size: int) -> float:
    """Focal length in pixels of the standard pinhole at `image_size`."""
    return (image_size / 2.0) / np.tan(np.radians(FOV_DEG) / 2.0)


def project(points_world: np.ndarray, c2w: np.ndarray, image_size: int) -> np.ndarray:
    """(N, 2) continuous pixel coordinates (u = column, v = row; pixel centres at k + 0.5) of
    world points (N, 3) seen by camera `c2w`; points behind the camera get NaN."""
    pts = np.atleast_2d(np.asarray(points_world, dtype=np.float64))
    cam = (pts - c2w[:3, 3]) @ c2w[:3, :3]  # R^T (p - C), row-wise
    f, c = focal_pixels(image_size), image_size / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([f * cam[:, 0] / cam[:, 2] + c, f * cam[:, 1] / cam[:, 2] + c], axis=1)
    uv[cam[:, 2] <= 0] = np.nan
    return uv


def c2w_from_record(record: dict) -> np.ndarray:
    """The (4, 4) c2w stored in a view record (16 floats, row-major)."""
    return np.asarray(record["c2w"], dtype=np.float64).reshape(4, 4)


def blender_w2c_to_c2w(w2c: np.ndarray) -> np.ndarray:
    """Zero123's camera (3x4 or 4x4 world-to-camera, Blender axes x right, y up, -z forward) ->
    our (4, 4) c2w with OpenCV axes."""
    m = np.eye(4)
    m[:3, :] = np.asarray(w2c, dtype=np.float64)[:3, :4]
    return invert_pose(m) @ _BLENDER_TO_OPENCV


def c2w_to_blender_w2c(c2w: np.ndarray) -> np.ndarray:
    """Inverse of :func:`blender_w2c_to_c2w`: our c2w -> a (3, 4) Blender world-to-camera matrix."""
    return invert_pose(np.asarray(c2w, dtype=np.float64) @ _BLENDER_TO_OPENCV)[:3, :]


def spherical_from_c2w(c2w: np.ndarray) -> tuple[float, float, float]:
    """(azimuth in [0, 360), elevation, radius) of a camera's centre, in degrees."""
    x, y, z = np.asarray(c2w, dtype=np.float64)[:3, 3]
    radius = float(np.sqrt(x * x + y * y + z * z))
    elevation = float(np.degrees(np.arcsin(np.clip(z / radius, -1, 1)))) if radius > 0 else 0.0
    return float(np.degrees(np.arctan2(y, x)) % 360.0), elevation, radius


# -----------------------------------------------------------------------------
# Views of the two splits
# -----------------------------------------------------------------------------


def train_views(rng: np.random.Generator, n: int = VIEWS_PER_TRAIN_OBJECT) -> np.ndarray:
    """(n, 3) random cameras (azimuth, elevation, radius): azimuth U[0, 360), elevation
    U[-10, 50], radius U[0.9, 1.1] * RADIUS (the Objaverse role: 32 random views per object)."""
    az = rng.uniform(0.0, 360.0, n)
    el = rng.uniform(-10.0, 50.0, n)
    r = rng.uniform(0.9, 1.1, n) * RADIUS
    return np.stack([az, el, r], axis=1)


def test_views(rng: np.random.Generator) -> np.ndarray:
    """(33, 3) cameras (azimuth, elevation, radius) of a held-out object (the GSO role, Table 4):
    view 0 is the input view (azimuth 0, elevation U[0, 30], RADIUS); views 1-16 are azimuths
    k * 22.5 at elevation 0, views 17-32 the same azimuths at elevation 30, all at RADIUS."""
    rows = [(0.0, float(rng.uniform(0.0, 30.0)), RADIUS)]
    rows += [(az, el, RADIUS) for el in TEST_ELEVATIONS for az in TEST_AZIMUTHS]
    return np.array(rows, dtype=np.float64)


test_views.__test__ = False  # not a pytest test, even when a test module imports it by name


# -----------------------------------------------------------------------------
# Objects
# -----------------------------------------------------------------------------


def rotation_matrix(angles_deg) -> np.ndarray:
    """(3, 3) rotation Rz(a) @ Ry(b) @ Rx(c) of Euler angles (a, b, c) in degrees."""
    a, b, c = np.radians(np.asarray(angles_deg, dtype=np.float64))
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    return rz @ ry @ rx


@dataclass
class Part:
    """One primitive: `kind` in PRIMITIVES with its `size` in its local frame (sphere (r,), box
    half-extents (hx, hy, hz), cylinder (r, h) and cone (r, h) along local z with half-height h
    (the cone's apex at +h), torus (R, r) in the local xy plane), placed at `position` with Euler
    `rotation` (degrees, see rotation_matrix): world = R @ local + position. Colour is a palette
    name; the texture (plain, stripes, checker) is laid out in local coordinates."""

    kind: str
    size: tuple
    position: tuple = (0.0, 0.0, 0.0)
    rotation: tuple = (0.0, 0.0, 0.0)
    colour: str = "red"
    texture: str = "plain"

    def __post_init__(self):
        if self.kind not in PRIMITIVES:
            raise ValueError(f"unknown primitive '{self.kind}': known are {PRIMITIVES}")
        if self.texture not in TEXTURES_3D:
            raise ValueError(f"unknown texture '{self.texture}': known are {TEXTURES_3D}")
        self.size = tuple(float(s) for s in self.size)
        self.position = tuple(float(p) for p in self.position)
        self.rotation = tuple(float(a) for a in self.rotation)

    @property
    def bound(self) -> float:
        """Radius of a sphere around `position` that holds the part."""
        s = self.size
        if self.kind == "sphere":
            return s[0]
        if self.kind == "torus":
            return s[0] + s[1]
        return float(np.sqrt(sum(v * v for v in s)))  # box: half-diagonal; cylinder, cone: hypot(r, h)

    def to_dict(self) -> dict:
        """JSON-safe dict of the fields."""
        return {"kind": self.kind, "size": list(self.size), "position": list(self.position),
                "rotation": list(self.rotation), "colour": self.colour, "texture": self.texture}


@dataclass
class Object3D:
    """An object: one primitive or the union of two parts (the second offset and rotated
    relative to the first). Sampled objects are centred and scaled into the unit sphere."""

    parts: list = field(default_factory=list)

    @property
    def bound(self) -> float:
        """Radius of a sphere around the origin that holds the whole object."""
        return max(float(np.linalg.norm(p.position)) + p.bound for p in self.parts)

    def to_dict(self) -> dict:
        """JSON-safe dict: {"parts": [part dicts]}."""
        return {"parts": [p.to_dict() for p in self.parts]}

    @classmethod
    def from_dict(cls, d: dict) -> Object3D:
        """Inverse of :meth:`to_dict`."""
        return cls([Part(**p) for p in d["parts"]])


def _sample_size(rng: np.random.Generator, kind: str) -> tuple:
    """Random local size of a primitive (normalised later with the whole object)."""
    if kind == "sphere":
        return (1.0,)
    if kind == "box":
        return tuple(rng.uniform(0.35, 1.0, 3))
    if kind == "cylinder":
        return (rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0))
    if kind == "cone":
        return (rng.uniform(0.4, 1.0), rng.uniform(0.5, 1.0))
    return (1.0, rng.uniform(0.2, 0.45))  # torus: major radius, tube radius


def _sample_part(rng: np.random.Generator, position=(0.0, 0.0, 0.0)) -> Part:
    """A random primitive with a random orientation, colour and texture at `position`."""
    kind = PRIMITIVES[rng.integers(len(PRIMITIVES))]
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    texture = TEXTURES_3D[rng.integers(len(TEXTURES_3D))]
    return Part(kind, _sample_size(rng, kind), position, tuple(rng.uniform(0.0, 360.0, 3)), colour, texture)


def _enclosing_sphere(c1, r1: float, c2, r2: float) -> tuple[np.ndarray, float]:
    """Smallest sphere (centre, radius) holding the spheres (c1, r1) and (c2, r2)."""
    c1, c2 = np.asarray(c1, dtype=np.float64), np.asarray(c2, dtype=np.float64)
    dist = float(np.linalg.norm(c2 - c1))
    if dist + r2 <= r1:
        return c1, r1
    if dist + r1 <= r2:
        return c2, r2
    radius = (dist + r1 + r2) / 2.0
    return c1 + (c2 - c1) / dist * (radius - r1), radius


def _normalise(parts: list) -> list:
    """Shift and scale parts so that their enclosing sphere is the sphere of radius OBJECT_RADIUS
    at the origin."""
    centre, radius = np.asarray(parts[0].position, dtype=np.float64), parts[0].bound
    for p in parts[1:]:
        centre, radius = _enclosing_sphere(centre, radius, p.position, p.bound)
    k = OBJECT_RADIUS / radius
    return [Part(p.kind, tuple(k * s for s in p.size), tuple(k * (np.asarray(p.position) - centre)), p.rotation,
                 p.colour, p.texture) for p in parts]


def sample_object(rng: np.random.Generator, p_union: float = 0.5) -> Object3D:
    """A random object: one primitive, or (with probability `p_union`) the union of two, the
    second smaller, rotated, and offset so that it sticks out of the first; centred and scaled into
    the unit sphere."""
    first = _sample_part(rng)
    parts = [first]
    if rng.uniform() < p_union:
        second = _sample_part(rng)
        second.size = tuple(s * rng.uniform(0.45, 0.8) for s in second.size)
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        second.position = tuple(direction * first.bound * rng.uniform(0.6, 1.0))
        parts.append(second)
    return Object3D(_normalise(parts))


# -----------------------------------------------------------------------------
# Signed distances (points are three float32 arrays x, y, z)
# -----------------------------------------------------------------------------


def _length2(a, b):
    """Elementwise length of 2D vectors given by components."""
    return np.sqrt(a * a + b * b)


def _length3(a, b, c):
    """Elementwise length of 3D vectors given by components."""
    return np.sqrt(a * a + b * b + c * c)


def _segment_distance(px, py, ax: float, ay: float, bx: float, by: float):
    """2D distance from points (px, py) to the segment a-b."""
    ex, ey = bx - ax, by - ay
    t = np.clip(((px - ax) * ex + (py - ay) * ey) / (ex * ex + ey * ey), 0.0, 1.0)
    return _length2(px - ax - t * ex, py - ay - t * ey)


def _sdf_sphere(size, x, y, z):
    """Sphere of radius r at the origin."""
    return _length3(x, y, z) - size[0]


def _sdf_box(size, x, y, z):
    """Axis-aligned box of half-extents (hx, hy, hz): exact outside and inside."""
    qx, qy, qz = np.abs(x) - size[0], np.abs(y) - size[1], np.abs(z) - size[2]
    outside = _length3(np.maximum(qx, 0.0), np.maximum(qy, 0.0), np.maximum(qz, 0.0))
    return outside + np.minimum(np.maximum(qx, np.maximum(qy, qz)), 0.0)


def _sdf_cylinder(size, x, y, z):
    """Capped cylinder of radius r along z, half-height h: the box SDF in (distance from axis, z)."""
    qr, qz = _length2(x, y) - size[0], np.abs(z) - size[1]
    return _length2(np.maximum(qr, 0.0), np.maximum(qz, 0.0)) + np.minimum(np.maximum(qr, qz), 0.0)


def _sdf_cone(size, x, y, z):
    """Solid cone of base radius r at z = -h and apex at z = +h: the distance to the triangle
    (0, -h), (r, -h), (0, h) in the (distance from axis, z) half-plane, negative inside."""
    r, h = size
    rho = _length2(x, y)
    d = np.minimum(_segment_distance(rho, z, 0.0, -h, r, -h), _segment_distance(rho, z, r, -h, 0.0, h))
    inside = (z > -h) & (rho * 2.0 * h + (z - h) * r < 0.0)  # below the slant line rho = r (h - z) / 2h
    return np.where(inside, -d, d)


def _sdf_torus(size, x, y, z):
    """Torus in the xy plane: tube of radius r around the circle of radius R."""
    return _length2(_length2(x, y) - size[0], z) - size[1]


_SDFS = {"sphere": _sdf_sphere, "box": _sdf_box, "cylinder": _sdf_cylinder, "cone": _sdf_cone, "torus": _sdf_torus}


class _CompiledPart:
    """A part's constants as Python floats (float32 arithmetic stays float32), with its local
    frame transform and SDF."""

    def __init__(self, part: Part):
        self.part = part
        self.rot = [[float(v) for v in row] for row in rotation_matrix(part.rotation)]
        self.pos = [float(v) for v in part.position]
        self.size = part.size
        self.sdf_fn = _SDFS[part.kind]
        rgb = np.array(COLOURS[part.colour], dtype=np.float32)
        self.albedo = rgb, np.float32(SHADE) * rgb  # base colour, texture colour

    def local(self, x, y, z):
        """World points -> local frame: R^T (p - position), component by component."""
        dx, dy, dz = x - self.pos[0], y - self.pos[1], z - self.pos[2]
        r = self.rot
        return (r[0][0] * dx + r[1][0] * dy + r[2][0] * dz,
                r[0][1] * dx + r[1][1] * dy + r[2][1] * dz,
                r[0][2] * dx + r[1][2] * dy + r[2][2] * dz)

    def sdf(self, x, y, z):
        """Signed distance of world points to the part."""
        return self.sdf_fn(self.size, *self.local(x, y, z))

    def colour(self, x, y, z):
        """(N, 3) float32 albedo (0..255) of world surface points, textured in local coordinates."""
        base, dark = self.albedo
        if self.part.texture == "plain":
            return np.broadcast_to(base, (len(x), 3))
        lx, ly, lz = (np.floor(c / TEXTURE_PERIOD) for c in self.local(x, y, z))
        cells = lz if self.part.texture == "stripes" else lx + ly + lz
        odd = (cells - 2.0 * np.floor(cells / 2.0)) > 0.5
        return np.where(odd[:, None], dark, base)


def _union_sdf(parts: list, x, y, z):
    """Signed distance of world points to the union of compiled parts."""
    d = parts[0].sdf(x, y, z)
    for p in parts[1:]:
        d = np.minimum(d, p.sdf(x, y, z))
    return d


# -----------------------------------------------------------------------------
# Renderer
# -----------------------------------------------------------------------------


def _camera_rays(c2ws: np.ndarray, size: int):
    """Origins and unit directions (six float32 arrays of V * size * size) of every pixel centre
    of every camera, view-major then row-major."""
    f, c = focal_pixels(size), size / 2.0
    grid = (np.arange(size, dtype=np.float64) + 0.5 - c) / f
    u, v = np.meshgrid(grid, grid)  # u: column (x right), v: row (y down)
    cam = np.stack([u.ravel(), v.ravel(), np.ones(size * size)], axis=1)  # (P, 3)
    cam /= np.sqrt((cam * cam).sum(axis=1, keepdims=True))
    # R @ d written out per component (no BLAS): a ray's direction never depends on the batch
    dirs = np.concatenate([sum(cam[:, k, None] * c2w[None, :3, k] for k in range(3)) for c2w in c2ws])
    dirs = dirs.astype(np.float32)
    origins = np.repeat(np.asarray([c2w[:3, 3] for c2w in c2ws], dtype=np.float32), size * size, axis=0)
    return (*origins.T, *dirs.T)


def _bounding_interval(ox, oy, oz, dx, dy, dz, radius: float):
    """Entry and exit distances of rays through the sphere of `radius` at the origin (NaN: a miss)."""
    b = ox * dx + oy * dy + oz * dz
    disc = b * b - (ox * ox + oy * oy + oz * oz - np.float32(radius * radius))
    with np.errstate(invalid="ignore"):
        root = np.sqrt(disc)
    return np.maximum(-b - root, 0.0), -b + root


def _sphere_trace(parts: list, rays, bound: float, footprint: float) -> np.ndarray:
    """Distance along each ray to the first surface hit (inf: no hit). Rays start where they
    enter the bounding sphere and leave the active set as soon as they hit (SDF below HIT_EPS of
    a pixel footprint at that distance) or pass the sphere's far side; at most MAX_STEPS steps, after
    which a ray still within one pixel footprint of the surface counts as a hit."""
    ox, oy, oz, dx, dy, dz = rays
    t_near, t_far = _bounding_interval(ox, oy, oz, dx, dy, dz, bound)
    t_hit = np.full(len(ox), np.inf, dtype=np.float32)
    idx = np.flatnonzero(t_near <= t_far)  # NaN (a miss of the bounding sphere) compares False
    active = [a[idx] for a in (ox, oy, oz, dx, dy, dz, t_near, t_far)]
    eps_per_unit = np.float32(HIT_EPS * footprint)
    for _ in range(MAX_STEPS):
        if idx.size == 0:
            break
        aox, aoy, aoz, adx, ady, adz, t, tf = active
        d = _union_sdf(parts, aox + t * adx, aoy + t * ady, aoz + t * adz)
        hit = d < eps_per_unit * t
        t_hit[idx[hit]] = t[hit]
        t = t + d
        keep = ~hit & (t <= tf)
        idx = idx[keep]
        active = [a[keep] for a in (aox, aoy, aoz, adx, ady, adz, t, tf)]
    if idx.size:  # out of steps (grazing rays, ~0.04%): a hit if within a pixel footprint of the surface
        aox, aoy, aoz, adx, ady, adz, t, _ = active
        near = _union_sdf(parts, aox + t * adx, aoy + t * ady, aoz + t * adz) < np.float32(footprint) * t
        t_hit[idx[near]] = t[near]
    return t_hit


def _shade(parts: list, x, y, z) -> np.ndarray:
    """(N, 3) float32 colour (0..255) of surface points: textured albedo of the nearest part times
    ambient plus Lambertian light, normals by central differences (step NORMAL_STEP) of the union SDF."""
    h = np.float32(NORMAL_STEP)
    n = [_union_sdf(parts, x + h, y, z) - _union_sdf(parts, x - h, y, z),
         _union_sdf(parts, x, y + h, z) - _union_sdf(parts, x, y - h, z),
         _union_sdf(parts, x, y, z + h) - _union_sdf(parts, x, y, z - h)]
    norm = np.maximum(_length3(*n), np.float32(1e-12))
    lx, ly, lz = (float(v) for v in LIGHT_DIR)
    lambert = np.maximum((n[0] * lx + n[1] * ly + n[2] * lz) / norm, 0.0)
    light = np.float32(AMBIENT) + np.float32(DIFFUSE) * lambert
    if len(parts) == 1:
        albedo = parts[0].colour(x, y, z)
    else:
        nearest = np.argmin(np.stack([p.sdf(x, y, z) for p in parts]), axis=0)
        albedo = np.empty((len(x), 3), dtype=np.float32)
        for k, p in enumerate(parts):
            sel = nearest == k
            albedo[sel] = p.colour(x[sel], y[sel], z[sel])
    return albedo * light[:, None]


def render_views(obj: Object3D, c2ws, image_size: int, supersample: int = 2) -> np.ndarray:
    """(V, H, W, 3) uint8 renders of `obj` from the cameras `c2ws` (V, 4, 4), all traced at once:
    rendered at `supersample` x `image_size`, then box-downsampled."""
    c2ws = np.asarray(c2ws, dtype=np.float64).reshape(-1, 4, 4)
    size = image_size * supersample
    parts = [_CompiledPart(p) for p in obj.parts]
    rays = _camera_rays(c2ws, size)
    footprint = 1.0 / focal_pixels(size)  # ray spread per unit distance, one supersampled pixel
    t = _sphere_trace(parts, rays, obj.bound * 1.01 + 1e-3, footprint)
    image = np.full((len(t), 3), BACKGROUND, dtype=np.float32)
    hit = np.flatnonzero(np.isfinite(t))
    ox, oy, oz, dx, dy, dz = (a[hit] for a in rays)
    th = t[hit]
    image[hit] = _shade(parts, ox + th * dx, oy + th * dy, oz + th * dz)
    # float64 sums of float32 values are exact, so the box filter does not depend on summation order
    image = image.astype(np.float64).reshape(len(c2ws), image_size, supersample, image_size, supersample, 3)
    image = image.mean(axis=(2, 4))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render(obj: Object3D, c2w: np.ndarray, image_size: int, supersample: int = 2) -> np.ndarray:
    """(H, W, 3) uint8 render of `obj` seen by camera `c2w` (4, 4) on a white background."""
    return render_views(obj, [c2w], image_size, supersample)[0]


# -----------------------------------------------------------------------------
# Splits
# -----------------------------------------------------------------------------


def object_views(seed: int, kind: str, i: int) -> tuple[Object3D, np.ndarray]:
    """Object `i` of a split of `kind` ("train" or "test") and its cameras (V, 3) of (azimuth,
    elevation, radius), from the random stream [seed, split id, i]."""
    if kind not in SPLIT_IDS_3D:
        raise ValueError(f"kind must be one of {sorted(SPLIT_IDS_3D)}, not '{kind}'")
    rng = np.random.default_rng([seed, SPLIT_IDS_3D[kind], i])
    obj = sample_object(rng)
    return obj, (train_views(rng) if kind == "train" else test_views(rng))


def view_record(key: str, i: int, v: int, n_views: int, camera, c2w: np.ndarray, role: str, **extra) -> dict:
    """The JSON record of one view (c2w as 16 floats, row-major)."""
    az, el, r = (float(c) for c in camera)
    return {"key": key, "object": int(i), "view": int(v), "views": int(n_views), "azimuth": az, "elevation": el,
            "radius": r, "c2w": [float(c) for c in np.asarray(c2w).reshape(-1)], "role": role, **extra}


def build_views_split(name: str, n_objects: int, kind: str, image_size: int, seed: int, shard_size: int,
                      out_dir, supersample: int = 2) -> dict:
    """Render `n_objects` objects of `kind` ("train": 32 random views; "test": an input view plus
    32 target views) into PNG shards, object-major, one record per view, plus a contact sheet.
    Returns a summary dict."""
    from lumos.data.shards import ShardWriter

    if kind not in SPLIT_IDS_3D:
        raise ValueError(f"kind must be one of {sorted(SPLIT_IDS_3D)}, not '{kind}'")
    n_views = VIEWS_PER_TRAIN_OBJECT if kind == "train" else VIEWS_PER_TEST_OBJECT
    writer = ShardWriter(out_dir, shard_size, "png", source="shapes3d", split=name, kind=kind, seed=seed,
                         views_per_object=n_views, fov_deg=FOV_DEG, radius=RADIUS)
    for i in progress(range(n_objects), desc=f"render {name}"):
        obj, cameras = object_views(seed, kind, i)
        c2ws = [camera_to_world(*cam) for cam in cameras]
        images = render_views(obj, c2ws, image_size, supersample)
        for v, (image, cam, c2w) in enumerate(zip(images, cameras, c2ws)):
            role = "view" if kind == "train" else ("input" if v == 0 else "target")
            extra = {"object_spec": obj.to_dict()} if v == 0 else {}
            writer.write(image, view_record(f"shapes3d/{name}/{i}/{v}", i, v, n_views, cam, c2w, role, **extra))
    index = writer.close()
    if n_objects:
        contact_sheet_views(out_dir)
    log.info("%s: %d %s objects x %d views of %dpx written to %s", name, n_objects, kind, n_views, image_size, out_dir)
    return {"n": index["n"], "objects": n_objects, "views_per_object": n_views, "kind": kind}


def contact_sheet_views(split_dir, objects: int = 6, views: int = 16) -> None:
    """`contact_sheet.png` in the split folder: one row per object (the first `objects`), its first
    `views` views as columns. Needs records object-major with a "views" count each."""
    from lumos.data.shards import iter_shards
    from lumos.viz import save_grid

    rows, current, pending = [], None, []
    for _, images, records in iter_shards(split_dir):
        for image, rec in zip(images, records):
            if rec["object"] != current:
                if pending:
                    rows.append(pending)
                current, pending = rec["object"], []
            if len(pending) < views:
                pending.append(image)
        if len(rows) >= objects:
            break
    if pending and len(rows) < objects:
        rows.append(pending)
    rows = rows[:objects]
    if not rows:
        return
    ncols = max(len(r) for r in rows)
    blank = np.full_like(rows[0][0], 255)
    tiles = [img for r in rows for img in r + [blank] * (ncols - len(r))]
    scale = max(1, 64 // tiles[0].shape[0])
    save_grid(Path(split_dir) / "contact_sheet.png", tiles, ncols=ncols, scale=scale)


# -----------------------------------------------------------------------------
# Importing real multi-view renders (the paper preset)
# -----------------------------------------------------------------------------

CAMERA_CONVENTIONS = ("c2w_opencv", "w2c_blender")


def load_camera(path, camera: str = "c2w_opencv") -> np.ndarray:
    """Our (4, 4) c2w from a `.npy` camera matrix (3x4 or 4x4) stored in convention `camera`;
    ValueError for anything that is not a finite 3x4 / 4x4 matrix with a rotation block."""
    m = np.load(path, allow_pickle=False)
    if m.shape not in ((3, 4), (4, 4)) or not np.all(np.isfinite(m)):
        raise ValueError(f"{path}: not a finite 3x4 or 4x4 camera matrix (shape {m.shape})")
    m = m.astype(np.float64)
    rot = m[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-3):
        raise ValueError(f"{path}: the 3x3 block is not a rotation")
    if camera == "w2c_blender":
        return blender_w2c_to_c2w(m)
    c2w = np.eye(4)
    c2w[:3, :] = m[:3, :4]
    return c2w


def _object_views(obj_dir: Path, image_size: int, camera: str, skips: Counter) -> list:
    """The good views of one object folder as (source view name, image, c2w); bad ones are
    counted in `skips` by reason."""
    from lumos.data.decode import BadImage, open_image

    stems = sorted({p.stem for p in obj_dir.iterdir() if p.suffix.lower() in (".png", ".npy")})
    good = []
    for stem in stems:
        png, npy = obj_dir / f"{stem}.png", obj_dir / f"{stem}.npy"
        if not npy.exists():
            log.warning("skip view %s: camera_missing (no %s)", png, npy.name)
            skips["camera_missing"] += 1
            continue
        try:
            c2w = load_camera(npy, camera)
        except (ValueError, TypeError, OSError, EOFError) as e:
            log.warning("skip view %s: camera_unreadable (%s)", npy, e)
            skips["camera_unreadable"] += 1
            continue
        try:
            img = open_image(png)
        except BadImage as e:
            log.warning("skip view %s: image_%s", png, e.reason)
            skips[f"image_{e.reason}"] += 1
            continue
        if img.size != (image_size, image_size):
            from lumos.data.curate import center_crop_resize

            pixels = center_crop_resize(img, image_size)
        else:
            pixels = np.asarray(img, dtype=np.uint8)
        good.append((stem, pixels, c2w))
    return good


def import_views_folder(root, out_dir, image_size: int, shard_size: int, camera: str = "c2w_opencv",
                        limit: int | None = None, views: int | None = None, kind: str = "train", part: int = 0,
                        parts: int = 1) -> dict:
    """Import multi-view renders laid out as `<root>/<object_id>/<view:03d>.png` plus
    `<view:03d>.npy` (one camera matrix per view, 3x4 or 4x4, in convention `camera`: "c2w_opencv"
    (ours) or "w2c_blender" (Zero123's Objaverse renders)) into PNG shards with our view records.

    Streams object by object (only one object's views are in memory). Images are composited on
    white (RGBA) and center-cropped/resized to `image_size`. Skips are counted by reason: a view
    whose .npy is missing or unreadable, an image open_image rejects (image_<reason>), an object
    with fewer than 2 good views. The counts go to `curation.json`, which is also returned.
    At most `limit` objects are read.

    With `views`, every kept object has exactly that many good views (the first ones, in file
    order); an object with fewer is skipped and counted (`incomplete_views`), so the split has a
    fixed `views_per_object`, as Lumos-NVS training and evaluation need. `kind="test"` marks each
    object's first view as the input view (role "input") and the rest as its targets (the GSO
    layout: view 000 the input, then the 16 azimuths at elevation 0 and the 16 at 30).

    With `parts` > 1 this job imports every `parts`-th object folder of the first `limit` (sorted)
    only; `gather_views` joins the jobs' folders. Record `object` numbers count within a job."""
    from lumos.data.shards import ShardWriter

    if camera not in CAMERA_CONVENTIONS:
        raise ValueError(f"camera must be one of {CAMERA_CONVENTIONS}, not '{camera}'")
    root, out_dir = Path(root), Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"missing multi-view folder {root}")
    name = root.name
    if kind not in SPLIT_IDS_3D:
        raise ValueError(f"kind must be one of {sorted(SPLIT_IDS_3D)}, not '{kind}'")
    writer = ShardWriter(out_dir, shard_size, "png", source=name, kind=kind, camera=camera, fov_deg=None)
    view_skips, object_skips, counts = Counter(), Counter(), Counter()
    objects = sorted(p for p in root.iterdir() if p.is_dir())[:limit][part::parts]
    kept = 0
    for obj_dir in progress(objects, desc=f"import {name}"):
        counts["objects_seen"] += 1
        good = _object_views(obj_dir, image_size, camera, view_skips)
        if len(good) < 2:
            log.warning("skip object %s: too_few_views (%d good)", obj_dir, len(good))
            object_skips["too_few_views"] += 1
            continue
        if views is not None:
            if len(good) < views:
                log.warning("skip object %s: incomplete_views (%d good of the %d needed)", obj_dir, len(good), views)
                object_skips["incomplete_views"] += 1
                continue
            good = good[:views]
        for v, (stem, pixels, c2w) in enumerate(good):
            role = "view" if kind == "train" else ("input" if v == 0 else "target")
            record = view_record(f"{name}/{obj_dir.name}/{stem}", kept, v, len(good), spherical_from_c2w(c2w), c2w,
                                 role, object_id=obj_dir.name, source_view=stem, part=part)
            writer.write(pixels, record)
            counts["views_kept"] += 1
        counts["views_per_object_" + str(len(good))] += 1
        kept += 1
    per_object = {int(k.rsplit("_", 1)[1]) for k in counts if k.startswith("views_per_object_")}
    writer.meta["views_per_object"] = per_object.pop() if len(per_object) == 1 else None
    writer.close()
    summary = {"objects_seen": counts["objects_seen"], "objects_kept": kept, "views_kept": counts["views_kept"],
               "skipped_views": dict(sorted(view_skips.items())), "skipped_objects": dict(sorted(object_skips.items())),
               "camera": camera, "image_size": image_size}
    (out_dir / "curation.json").write_text(json.dumps(summary, indent=1))
    if kept:
        contact_sheet_views(out_dir)
    log.info("imported %d of %d objects (%d views) from %s to %s; skipped views %s, objects %s", kept,
             counts["objects_seen"], counts["views_kept"], root, out_dir, dict(view_skips), dict(object_skips))
    return summary


def gather_views(parts: list[str], out_dir) -> dict:
    """Join the folders of a rendered-views split's jobs (`build_views_split`, or the parts of
    `import_views_folder`): shards hard-linked in part order (`lumos.data.curate`), the parts'
    import counts summed into `curation.json`, the index's view metadata kept, a contact sheet."""
    from collections import Counter

    from lumos.data.curate import _gather_shards
    from lumos.data.shards import split_index

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metas = [split_index(p) for p in parts]
    per_object = {m.get("views_per_object") for m in metas if m.get("n")}
    index, _ = _gather_shards(parts, out, sheet=False)
    index.update({k: v for k, v in metas[0].items() if k not in index})
    index["views_per_object"] = per_object.pop() if len(per_object) == 1 else None
    (out / "index.json").write_text(json.dumps(index, indent=1))
    reports = [json.loads((Path(p) / "curation.json").read_text()) for p in parts if (Path(p) / "curation.json").exists()]
    if reports:
        summary = {"parts": len(parts)}
        for key in ("objects_seen", "objects_kept", "views_kept"):
            summary[key] = sum(r[key] for r in reports)
        for key in ("skipped_views", "skipped_objects"):
            summary[key] = dict(sum((Counter(r[key]) for r in reports), Counter()))
        (out / "curation.json").write_text(json.dumps(summary, indent=1))
    if index["n"]:
        contact_sheet_views(out)
    log.info("gathered %d views (%s per object) from %d parts into %s", index["n"], index["views_per_object"],
             len(parts), out)
    return index

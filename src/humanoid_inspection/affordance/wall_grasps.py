"""Top-down pinch grasps on thin raised features: housing walls, hub rims and hubs, bracket webs.

A part wider than the gripper can still be picked by one of its walls: the fingers straddle the
wall, one inside the part (above its floor) and one outside (above the table). The search runs
on the object's height map (affordance/height_map.py):

1. Profiles: for each closing direction (`directions` steps over 180 deg, plus the two axes of
   the footprint's minimum-area rectangle, i.e. perpendicular to a box's walls) the height map
   is resampled in that direction (cv2.warpAffine, nearest cell) along parallel lines every
   `line_step_m`; each sample is the highest cell under the finger's width (a slab of
   +-finger_width/2 across the line), used for collisions, and the height held over a third of
   the finger width in one piece (cv2.erode then cv2.dilate across the line), used for the
   gripped material (so a ragged edge of a long web does not make a graspable stub).
2. Runs: at each level z (from the tip clearance up in `level_step_m` steps, and the highest
   level that leaves `min_contact_m` of the object's top above the tips) a run is a stretch
   of a gripped-material profile higher than z: the material the fingers would squeeze. All
   levels and lines of one direction are handled in one array pass.
3. Landing zones: on both sides of the run, over the finger thickness from `pad_gap_m` beside
   it, everything must be lower than the fingertips. (The gap next to the run is not part of it: a curved rim bends back into it
   beside a straight pad and is gripped there, not landed on.) Fingertip level = the higher
   landing zone + `tip_clearance_m`; the run's top must stand at least `min_contact_m` above
   it.
   Unknown cells (shadows) count as free; the observed fraction lowers the score instead.
4. Kept: runs that fit the gripper (width + opening margin <= max opening) and are not a whole
   slice of the object (the object's own material continues beyond the run on at least one
   side: those grasps are the footprint candidates of grasp.py). The palm (above the fingers)
   must clear everything under it.
5. Ranked and thinned: score = (0.5 + 0.5 spare opening fraction) x 0.75 x observation factor
   (0.75 + 0.25 x known fraction of the landing zones) x centring factor (1 at the footprint
   centre .. 0.6 at its farthest cell) x alignment (narrowest run within the same
   `nms_distance_m` bin / this run's width: a wall is best crossed at right angles) x contact
   factor (min(1, 0.5 + contact length / 30 mm)); a candidate closer than `nms_distance_m` to
   a better one with a closing direction within 25 deg is dropped; at most `max_candidates`
   are returned.

The TCP (pad centre) sits `fingertip_below_tcp_m` above the fingertip level.
"""

from dataclasses import dataclass
from typing import List, Optional

import cv2
import numpy as np

from humanoid_inspection.affordance.height_map import HeightMap


@dataclass
class WallGraspParams:
    """Gripper geometry and search parameters (m)."""

    max_opening_m: float = 0.10
    opening_margin_m: float = 0.01
    finger_length_m: float = 0.06
    finger_width_m: float = 0.02
    finger_thickness_m: float = 0.015
    fingertip_below_tcp_m: float = 0.02
    tip_clearance_m: float = 0.003
    min_contact_m: float = 0.005
    pad_gap_m: float = 0.002            # beside the run, not part of the landing zones
    palm_size_m: tuple = (0.05, 0.11)   # across the closing direction, along it
    directions: int = 8
    line_step_m: float = 0.004
    level_step_m: float = 0.003
    nms_distance_m: float = 0.015
    max_candidates: int = 6
    top_level: bool = True              # also the highest level that leaves min_contact_m


@dataclass
class WallGrasp:
    """One pinch grasp on a raised feature (grid coordinates of the height map, m)."""

    centre_ab: np.ndarray       # (2,) run centre, grid coordinates (m)
    direction_ab: np.ndarray    # (2,) closing direction, grid coordinates
    width_m: float              # material width between the fingers
    tip_height_m: float         # fingertip level above the plane
    top_m: float                # highest material between the fingers
    observed: float             # known fraction of the landing zones
    score_factor: float         # 0..1, see the module docstring
    kind: str                   # 'wall' (width <= 15 mm) or 'raised' (a wider boss / hub)

    @property
    def opening_m(self) -> float:
        """Width of the grasped material (the caller adds the opening margin)."""
        return self.width_m


def _directions(hm: HeightMap, count: int) -> List[np.ndarray]:
    angles = list(np.arange(count) * np.pi / count)
    ys, xs = np.nonzero(hm.occupied)
    if len(xs) >= 5:
        pts = np.stack([xs, ys], axis=1).astype(np.float32)
        angle = np.radians(cv2.minAreaRect(pts)[2])
        angles += [angle, angle + np.pi / 2]
    return [np.array([np.cos(a), np.sin(a)]) for a in angles]


def find_wall_grasps(hm: HeightMap, params: Optional[WallGraspParams] = None,
                     centre_ab=(0.0, 0.0)) -> List[WallGrasp]:
    """Pinch grasps on the raised features of the object in hm, best first.

    Args:
        hm: the object's height map (heights above the plane, occupied = the object's cells).
        params: gripper geometry and search parameters.
        centre_ab: grid coordinates (m) of the object's footprint centre (for centring).

    Returns:
        WallGrasp list, best first, at most params.max_candidates.
    """
    p = params or WallGraspParams()
    cell = hm.cell_m
    # the pads open half the margin away from the run; the finger body (its thickness) lies
    # beyond that gap: only there must everything stay below the fingertips (a curved rim
    # curves back into the gap beside a straight pad, and is gripped, not landed on)
    # zone: the finger thickness from pad_gap_m beside the run. The finger itself sits half the
    # margin out (5 mm) and so reaches 3 mm further; the slab-dilated profile already widens
    # every feature by up to a cell on each side. (Ending the zone at the finger's outer face
    # lost the rim grasps of seed-7 hub-007004, 0.1 mm clear of its spokes in truth, which
    # reach and hold in the sim; the demo then had no grasp for that hub once.)
    gap = int(np.floor(min(p.pad_gap_m, p.opening_margin_m / 2) / cell + 1e-9))
    land = (gap, int(np.ceil(p.finger_thickness_m / cell)))
    occupied_top = np.nanmax(np.where(hm.occupied, hm.heights, np.nan)) \
        if hm.occupied.any() else 0.0
    if not np.isfinite(occupied_top):
        return []
    top_level = occupied_top - p.min_contact_m
    levels = np.arange(p.tip_clearance_m, top_level + 1e-9, p.level_step_m)
    if p.top_level and top_level >= p.tip_clearance_m and \
            (not len(levels) or top_level - levels[-1] > 1e-4):
        # the step grid can miss the one band where a tall feature is held: seed-7
        # hub-007001's boss (18.8 mm) between spokes (10.3 mm) needs tips at 13.3 mm and a
        # level up to 13.8 mm (its top less min_contact_m); the grid's 12 mm is too low for
        # the tips and 15 mm too high for the contact, so in 13 of 57 poses the hub had no
        # grasp at all
        levels = np.append(levels, top_level)
    oy, ox = np.nonzero(hm.occupied)
    object_radius = max(cell, float(np.max(np.hypot((ox - hm.half) * cell - centre_ab[0],
                                                    (oy - hm.half) * cell - centre_ab[1]))))
    slab_cells = int(round(p.finger_width_m / cell)) | 1
    row_step = max(1, int(round(p.line_step_m / cell)))
    size = hm.size
    base = np.dstack([np.where(np.isnan(hm.heights), -1.0, hm.heights),
                      ~np.isnan(hm.heights), hm.occupied]).astype(np.float32)
    found = []
    for c in _directions(hm, p.directions):
        perp = np.array([-c[1], c[0]])
        # resample the map in the (t = along c, s = across) frame centred on centre_ab: output
        # pixel (col j, row i) <- grid cell at centre + (j - half) c + (i - half) perp
        centre_px = np.asarray(centre_ab) / cell + hm.half
        M = np.zeros((2, 3))
        M[:, 0], M[:, 1] = c, perp
        M[:, 2] = centre_px - hm.half * (c + perp)
        rot = cv2.warpAffine(base, M, (size, size),
                             flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(-1.0, 0.0, 0.0, 0.0))
        half_slab = slab_cells // 2
        plane = np.ascontiguousarray(rot[:, :, 0])
        heights = cv2.dilate(plane, np.ones((slab_cells, 1), np.uint8),
                             borderType=cv2.BORDER_CONSTANT, borderValue=-1.0)
        # material the pads grip: the height held over `grip_cells` consecutive cells somewhere
        # under the finger width (min over grip_cells rows, then max over the slab's windows)
        grip_cells = int(np.ceil(slab_cells / 3))
        held = cv2.erode(plane, np.ones((grip_cells, 1), np.uint8), anchor=(0, 0),
                         borderType=cv2.BORDER_CONSTANT, borderValue=-1.0)
        grip = cv2.dilate(held, np.ones((slab_cells - grip_cells + 1, 1), np.uint8),
                          anchor=(0, half_slab), borderType=cv2.BORDER_CONSTANT,
                          borderValue=-1.0)
        heights = heights[::row_step].astype(float)
        grip = grip[::row_step].astype(float)
        known = cv2.blur(rot[:, :, 1], (1, slab_cells))[::row_step]
        occ = cv2.dilate(rot[:, :, 2], np.ones((slab_cells, 1), np.uint8))[::row_step] > 0.5
        s_rows = (np.arange(size) - hm.half)[::row_step] * cell
        t_cols = (np.arange(size) - hm.half) * cell
        found += _runs(heights, grip, known, occ, s_rows, t_cols, levels, land, c, perp,
                       np.asarray(centre_ab, dtype=float), p)
    return _rank(hm, found, p, np.asarray(centre_ab, dtype=float), object_radius)


def _runs(heights, grip, known, occ, s_rows, t_cols, levels, land, c, perp, centre_ab, p):
    """Valid runs of one direction's profiles, as (centre, c, width, tip, top, observed).

    land: (gap, finger) cells: the landing zone of a finger is `finger` cells wide and starts
    `gap` cells beside the run.
    heights: (lines, T) highest cell under the finger width (landing zones, collisions);
    grip: (lines, T) height held over a third of the finger width in one piece (the runs).
    """
    cell = t_cols[1] - t_cols[0]
    n_rows, n_cols = heights.shape
    gap, finger = land
    land = gap + finger
    # window statistics over [j, j + finger) of the padded rows (anchor at the window start)
    pad_h = np.pad(heights, ((0, 0), (land, land)), constant_values=-1.0).astype(np.float32)
    pad_k = np.pad(known, ((0, 0), (land, land)), constant_values=0.0).astype(np.float32)
    zone_max = cv2.dilate(pad_h, np.ones((1, finger), np.uint8), anchor=(0, 0),
                          borderType=cv2.BORDER_CONSTANT, borderValue=-1.0)
    zone_known = cv2.blur(pad_k, (finger, 1), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    occ_cum = np.concatenate([np.zeros((n_rows, 1)), np.cumsum(occ, axis=1)], axis=1)
    any_occ = occ.any(axis=1)
    first_occ = np.where(any_occ, np.argmax(occ, axis=1), n_cols)
    last_occ = np.where(any_occ, n_cols - 1 - np.argmax(occ[:, ::-1], axis=1), -1)
    flat = np.concatenate([grip, np.full((n_rows, 1), -1.0)], axis=1).ravel()
    # only the lines that cross the object can hold a run on it
    lines = np.nonzero(any_occ)[0]
    if not len(lines):
        return []
    above = np.zeros((len(levels), len(lines), n_cols + 2), dtype=bool)
    above[:, :, 1:-1] = grip[lines][None, :, :] > levels[:, None, None]
    # toggles of each padded line alternate start, end (the padding is False at both ends)
    toggles = np.flatnonzero(above[:, :, 1:] != above[:, :, :-1])
    lev_line, pos = np.divmod(toggles, n_cols + 1)
    if not len(pos):
        return []
    lev, rows = np.divmod(lev_line[0::2], len(lines))
    rows = lines[rows]
    t0, t1 = pos[0::2], pos[1::2] - 1                   # inclusive end
    width = (t1 - t0 + 1) * cell
    # left zone: original [t0 - land, t0 - gap) = padded [t0, t0 + finger); right zone:
    # original [t1 + 1 + gap, t1 + 1 + land) = padded from t1 + 1 + gap + land
    right = t1 + 1 + gap + land
    landing = np.maximum(np.maximum(zone_max[rows, t0], zone_max[rows, right]), 0.0)
    tip = landing + p.tip_clearance_m
    whole = (t0 <= first_occ[rows] + 1) & (t1 >= last_occ[rows] - 1)
    on_object = occ_cum[rows, t1 + 1] - occ_cum[rows, t0] > 0
    ok = (tip <= levels[lev] + 1e-9) & (width + p.opening_margin_m <= p.max_opening_m) & \
        ~whole & on_object
    if not ok.any():
        return []
    rows, t0, t1, width, tip = rows[ok], t0[ok], t1[ok], width[ok], tip[ok]
    starts = rows * (n_cols + 1) + t0
    top = np.maximum.reduceat(flat, np.stack([starts, starts + (t1 - t0) + 1],
                                             axis=1).ravel())[::2]
    good = top - tip >= p.min_contact_m
    if not good.any():
        return []
    rows, t0, t1, width, tip, top = (a[good] for a in (rows, t0, t1, width, tip, top))
    tc = (t_cols[t0] + t_cols[t1]) / 2
    centres = centre_ab + np.outer(tc, c) + np.outer(s_rows[rows], perp)
    right = t1 + 1 + gap + land
    observed = np.minimum(zone_known[rows, t0], zone_known[rows, right])
    return [(centres, np.broadcast_to(c, centres.shape), width, tip, top, observed)]


def _rank(hm: HeightMap, found, p: WallGraspParams, centre_ab: np.ndarray,
          object_radius: float) -> List[WallGrasp]:
    if not found:
        return []
    centres, dirs, width, tip, top, observed = (np.concatenate(x) for x in zip(*found))
    if not len(width):
        return []
    spare = 1.0 - (width + p.opening_margin_m) / p.max_opening_m
    contact = np.minimum(top, tip + p.finger_length_m) - tip
    centring = 1.0 - 0.4 * np.minimum(
        1.0, np.linalg.norm(centres - centre_ab, axis=1) / object_radius)
    # alignment: across a wall the narrowest crossing is the perpendicular one; compare each
    # run with the narrowest run found near it (any direction)
    bins = np.floor(centres / p.nms_distance_m).astype(int)
    bins -= bins.min(axis=0)
    key = bins[:, 0] * (bins[:, 1].max() + 1) + bins[:, 1]
    narrowest = np.full(key.max() + 1, np.inf)
    np.minimum.at(narrowest, key, width)
    alignment = np.clip(narrowest[key] / np.maximum(width, 1e-6), 0.0, 1.0)
    factor = 0.75 * (0.75 + 0.25 * observed) * centring * alignment * \
        np.minimum(1.0, 0.5 + contact / 0.03)
    order = np.argsort(-(0.5 + 0.5 * spare) * factor, kind='stable')
    kept: List[WallGrasp] = []
    palm_w, palm_l = p.palm_size_m
    cos_max = np.cos(np.radians(25))
    suppressed = np.zeros(len(order), dtype=bool)
    centres, dirs = centres[order], dirs[order]
    palm_rejects = 0
    for j, i in enumerate(order):
        if len(kept) >= p.max_candidates or palm_rejects > 50:
            break
        if suppressed[j]:
            continue
        centre, c = centres[j], dirs[j]
        # the palm (finger_length above the tips) must clear everything under it
        palm_max, _ = hm.max_in_rect(centre, c, (-palm_l / 2, palm_l / 2), palm_w / 2)
        if palm_max > tip[i] + p.finger_length_m - p.tip_clearance_m:
            palm_rejects += 1
            continue
        suppressed[j:] |= (np.hypot(*(centres[j:] - centre).T) < p.nms_distance_m) & \
            (np.abs(dirs[j:] @ c) > cos_max)
        kept.append(WallGrasp(centre.copy(), np.array(c), float(width[i]), float(tip[i]),
                              float(top[i]), float(observed[i]), float(factor[i]),
                              'wall' if width[i] <= 0.015 else 'raised'))
    return kept

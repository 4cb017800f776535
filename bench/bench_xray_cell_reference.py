"""Does the 'cnn+reference' registration hold for the parts the cell puts in the X-ray fixture?

The simulated cell (sim/factory.py load_simulation, the mujoco_sim node's parts) is built,
each part is set on the fixture seat (sim/factory.py place_in_fixture) at an offset and yaw
and left to settle, and the cell's station (sim/xray_station.py station_from_cell with the
mujoco_sim node's defaults: 1024², 0.2 mm, 110 kV, 2 mAs, the cell's SOD/SDD) takes its
radiograph. The part id then gives the model (xray/part_models.py) and the ReferenceDetector
registers it from the fixture's origin, as the xray_inspection node does with
`reference_model: true`. Per radiograph: fallback or not (and why), ECC correlation, position
error (mm) and yaw error (deg) of the registered pose against the station's pose, detect time
against the image-only 'cnn' on the same radiograph (the first radiograph of a process also
pays the spectrum's set-up in its first render).

Placements: in the cell the part keeps the world yaw it had on the table (the place pose
keeps the grasp's orientation, cell/places.py), i.e. its slot yaw within +-10 deg
(sim/parts.py plan_parts), and lands near the seat centre (grasp offset from the detection
centroid); `--placements cell` draws offsets within +-`--offset-mm` and the part's own table
yaw; `--placements sweep` sets offsets and yaws from a list to find where it stops holding.

    python bench/bench_xray_cell_reference.py --parts 6 --seeds 7,11 --placements cell \
        --offset-mm 15 --out bench/results/xray_cell_reference.json
    python bench/bench_xray_cell_reference.py --parts 3 --seeds 7 --placements sweep \
        --out bench/results/xray_cell_reference_sweep.json
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

SWEEP = ((0.0, 0.0, 0.0), (5.0, -5.0, 0.0), (15.0, 10.0, 0.0), (0.0, 0.0, 5.0),
         (0.0, 0.0, 10.0), (0.0, 0.0, 15.0), (0.0, 0.0, 20.0), (8.0, -6.0, -10.0),
         (0.0, 0.0, 30.0), (30.0, -30.0, 0.0), (0.0, 0.0, 45.0), (0.0, 0.0, 90.0),
         (0.0, 0.0, 180.0))


def placements(sim, mode: str, offset_mm: float, seed: int):
    """(part id, dx mm, dy mm, yaw deg) of every radiograph to take."""
    rng = np.random.default_rng([seed, 31])
    for part in sim.scene.parts:
        if mode == 'cell':
            dx, dy = rng.uniform(-offset_mm, offset_mm, 2)
            yield part.part_id, float(dx), float(dy), math.degrees(part.yaw)
        else:
            for dx, dy, yaw in SWEEP:
                yield part.part_id, dx, dy, yaw


def measure(sim, station, part_id: str, dx: float, dy: float, yaw_deg: float, base) -> dict:
    """Place, settle, acquire, register; one row of figures."""
    from humanoid_inspection.sim.factory import place_in_fixture
    from humanoid_inspection.xray.detector_reference import reference_base
    from humanoid_inspection.xray.part_models import reference_detector
    from humanoid_inspection.xray.simulator import pose_yaw
    home = sim.part_pose(part_id)
    place_in_fixture(sim, part_id, offset_xy=(dx / 1000.0, dy / 1000.0),
                     yaw=math.radians(yaw_deg))
    poses, _, _ = sim.part_states()
    acq = station.acquire(sim.part(part_id).casting, poses[part_id], seed=1)
    sim.set_part_pose(part_id, home[:3, 3], pose_yaw(home))      # back to its slot
    sim.step(int(0.1 / sim.timestep))
    rad = acq.radiograph
    detector = reference_detector(part_id, reference_base('cnn'), station.config,
                                  image_only=base)
    t = time.perf_counter()
    detector.detect(rad.image, rad.pixel_pitch_mm, rad.magnification)
    seconds = time.perf_counter() - t
    t = time.perf_counter()
    base.detect(rad.image, rad.pixel_pitch_mm, rad.magnification)   # the baseline: image-only
    base_seconds = time.perf_counter() - t
    truth = acq.pose_mm
    row = {'part_id': part_id, 'asked_mm_deg': [dx, dy, yaw_deg],
           'placed_mm_deg': [float(truth[0, 3]), float(truth[1, 3]),
                             math.degrees(pose_yaw(truth))],
           'fallback': detector.last_fallback, 'detect_s': seconds,
           'image_only_detect_s': base_seconds}
    est = detector.last_estimate
    if est is not None:
        turn = math.degrees(pose_yaw(est.pose) - pose_yaw(truth))
        row.update(correlation=float(est.correlation), scale=float(est.scale),
                   registration_s=float(est.seconds),
                   position_error_mm=float(np.hypot(*(est.pose[:2, 3] - truth[:2, 3]))),
                   yaw_error_deg=float((turn + 180.0) % 360.0 - 180.0))
    return row


def main(argv=None) -> int:
    """Run the placements; print one line per radiograph and a summary; save the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--parts', type=int, default=6)
    ap.add_argument('--seeds', default='7', help='comma-separated seeds of the cell parts')
    ap.add_argument('--placements', choices=('cell', 'sweep'), default='cell')
    ap.add_argument('--offset-mm', type=float, default=10.0)
    ap.add_argument('--out', default=None, help='JSON file to write (none by default)')
    args = ap.parse_args(argv)
    from humanoid_inspection.sim.factory import load_simulation
    from humanoid_inspection.sim.scene import SceneOptions
    from humanoid_inspection.sim.xray_station import station_from_cell
    from humanoid_inspection.xray.pipeline import get_detector
    base = get_detector('cnn')
    rows = []
    print(f'{"part":>16} {"placed x,y mm, yaw deg":>24} {"corr":>8} {"pos err mm":>10} '
          f'{"yaw err":>8} {"s":>6} {"cnn s":>6}  fallback')
    for seed in (int(s) for s in args.seeds.split(',')):
        sim = load_simulation(num_parts=args.parts, seed=seed, options=SceneOptions())
        station = station_from_cell(sim.scene.cell)
        for part_id, dx, dy, yaw in placements(sim, args.placements, args.offset_mm, seed):
            row = measure(sim, station, part_id, dx, dy, yaw, base)
            rows.append(row)
            px, py, pyaw = row['placed_mm_deg']
            print(f'{part_id:>16} {px:8.2f},{py:7.2f},{pyaw:7.2f} '
                  f'{row.get("correlation", math.nan):8.5f} '
                  f'{row.get("position_error_mm", math.nan):10.4f} '
                  f'{row.get("yaw_error_deg", math.nan):8.4f} {row["detect_s"]:6.2f} '
                  f'{row["image_only_detect_s"]:6.2f}  '
                  f'{row["fallback"] or "-"}', flush=True)
    used = [r for r in rows if r['fallback'] is None]
    summary = {'radiographs': len(rows), 'reference_used': len(used),
               'fallbacks': len(rows) - len(used),
               'max_position_error_mm_used': max((r['position_error_mm'] for r in used),
                                                 default=None),
               'max_yaw_error_deg_used': max((abs(r['yaw_error_deg']) for r in used),
                                             default=None),
               'median_detect_s': float(np.median([r['detect_s'] for r in rows])),
               'max_detect_s': float(np.max([r['detect_s'] for r in rows])),
               'median_image_only_detect_s': float(np.median(
                   [r['image_only_detect_s'] for r in rows])),
               'load_average': list(os.getloadavg())}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({
            'command': 'python bench/bench_xray_cell_reference.py ' + ' '.join(
                sys.argv[1:] if argv is None else argv),
            'summary': summary, 'rows': rows}, indent=1))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

"""How fast `xray-train` makes its training set with one and with several worker processes.

The training set's radiographs (simulated, and with --reference registered to their part's
model) are made by `train_cli.simulate_training_set`; `--workers N` makes them in N processes.
This bench times the same set with 1 worker (the baseline) and with each count of
`--workers`, in one run, and checks that every count gives the same set (each radiograph is
seeded on its own). Figures: seconds per radiograph and the speed-up, printed and saved.

    python bench/bench_xray_training_set.py --images 24 --reference \
        --out bench/results/xray_training_set.json
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    """Run the benchmark; print the figures and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--images', type=int, default=24)
    ap.add_argument('--size', type=int, default=1024)
    ap.add_argument('--workers', default='2', help='comma-separated counts besides 1')
    ap.add_argument('--reference', action='store_true',
                    help="with the cell's errors and the registration (xray-train --reference)")
    ap.add_argument('--out', default='bench/results/xray_training_set.json')
    args = ap.parse_args(argv)
    from humanoid_inspection.xray.acquisition_errors import AcquisitionErrors
    from humanoid_inspection.xray.train_cli import simulate_training_set
    errors = AcquisitionErrors(1.0, 1.0, 0.02, 0.003) if args.reference else None
    counts = [1] + [int(w) for w in args.workers.split(',') if w.strip()]
    rows, first = [], None
    for workers in counts:
        t = time.perf_counter()
        data = simulate_training_set(args.images, 0, args.size, 1.0, progress=False,
                                     negative_fraction=1.0, reference_errors=errors,
                                     workers=workers)
        seconds = time.perf_counter() - t
        first = first or data
        same = all(np.array_equal(getattr(first, k), getattr(data, k)) for k in data._fields)
        rows.append({'workers': workers, 'seconds': round(seconds, 2),
                     'seconds_per_radiograph': round(seconds / args.images, 3),
                     'speedup': round(rows[0]['seconds'] / seconds, 2) if rows else 1.0,
                     'candidates': int(len(data.labels)), 'same_set_as_1': bool(same)})
        print(f'workers {workers}: {seconds:6.1f} s, {seconds / args.images:.2f} s per '
              f'radiograph, speed-up {rows[-1]["speedup"]:.2f}, same set: {same}', flush=True)
    result = {'command': 'python bench/bench_xray_training_set.py ' + ' '.join(
                  argv if argv is not None else sys.argv[1:]),
              'images': args.images, 'size_px': args.size, 'reference': args.reference,
              'cpus': os.cpu_count(), 'load_average_1min': round(os.getloadavg()[0], 2),
              'rows': rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f'wrote {out}')
    return 0 if all(r['same_set_as_1'] for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())

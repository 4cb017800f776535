"""Command-line options every X-ray trainer shares (`xray-train`, `--model seg`, `--model unet`).

Each trainer builds its parser with `training_parser` (weights file and training set), adds
its own model options, then `add_run_options` (seed, threads, cache, quiet); `main` checks its
counts with `first_not_positive`. No ROS imports.
"""

import argparse
from typing import Iterable, Optional

TRAIN_SEED_BASE = 0       # training part seeds start here (xray-eval's held-out set at 100000)


def training_parser(prog: str, description: str, weights, images: int,
                    defect_probability: float) -> argparse.ArgumentParser:
    """A parser with the weights file (--out) and the training set's options (--images,
    --seed-base, --size, --defect-probability), with the trainer's own defaults."""
    ap = argparse.ArgumentParser(prog=prog, description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default=str(weights), help='weights file (.pt)')
    ap.add_argument('--images', type=int, default=images, help='simulated training radiographs')
    ap.add_argument('--seed-base', type=int, default=TRAIN_SEED_BASE,
                    help='first part seed of the training set')
    ap.add_argument('--size', type=int, default=1024, help='detector side (px)')
    ap.add_argument('--defect-probability', type=float, default=defect_probability)
    return ap


def add_run_options(ap: argparse.ArgumentParser, threads: int, threads_help: str = None,
                    cached: str = 'simulated training set') -> None:
    """--seed, --threads (torch threads while training), --cache (of the `cached` data,
    never what the weights depend on) and --quiet."""
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=threads, help=threads_help)
    ap.add_argument('--cache', default=None,
                    help=f'optional .npz cache of the {cached} (keep it outside the '
                    'repository); the weights do not depend on it')
    ap.add_argument('--quiet', action='store_true')


def first_not_positive(args: argparse.Namespace, names: Iterable[str]) -> Optional[str]:
    """The first of the named options (attribute names) that is not > 0, as its flag
    ('--refine-width'), or None when all are."""
    for name in names:
        if getattr(args, name) <= 0:
            return '--' + name.replace('_', '-')
    return None

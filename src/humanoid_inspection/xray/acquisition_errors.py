"""How a synthetic acquisition strays from the nominal one, the way a real cell's do.

`AcquisitionErrors` draws, per part seed, the part's offset in the fixture, the tube voltage
and the casting's size against its model; `radiograph()` simulates the strayed acquisition.
Used by `xray-eval` (the "strayed" sets) and by `xray-train --reference` (the residuals
against the part's model that the network learns from must carry the registration's
leftovers of a real cell, not those of a perfect one). No ROS imports.
"""

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class AcquisitionErrors:
    """How far each synthetic acquisition strays from the nominal one (uniform draws, seeded
    by the part seed): the part's offset in the fixture (x and y within +-mm, rotation about
    the beam axis within +-deg), the tube voltage (within +- the fraction kv) and the
    casting's size relative to its model (within +- the fraction scale). All zero: every
    part as modelled, at the fixture's origin, at the nominal kV (the held-out set of the
    figures)."""

    mm: float = 0.0
    deg: float = 0.0
    kv: float = 0.0
    scale: float = 0.0

    def validate(self) -> None:
        """Raises ValueError for negative or absurd ranges."""
        if not (0.0 <= self.mm <= 20.0 and 0.0 <= self.deg <= 45.0 and 0.0 <= self.kv <= 0.2
                and 0.0 <= self.scale <= 0.05):
            raise ValueError('acquisition errors must lie in 0..20 mm, 0..45 deg, 0..0.2 of '
                             f'the kV and 0..0.05 of the size, got {self.mm} mm, {self.deg} '
                             f'deg, {self.kv}, {self.scale}')

    def draw(self, seed: int, config):
        """(pose 4x4, acquisition config, part scale) of the part with this seed."""
        from humanoid_inspection.xray.simulator import resting_pose
        rng = np.random.default_rng([int(seed), 11])
        dx, dy = rng.uniform(-self.mm, self.mm, 2)
        angle = np.radians(rng.uniform(-self.deg, self.deg))
        kv_scale = 1.0 + rng.uniform(-self.kv, self.kv)
        part_scale = 1.0 + rng.uniform(-self.scale, self.scale)
        return resting_pose(dx, dy, angle), replace(config, kv=config.kv * kv_scale), part_scale

    def radiograph(self, part, config, seed: int):
        """(Radiograph, pose, part scale): `part` (its model) cast `scale` times its size and
        X-rayed at the drawn pose and kV with the nominal `config` otherwise; the
        simulator's noise is seeded with `seed`."""
        from humanoid_inspection.xray.phantoms import scaled_part
        from humanoid_inspection.xray.simulator import simulate_radiograph
        pose, acquisition, part_scale = self.draw(seed, config)
        cast = part if part_scale == 1.0 else scaled_part(part, part_scale)
        return simulate_radiograph(cast, acquisition, pose=pose, seed=seed), pose, part_scale


def add_error_options(ap, scope: str) -> None:
    """--pose-error-mm, --pose-error-deg, --kv-error and --scale-error (0: none) on the
    argparse parser `ap`; `scope` opens each help ('synthetic', 'with --reference')."""
    ap.add_argument('--pose-error-mm', type=float, default=0.0,
                    help=f'{scope}: each part lies up to this far (x and y, mm) from the '
                    "fixture's origin (uniform, seeded by the part)")
    ap.add_argument('--pose-error-deg', type=float, default=0.0,
                    help=f'{scope}: and is turned up to this far about the beam axis')
    ap.add_argument('--kv-error', type=float, default=0.0,
                    help=f'{scope}: the tube voltage strays up to this fraction from the '
                    'nominal one (0.02: +-2 %%)')
    ap.add_argument('--scale-error', type=float, default=0.0,
                    help=f"{scope}: each casting's size strays up to this fraction from "
                    "its model's (0.003: +-0.3 %%, die-casting shrinkage)")


def errors_from_args(args) -> AcquisitionErrors:
    """The AcquisitionErrors of options added by add_error_options (not validated)."""
    return AcquisitionErrors(args.pose_error_mm, args.pose_error_deg, args.kv_error,
                             args.scale_error)

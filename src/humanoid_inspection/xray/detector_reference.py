"""A front-end detector run against a part model's registered reference (reference.py).

`ReferenceDetector(base, reference)` inspects radiographs of one part whose model is known:
the base detector's front end is computed as usual, the part's pose is found by rendering and
registering its sound model, and the base detector then runs on the front end whose
background is that reference (reference.front_end_with_reference). The base detector must
work on a front end (`params`, `detect_on_front_end`): 'cnn' does. `reference_base('cnn')`
is the 'cnn' trained against references (REFERENCE_WEIGHTS), the base of 'cnn+reference'.

A reference that does not fit is worse than none: where the registration fails or its ECC
correlation stays below `trust_correlation` (a part that is not what its model says, or
that the 2-D registration cannot follow), the `image_only` detector (default: the base)
runs on the image-only front end instead, and `last_fallback` says why (None when the
reference was used).

No ROS imports.
"""

import threading
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from humanoid_inspection.xray.candidates import FrontEnd, cv_threads, radiograph_front_end
from humanoid_inspection.xray.detector import CancelCheck, DetectedDefect
from humanoid_inspection.xray.reference import (
    PartReference, PoseEstimate, ReferenceParams, check_same_size, estimate_pose,
    front_end_with_reference)


# PatchNet and box refiner trained against registered references (xray-train --reference,
# docs/xray_inspection.md "Eighth round"; with blob candidates since the "Eleventh round"):
# the base of 'cnn+reference'
REFERENCE_WEIGHTS = Path(__file__).resolve().parent / 'models' / 'adr_patchnet_reference.pt'
# whether that network's detections drop the kinds their polarity rules out
# (detector_cnn.polarity_consistent). Off: on the 90 strayed validation radiographs (seeds
# 50000.., 1 mm / 1 deg / 2 % kV / 0.3 % size) it lowered AP50 0.683 -> 0.680, AP50 >= 1 mm
# 0.855 -> 0.850, AP50:95 0.473 -> 0.459 and per-class mAP50 0.720 -> 0.697 at the same
# recall and false alarms (27 Nov); the image-only network gains from it
REFERENCE_POLARITY_RULE = False
# its lowest candidate |z| (the threshold it was trained with). Chosen on validation (90
# strayed radiographs, 3.5 / 3.0 / 2.5: AP50 0.643 / 0.652 / 0.668, recall >= 1 mm at <= 0.2
# false alarms per image 0.847 / 0.847 / 0.856)
REFERENCE_MIN_PEAK = 2.5
_BASES: Dict[str, object] = {}
_BASES_LOCK = threading.Lock()
# every right registration measured so far ends at >= 0.9989 (240 strayed radiographs: >=
# 0.9995; the cell's placements, bench/bench_xray_cell_reference.py: >= 0.99889); a housing
# turned 180 deg ends at 0.9914-0.9917, registered upside down (37 false alarms)
TRUST_CORRELATION = 0.995
# a candidate this many noise units off the registered reference is a defect whatever the
# base detector's network says (detector_cnn.SURE_SCORE: 190 of 192 such candidates were).
# Chosen on validation (90 strayed radiographs: recall >= 1 mm at <= 0.2 false alarms per
# image 0.780 -> 0.805), then held-out 120 strayed: 0.847 -> 0.870, false alarms at score
# 0.5 0.23 -> 0.25 per image
SURE_Z = 8.0


def has_front_end(detector) -> bool:
    """Whether `detector` can run on a given front end (`params`, `detect_on_front_end`)."""
    return hasattr(detector, 'detect_on_front_end') and hasattr(detector, 'params')


def require_front_end(detector) -> None:
    """Raises ValueError when `detector` cannot run on a reference (has_front_end)."""
    if not has_front_end(detector):
        raise ValueError(f"detector '{getattr(detector, 'name', detector)}' cannot run on a "
                         "reference: it has no front end ('cnn' has)")


class ReferenceDetector:
    """Detections of `base` on the residual against the part's rendered reference.

    Args:
        base: a detector with `params` (FrontEndParams) and `detect_on_front_end`.
        reference: the PartReference of the inspected part.
        initial_pose: 4x4 pose the part is expected at (None: the fixture's origin).
        params: ReferenceParams.
        trust_correlation: the lowest ECC correlation of the last registration at which the
            reference is used.
        fallback: run `image_only` on the image-only front end where the reference is
            not used (True), or raise ValueError (False).
        sure_z: candidates with |z| >= this against the reference are reported even when
            the base detector's network calls them background (None: never).
        image_only: the detector (with a front end) that inspects a radiograph the
            reference is not used for (None: `base`); where `base` was trained against
            references (reference_base), the image-only 'cnn' is the one for that.

    Attributes:
        last_estimate: the PoseEstimate of the latest radiograph (None before the first or
            when the registration failed).
        last_front_end: the front end it ran on (background = the reference), for pictures.
        last_fallback: why the latest radiograph was inspected without the reference, or None.
    """

    def __init__(self, base, reference: PartReference, initial_pose: Optional[np.ndarray]
                 = None, params: ReferenceParams = ReferenceParams(),
                 trust_correlation: float = TRUST_CORRELATION, fallback: bool = True,
                 sure_z: Optional[float] = SURE_Z, image_only=None):
        image_only = base if image_only is None else image_only
        require_front_end(base)
        require_front_end(image_only)
        self.image_only = image_only
        params.validate()
        if not params.min_correlation <= trust_correlation < 1.0:
            raise ValueError(f'trust_correlation must lie in [{params.min_correlation}, 1), '
                             f'got {trust_correlation}')
        if sure_z is not None and not sure_z > base.params.peak_threshold:
            raise ValueError(f'sure_z must exceed the candidate threshold '
                             f'{base.params.peak_threshold}, got {sure_z}')
        self.sure_z = None if sure_z is None else float(sure_z)
        self.trust_correlation = float(trust_correlation)
        self.fallback = bool(fallback)
        self.last_fallback: Optional[str] = None
        self.base = base
        self.reference = reference
        self.initial_pose = initial_pose
        self.params = params
        self.name = f'{base.name}+reference'
        self.last_estimate: Optional[PoseEstimate] = None
        self.last_front_end: Optional[FrontEnd] = None

    def detect(self, image: np.ndarray, pixel_pitch_mm: float, magnification: float,
               should_cancel: CancelCheck = None) -> List[DetectedDefect]:
        """Find defects (the contract of the other detectors' detect).

        Raises:
            ValueError: bad image or geometry, a radiograph whose size is not the
                reference's; without fallback also a failed or untrusted registration.
            InspectionCancelled: cancelled.
        """
        self.last_estimate = self.last_front_end = self.last_fallback = None
        with cv_threads():
            fe, mmpp = radiograph_front_end(image, pixel_pitch_mm, magnification,
                                            self.base.params, should_cancel)
            referenced, self.last_estimate, why = reference_front_end(
                fe, self.reference, self.initial_pose, self.params, self.trust_correlation,
                should_cancel)
            if referenced is None:
                if not self.fallback:
                    raise ValueError(why)
                self.last_fallback = why
                return self.image_only.detect_on_front_end(fe, mmpp, should_cancel)
            self.last_front_end = referenced
            return self.base.detect_on_front_end(referenced, mmpp, should_cancel,
                                                 sure_z=self.sure_z)


def account_registration(detector: ReferenceDetector, outcome) -> Optional[str]:
    """After `outcome` (pipeline.InspectionOutcome) came from `detector`: the registration's
    time moved out of 'detect' into a 'register' stage just before it, and, where the model
    was not used, the outcome named after the image-only detector that ran.

    Returns:
        Why the model was not used ('reference not used: ...'), or None when it was.
    """
    est = detector.last_estimate
    times = outcome.stage_times_s
    if est is not None and 'detect' in times:
        registered = min(float(est.seconds), times['detect'])
        order = list(times)
        order.insert(order.index('detect'), 'register')
        split = dict(times, register=registered, detect=times['detect'] - registered)
        outcome.stage_times_s = {k: split[k] for k in order}
    if detector.last_fallback is None:
        return None
    outcome.detector = detector.image_only.name
    return f'reference not used: {detector.last_fallback}'


def reference_front_end(fe: FrontEnd, reference: PartReference,
                        initial_pose: Optional[np.ndarray] = None,
                        params: ReferenceParams = ReferenceParams(),
                        trust_correlation: float = TRUST_CORRELATION,
                        should_cancel: CancelCheck = None
                        ) -> Tuple[Optional[FrontEnd], Optional[PoseEstimate], Optional[str]]:
    """(front end against the registered reference, its PoseEstimate, None), or where the
    reference must not be used (None, the estimate or None, why): the registration failed
    or its last ECC correlation is below `trust_correlation`. What ReferenceDetector
    inspects, and what `xray-train --reference` learns from.

    Raises:
        ValueError: the radiograph's size is not the reference's (an input error).
        InspectionCancelled: cancelled.
    """
    check_same_size(fe, reference)
    try:
        estimate = estimate_pose(fe, reference, initial_pose, params, should_cancel)
    except ValueError as exc:
        return None, None, str(exc)
    # rounds = 1: no registration, the pose given is trusted as it is
    if params.rounds > 1 and not estimate.correlation >= trust_correlation:
        return None, estimate, (f'the registered reference matches with ECC correlation '
                                f'{estimate.correlation:.4f} only (trusted from '
                                f'{trust_correlation})')
    return front_end_with_reference(fe, estimate.log_reference, params), estimate, None


def reference_cnn(weights=None, min_peak=None):
    """A 'cnn' detector to run against a reference: the reference-trained network
    (REFERENCE_WEIGHTS) with its own candidate threshold (REFERENCE_MIN_PEAK) and polarity
    rule (REFERENCE_POLARITY_RULE), or, given other weights (e.g. the image-only ones), those
    with detector_cnn's defaults. min_peak overrides the threshold either way.

    Raises:
        FileNotFoundError: the weights are missing.
    """
    from humanoid_inspection.xray.detector_cnn import MIN_PEAK, CnnDetector
    if weights is None:
        return CnnDetector(weights=REFERENCE_WEIGHTS,
                           min_peak=REFERENCE_MIN_PEAK if min_peak is None else min_peak,
                           polarity_rule=REFERENCE_POLARITY_RULE)
    return CnnDetector(weights=weights, min_peak=MIN_PEAK if min_peak is None else min_peak)


def reference_base(name: str = 'default'):
    """The base detector '<name>+reference' runs on: for 'cnn' (and 'default', which is
    'cnn') the PatchNet trained against registered references (REFERENCE_WEIGHTS) with its
    candidate threshold REFERENCE_MIN_PEAK, built once per process; any other name is the
    pipeline's detector of that name (ReferenceDetector refuses one without a front end).

    Raises:
        ValueError: an unknown detector name. FileNotFoundError: the weights are missing.
    """
    from humanoid_inspection.xray.detector import DEFAULT_DETECTOR
    key = DEFAULT_DETECTOR if name in ('', 'default') else name
    if key != 'cnn':
        from humanoid_inspection.xray.pipeline import get_detector
        return get_detector(key)
    with _BASES_LOCK:
        if key not in _BASES:
            _BASES[key] = reference_cnn()
        return _BASES[key]

"""A front-end detector run against a part model's registered reference (reference.py).

`ReferenceDetector(base, reference)` inspects radiographs of one part whose model is known:
the base detector's front end is computed as usual, the part's pose is found by rendering and
registering its sound model, and the base detector then runs on the front end whose
background is that reference (reference.front_end_with_reference). The base detector must
work on a front end (`params`, `detect_on_front_end`): 'cnn' does.

No ROS imports.
"""

from typing import List, Optional

import numpy as np

from humanoid_inspection.xray.candidates import FrontEnd, cv_threads, radiograph_front_end
from humanoid_inspection.xray.detector import CancelCheck, DetectedDefect
from humanoid_inspection.xray.reference import (
    PartReference, PoseEstimate, ReferenceParams, estimate_pose, front_end_with_reference)


class ReferenceDetector:
    """Detections of `base` on the residual against the part's rendered reference.

    Args:
        base: a detector with `params` (FrontEndParams) and `detect_on_front_end`.
        reference: the PartReference of the inspected part.
        initial_pose: 4x4 pose the part is expected at (None: the fixture's origin).
        params: ReferenceParams.

    Attributes:
        last_estimate: the PoseEstimate of the latest radiograph (None before the first).
        last_front_end: the front end it ran on (background = the reference), for pictures.
    """

    def __init__(self, base, reference: PartReference, initial_pose: Optional[np.ndarray]
                 = None, params: ReferenceParams = ReferenceParams()):
        if not hasattr(base, 'detect_on_front_end') or not hasattr(base, 'params'):
            raise ValueError(f"detector '{getattr(base, 'name', base)}' cannot run on a "
                             "reference: it has no front end ('cnn' has)")
        params.validate()
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
                reference's, or a failed registration. InspectionCancelled: cancelled.
        """
        with cv_threads():
            fe, mmpp = radiograph_front_end(image, pixel_pitch_mm, magnification,
                                            self.base.params, should_cancel)
            estimate = estimate_pose(fe, self.reference, self.initial_pose, self.params,
                                     should_cancel)
            self.last_estimate = estimate
            fe = front_end_with_reference(fe, estimate.log_reference, self.params)
            self.last_front_end = fe
            return self.base.detect_on_front_end(fe, mmpp, should_cancel)

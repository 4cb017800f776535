"""Screen image-only, confirm against the part's model: what the xray_inspection node does
with `reference_policy: confirm`.

The image-only detector ('cnn', ~0.1 s) inspects every radiograph. Only a part it does not
ACCEPT is inspected again against its registered model ('cnn+reference', ~1 s), and that
verdict stands. Most parts of a production line are good, so most pay only the fast pass.
The cascade can only change a REJECT or REVIEW of the screen, never an ACCEPT: it removes
false rejects (part structure the image-only network calls a defect, which the model
cancels) and cannot catch an escape of the screen. Measured in docs/xray_inspection.md.
No ROS imports.
"""

from typing import Callable, Optional, Tuple

from humanoid_inspection.xray.pipeline import InspectionOutcome, inspect_radiograph

SCREEN_STAGE = 'screen'      # the image-only pass, in the stage times of a confirmed outcome
POLICIES = ('always', 'confirm')


def inspect_confirmed(image, pixel_pitch_mm: float, magnification: float, family: str,
                      screen, confirmer: Callable[[], Optional[object]], table=None,
                      should_cancel=None, progress=None
                      ) -> Tuple[InspectionOutcome, Optional[InspectionOutcome]]:
    """Inspect with `screen`; where its verdict is not ACCEPT, again with `confirmer()`.

    Args:
        screen: the image-only detector (a name or a detector object).
        confirmer: gives the detector against the part's model, or None when the part has
            none (the screen's outcome then stands); called only when needed.
        table, should_cancel: as inspect_radiograph.
        progress: as inspect_radiograph's, the screen reporting 0..0.5 and the confirmation
            0.5..1.

    Returns:
        (final outcome, the screen's outcome when the confirmation ran, else None). A
        confirmed outcome's stage times start with the screen's validation and its detection
        and grading as one SCREEN_STAGE; its total time includes the screen's.

    Raises:
        ValueError: bad input (inspect_radiograph's reasons). InspectionCancelled: cancelled.
    """
    def scaled(offset):                   # one progress from 0 to 1 over both passes
        return None if progress is None else (lambda s, f: progress(s, offset + 0.5 * f))
    first = inspect_radiograph(image, pixel_pitch_mm, magnification, family, detector=screen,
                               table=table, should_cancel=should_cancel, progress=scaled(0.0))
    if first.verdict == 'ACCEPT':
        return first, None
    detector = confirmer()
    if detector is None:
        return first, None
    second = inspect_radiograph(image, pixel_pitch_mm, magnification, family,
                                detector=detector, table=table, should_cancel=should_cancel,
                                progress=scaled(0.5))
    screened = {k: v for k, v in first.stage_times_s.items() if k != 'validate'}
    times = {}
    if 'validate' in first.stage_times_s:
        times['validate'] = first.stage_times_s['validate']
    times[SCREEN_STAGE] = sum(screened.values())
    times.update({k: v for k, v in second.stage_times_s.items() if k != 'validate'})
    second.stage_times_s = times
    second.total_time_s = first.total_time_s + second.total_time_s
    return second, first

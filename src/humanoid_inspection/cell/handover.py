"""Taking a part on again from the table hand-over spot: look, grasp, and look again after a
grasp that closed on nothing.

When one arm cannot carry a part from the X-ray fixture to its bin, the cell sets the part
on the table spot it came from and the other arm takes it from there (cell_manager_node's
``move_from_fixture``). The part rarely lies exactly where it was put, and a grasp that misses
can push it further. So every grasp here follows a fresh look at the spot (perception and
affordance), the hand is taken away from the part before the next look (parking), and the
grasps that missed are tried last. Pure logic against three callables; no ROS imports.
"""

from dataclasses import dataclass, field, replace
from typing import Callable, List, Sequence

import numpy as np

from humanoid_inspection.cell.cycle import Grasp, MoveOutcome

# a candidate within this distance (m) of a grasp point that missed counts as that grasp again
SAME_GRASP_M = 0.01


@dataclass
class SpotLook:
    """What one look at the hand-over spot gave.

    Attributes:
        candidates: grasps on the part, best first; empty when it was not found or had none.
        why: why there is no candidate ('' when there are some).
    """

    candidates: List[Grasp] = field(default_factory=list)
    why: str = ''


def untried_first(candidates: Sequence[Grasp], missed: Sequence[Sequence[float]],
                  same_m: float = SAME_GRASP_M) -> List[Grasp]:
    """The candidates with those within `same_m` of a grasp point in `missed` moved to the
    end (their order otherwise kept): a grasp that closed on nothing is tried again only
    when nothing else is left."""
    def missed_before(g: Grasp) -> bool:
        p = np.asarray(g.position, float)
        return any(float(np.linalg.norm(p - np.asarray(m, float))) <= same_m for m in missed)
    fresh = [g for g in candidates if not missed_before(g)]
    return fresh + [g for g in candidates if missed_before(g)]


def take_from_spot(look: Callable[[], SpotLook], attempt: Callable[[List[Grasp]], MoveOutcome],
                   park: Callable[[str], str], blind: Grasp, max_attempts: int,
                   log: Callable[[str], None] = lambda _msg: None) -> MoveOutcome:
    """Grasp the part on the spot and carry it on, with up to `max_attempts` grasps.

    Args:
        look: perceives the spot; the grasps it gives are ranked as the caller wants them.
        attempt: one pick_place over the candidates (the planner takes the first one it can
            plan; the outcome's grasp_index says which).
        park: takes the arm named by the outcome away from the part; returns '' or why not.
        blind: the grasp where the part was put, used when a look finds no candidate (once:
            a blind grasp that missed is not repeated blind).
        max_attempts: grasps in all (each after its own look).
        log: where the reasons of the retries go.

    Returns:
        The last MoveOutcome, its planning_time_s summed over the attempts. It stops at the
        first success and at any error but 'grasp_failed' (a plan or reach failure does not
        get better by looking again).
    """
    if int(max_attempts) < 1:
        raise ValueError(f'max_attempts must be at least 1, got {max_attempts}')
    out = MoveOutcome(False, 'grasp_failed', 'no candidate')
    planning = 0.0
    missed: List[tuple] = []
    blind_tried = False
    for number in range(1, int(max_attempts) + 1):
        seen = look()
        candidates = untried_first(seen.candidates, missed)
        if not candidates:
            if blind_tried:
                log(f'grasp {number}: part not found again on the hand-over spot ({seen.why}); '
                    'the blind grasp already missed, giving up')
                break
            log(f'grasp {number}: part not found again on the hand-over spot ({seen.why}); '
                'grasping where it was put')
            candidates, blind_tried = [blind], True
        out = attempt(candidates)
        planning += out.planning_time_s
        if out.success or out.error != 'grasp_failed':
            break
        used = candidates[out.grasp_index] if 0 <= out.grasp_index < len(candidates) \
            else candidates[0]
        missed.append(tuple(used.position))
        if number < int(max_attempts):
            why = park(out.arm)
            log(f'grasp {number} closed on nothing ({out.message[:120]}); looking again'
                + (f' ({out.arm} arm not parked: {why})' if why else ''))
    return replace(out, planning_time_s=planning)

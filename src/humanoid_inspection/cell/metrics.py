"""Metrics of the inspection cell computed from part records (no ROS).

Definitions (docs/cell.md repeats them):
- truth label of a part: ``defective`` when the simulation's ground truth says the part must be
  rejected (``expected_verdict == 'REJECT'``, else ``defective is True``), ``good`` otherwise;
  parts without ground truth are left out of the verdict metrics;
- verdict accuracy: (good parts ACCEPTed + defective parts REJECTed) / parts with a verdict and a
  truth label; a REVIEW verdict counts as not correct (but is neither an escape nor a false
  reject);
- escape rate: defective parts ACCEPTed / defective parts with a verdict;
- false-reject rate: good parts REJECTed / good parts with a verdict;
- grasp success rate: picks that put the part in the fixture / pick_place attempts from the table;
- cycle time: simulation time from choosing a part to its end (sorted parts only);
- compute time per stage: the ``compute_*_s`` stage times of a record (perception, affordance,
  planning, X-ray inspection); their sum per part is checked against the 2 s factory anchor.
"""

from typing import Dict, Iterable, List, Optional

import numpy as np

from humanoid_inspection.cell.records import PartRecord

COMPUTE_STAGES = ('perception', 'affordance', 'planning', 'xray_inspection')
WALL_STAGES = ('perceive', 'affordance', 'pick_to_fixture', 'xray', 'sort')
VERDICT_COLUMNS = ('ACCEPT', 'REJECT', 'REVIEW', 'none')
COMPUTE_BUDGET_S = 2.0


def truth_label(ground_truth: Optional[dict]) -> Optional[str]:
    """'good', 'defective' or None (unknown) from a ground-truth dict."""
    if not ground_truth:
        return None
    expected = ground_truth.get('expected_verdict')
    if expected in ('ACCEPT', 'REJECT'):
        return 'defective' if expected == 'REJECT' else 'good'
    if 'defective' in ground_truth:
        return 'defective' if ground_truth['defective'] else 'good'
    return None


def _stats(values: List[float]) -> dict:
    if not values:
        return {'n': 0, 'mean': None, 'median': None, 'p95': None, 'max': None}
    arr = np.asarray(values, dtype=float)
    return {'n': int(arr.size), 'mean': float(arr.mean()), 'median': float(np.median(arr)),
            'p95': float(np.percentile(arr, 95)), 'max': float(arr.max())}


def _ratio(num: int, den: int) -> Optional[float]:
    return None if den == 0 else num / den


def confusion(records: Iterable[PartRecord]) -> Dict[str, Dict[str, int]]:
    """{truth label: {verdict or 'none': count}} over records with a truth label."""
    table = {label: {v: 0 for v in VERDICT_COLUMNS} for label in ('good', 'defective')}
    for rec in records:
        label = truth_label(rec.ground_truth)
        if label is not None:
            table[label][rec.verdict or 'none'] += 1
    return table


def compute_total_s(rec: PartRecord) -> float:
    """Sum of the compute stages of one record (s)."""
    return float(sum(rec.stage_times.get(f'compute_{s}_s', 0.0) for s in COMPUTE_STAGES))


def cell_metrics(records: List[PartRecord]) -> dict:
    """All metrics of the cell for a list of records (JSON-serialisable)."""
    records = list(records)
    outcomes: Dict[str, int] = {}
    for rec in records:
        key = rec.outcome or f'unfinished:{rec.state}'
        outcomes[key] = outcomes.get(key, 0) + 1
    table = confusion(records)
    good, bad = table['good'], table['defective']
    judged_good = good['ACCEPT'] + good['REJECT'] + good['REVIEW']
    judged_bad = bad['ACCEPT'] + bad['REJECT'] + bad['REVIEW']
    correct = good['ACCEPT'] + bad['REJECT']
    attempts = sum(int(r.grasp_attempts or 0) for r in records)
    placed = sum(1 for r in records if r.arm)
    sorted_recs = [r for r in records if r.state == 'sorted' and r.cycle_time_s is not None]
    compute = {s: _stats([r.stage_times[f'compute_{s}_s'] for r in records
                          if f'compute_{s}_s' in r.stage_times]) for s in COMPUTE_STAGES}
    wall = {s: _stats([r.stage_times[f'wall_{s}_s'] for r in records
                       if f'wall_{s}_s' in r.stage_times]) for s in WALL_STAGES}
    inspected = [r for r in records if r.verdict]
    totals = [compute_total_s(r) for r in inspected]
    return {
        'parts': len(records),
        'outcomes': outcomes,
        'inspected': len(inspected),
        'confusion': table,
        'parts_with_truth': judged_good + judged_bad,
        'verdict_accuracy': _ratio(correct, judged_good + judged_bad),
        'escapes': bad['ACCEPT'],
        'escape_rate': _ratio(bad['ACCEPT'], judged_bad),
        'false_rejects': good['REJECT'],
        'false_reject_rate': _ratio(good['REJECT'], judged_good),
        'review_rate': _ratio(good['REVIEW'] + bad['REVIEW'], judged_good + judged_bad),
        'grasp_attempts': attempts,
        'grasp_success_rate': _ratio(placed, attempts),
        'cycle_time_sim_s': _stats([r.cycle_time_s for r in sorted_recs]),
        'compute_time_s': compute,
        'wall_time_s': wall,
        'compute_total_per_part_s': _stats(totals),
        'compute_budget_s': COMPUTE_BUDGET_S,
        'parts_within_compute_budget': sum(1 for t in totals if t < COMPUTE_BUDGET_S),
    }


def format_summary(metrics: dict) -> str:
    """A plain-text table of the headline metrics (for the demo and the bench)."""
    def pct(v):
        return 'n/a' if v is None else f'{100.0 * v:5.1f} %'

    def sec(stats):
        return 'n/a' if not stats or stats['mean'] is None else \
            f"{stats['mean']:.3f} s (max {stats['max']:.3f})"

    lines = [
        f"parts handled           {metrics['parts']}",
        f"outcomes                {metrics['outcomes']}",
        f"verdict accuracy        {pct(metrics['verdict_accuracy'])}"
        f"  ({metrics['parts_with_truth']} with ground truth)",
        f"escapes (bad accepted)  {metrics['escapes']}  rate {pct(metrics['escape_rate'])}",
        f"false rejects           {metrics['false_rejects']}  "
        f"rate {pct(metrics['false_reject_rate'])}",
        f"grasp success rate      {pct(metrics['grasp_success_rate'])}"
        f"  ({metrics['grasp_attempts']} attempts)",
        f"cycle time (sim)        {sec(metrics['cycle_time_sim_s'])}",
    ]
    for stage in COMPUTE_STAGES:
        lines.append(f'compute {stage:<16}{sec(metrics["compute_time_s"][stage])}')
    lines.append(f"compute all stages/part {sec(metrics['compute_total_per_part_s'])}  "
                 f"(budget {metrics['compute_budget_s']:.1f} s: "
                 f"{metrics['parts_within_compute_budget']}/{metrics['inspected']} within)")
    return '\n'.join(lines)

"""Benchmark of the radiograph simulator: seconds per radiograph at 512, 1024 and 2048 px.

For each detector size, one part of each family (fixed seeds, with defects) is simulated
--repeats times after a warm-up (spectrum and tables cached); the median and p95 of the total
and the median of each stage are reported. Baseline in the same run: the attenuation stage
without the thickness look-up table, i.e. the polychromatic Beer-Lambert sum over every energy
bin for every pixel (what the table replaces), on the same thickness maps; the resulting
'no-LUT total' = total - LUT stage + bin-by-bin stage.

The expected image of the sound part (what xray/reference.py renders once per registration
round, `ReferenceParams.rounds` times per inspection against the part's model) is timed too,
with two baselines in the same run: the projection adding the part's whole square every slab
(`windowed=False`, the earlier way)
against adding only where the slab's features were drawn, and the table look-up of the signal
and both photon energies against the signal alone (all a noise-free sound part needs).

    python bench/bench_xray_sim.py                 # -> bench/results/xray_sim.json
    python bench/bench_xray_sim.py --sizes 1024 --repeats 5
"""

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from humanoid_inspection.xray.phantoms import PART_FAMILIES, generate_part
from humanoid_inspection.xray.simulator import (XraySimConfig, project_part_thickness,
                                                simulate_radiograph, transmission_table)

FIELD_OF_VIEW_MM = 204.8
SEEDS = {'housing': 0, 'bracket': 0, 'hub': 3}


def bin_by_bin_signal(table, thickness, chunk=1 << 18):
    """Deposited energy per pixel summed over the energy bins (no look-up table)."""
    flat = thickness.ravel()
    out = np.empty(flat.size, np.float64)
    weights = (table.photons * table.response).astype(np.float64)
    energy_weights = weights * table.energies
    mu = table.mu.astype(np.float64)
    for start in range(0, flat.size, chunk):
        t = flat[start:start + chunk, None].astype(np.float64)
        out[start:start + chunk] = np.exp(-mu * t) @ energy_weights
    return out.reshape(thickness.shape)


def _stats(values):
    values = np.asarray(values, float)
    return {'median': float(np.median(values)), 'p95': float(np.percentile(values, 95)),
            'min': float(values.min()), 'n': int(values.size)}


def run(sizes, repeats):
    """Measure every size; returns the results dict."""
    results = {}
    parts = {family: generate_part(family, SEEDS[family], defect_probability=1.0)
             for family in PART_FAMILIES}
    for size in sizes:
        config = XraySimConfig.for_size(size, FIELD_OF_VIEW_MM)
        table = transmission_table(config)
        totals, stages, baseline_stage, lut_stage = [], {}, [], []
        sound = {k: [] for k in ('projection_windowed', 'projection_whole',
                                 'lookup_signal_only', 'expected_image')}
        per_family = {}
        for family, part in parts.items():
            simulate_radiograph(part, config, seed=0)  # warm-up
            family_totals = []
            for repeat in range(repeats):
                radiograph = simulate_radiograph(part, config, seed=repeat)
                family_totals.append(radiograph.timings_s['total'])
                for name, value in radiograph.timings_s.items():
                    stages.setdefault(name, []).append(value)
            totals += family_totals
            per_family[family] = float(np.median(family_totals))
            thickness = radiograph.thickness_mm
            tick = time.perf_counter()
            table.lookup(thickness)
            lut_stage.append(time.perf_counter() - tick)
            tick = time.perf_counter()
            table.lookup(thickness, energies=False)
            sound['lookup_signal_only'].append(time.perf_counter() - tick)
            sound_part = replace(part, defects=[])
            for windowed, key in ((True, 'projection_windowed'), (False, 'projection_whole')):
                tick = time.perf_counter()
                project_part_thickness(sound_part, config, windowed=windowed)
                sound[key].append(time.perf_counter() - tick)
            tick = time.perf_counter()
            simulate_radiograph(sound_part, config, noise=False)
            sound['expected_image'].append(time.perf_counter() - tick)
            tick = time.perf_counter()
            bin_by_bin_signal(table, thickness)
            baseline_stage.append(time.perf_counter() - tick)
        total = _stats(totals)
        no_lut = total['median'] - float(np.median(lut_stage)) + float(np.median(baseline_stage))
        results[str(size)] = {
            'pixel_pitch_mm': config.pixel_pitch_mm, 'total_s': total,
            'median_by_family_s': per_family,
            'median_by_stage_s': {k: float(np.median(v)) for k, v in stages.items()},
            'attenuation_lut_s': float(np.median(lut_stage)),
            'baseline_attenuation_bin_by_bin_s': float(np.median(baseline_stage)),
            'baseline_no_lut_total_s': no_lut,
            'energy_bins': int(table.energies.size),
            'sound_part_median_s': {k: float(np.median(v)) for k, v in sound.items()},
            'baseline_lookup_all_three_s': float(np.median(lut_stage)),
        }
        print(f'{size:>5} px  median {total["median"]:.3f} s  p95 {total["p95"]:.3f} s  '
              f'| attenuation LUT {np.median(lut_stage) * 1e3:.1f} ms vs bin-by-bin '
              f'{np.median(baseline_stage) * 1e3:.1f} ms ({table.energies.size} bins) '
              f'-> no-LUT total {no_lut:.3f} s  | by family '
              + ', '.join(f'{k} {v:.3f}' for k, v in per_family.items()), flush=True)
        med = {k: float(np.median(v)) for k, v in sound.items()}
        print(f'{"":>5}     sound part, noise-free: expected image {med["expected_image"]:.3f} s '
              f'| projection {med["projection_windowed"]:.3f} s vs whole square '
              f'{med["projection_whole"]:.3f} s | look-up of the signal '
              f'{med["lookup_signal_only"] * 1e3:.1f} ms vs all three '
              f'{np.median(lut_stage) * 1e3:.1f} ms', flush=True)
    return results


def main(argv=None) -> int:
    """Run the benchmark, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', default='512,1024,2048')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', default=str(Path(__file__).parent / 'results' /
                                             'xray_sim.json'))
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(',')]
    results = run(sizes, args.repeats)
    report = {'benchmark': 'xray_sim', 'unit': 'seconds per radiograph',
              'machine': {'cpus': os.cpu_count(), 'python': platform.python_version(),
                          'processor': platform.processor() or platform.machine()},
              'config': 'XraySimConfig.for_size(size, 204.8 mm) defaults (110 kV, 2 mAs)',
              'parts': {f: SEEDS[f] for f in PART_FAMILIES}, 'repeats': args.repeats,
              'results': results,
              'command': 'python bench/bench_xray_sim.py ' + ' '.join(argv or sys.argv[1:])}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f'saved {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

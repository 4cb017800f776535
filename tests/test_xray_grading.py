"""Grading against the E505-structured acceptance table: every verdict branch and bad tables."""

import copy

import numpy as np
import pytest
import yaml

from humanoid_inspection.xray.detector import DetectedDefect
from humanoid_inspection.xray.grading import (
    ACCEPT, REJECT, REVIEW, GradingTableError, default_table_path, grade, load_table,
    parse_table)

SHAPE = (1000, 1000)


@pytest.fixture(scope='module')
def table():
    return load_table()


def defect(kind='gas_porosity', size_mm=1.0, area_mm2=0.5, confidence=0.9, at=(500, 500)):
    x, y = at
    return DetectedDefect(kind=kind, confidence=confidence, box_xyxy=(x - 5, y - 5, x + 5, y + 5),
                          mask=np.ones((10, 10), bool), size_mm=size_mm, area_mm2=area_mm2,
                          contrast=-0.05)


def test_default_table_loads_with_every_family(table):
    assert default_table_path().name == 'acceptance_e505.yaml'
    assert {'housing', 'bracket', 'hub', 'generic'} <= set(table.families)
    assert table.categories['crack'].not_permitted
    assert table.categories['gas_porosity'].level(0.1) == 1
    assert table.categories['gas_porosity'].level(100.0) == 8


def test_no_defects_accepts(table):
    result = grade([], 'housing', SHAPE, table)
    assert result.verdict == ACCEPT
    assert 'no indications' in result.reasons[0]


def test_small_pore_in_general_zone_accepts(table):
    d = defect(size_mm=0.6, at=(200, 300))          # level 2, general limit 5
    result = grade([d], 'housing', SHAPE, table)
    assert result.verdict == ACCEPT and d.zone == 'general' and d.severity_level == 2
    assert 'all within the limits' in result.reasons[0]


def test_large_pore_in_critical_zone_rejects_citing_rule(table):
    d = defect(size_mm=3.0, at=(500, 500))          # centre boss = critical; level 6 > 2
    result = grade([d], 'housing', SHAPE, table)
    assert result.verdict == REJECT
    assert result.reasons[0] == (
        "REJECT: gas_porosity level 6 (3.00 mm) in zone 'critical' at x=500 y=500 px exceeds "
        'max level 2 (acceptance_e505.yaml: housing.critical.gas_porosity)')


def test_crack_of_any_size_rejects(table):
    result = grade([defect('crack', size_mm=0.2, at=(200, 300))], 'bracket', SHAPE, table)
    assert result.verdict == REJECT
    assert 'not permitted at any size' in result.reasons[0]
    assert 'categories.crack.not_permitted' in result.reasons[0]


def test_low_confidence_crack_asks_for_review(table):
    result = grade([defect('crack', confidence=0.4)], 'hub', SHAPE, table)
    assert result.verdict == REVIEW and 'possible crack' in result.reasons[0]


def test_low_confidence_exceedance_asks_for_review(table):
    result = grade([defect(size_mm=4.0, confidence=0.5)], 'housing', SHAPE, table)
    assert result.verdict == REVIEW and 'would exceed max level 2' in result.reasons[0]


def test_near_limit_asks_for_review(table):
    # general zone of housing: gas porosity max level 5 -> level-6 bound is 2.5 mm; 2.4 is
    # within 10 % under it
    d = defect(size_mm=2.4, at=(200, 300))
    result = grade([d], 'housing', SHAPE, table)
    assert result.verdict == REVIEW and 'within 10%' in result.reasons[0]


def test_very_low_confidence_is_ignored(table):
    d = defect('crack', confidence=0.1)
    result = grade([d], 'housing', SHAPE, table)
    assert result.verdict == ACCEPT and result.decisions == ['-'] and d.severity_level == 0


def test_a_category_floor_grades_faint_cracks_but_not_faint_pores(table):
    # cracks are graded from 0.15 (config): a faint crack goes to a human, a pore at the same
    # confidence stays below the table's 0.3 floor
    assert table.categories['crack'].ignore_below_confidence == 0.15
    crack = grade([defect('crack', confidence=0.2)], 'bracket', SHAPE, table)
    assert crack.verdict == REVIEW and 'possible crack (confidence 0.20' in crack.reasons[0]
    pore = grade([defect(size_mm=4.0, confidence=0.2)], 'bracket', SHAPE, table)
    assert pore.verdict == ACCEPT and pore.decisions == ['-']


def test_shrinkage_is_rated_by_area(table):
    d = defect('shrinkage', size_mm=0.5, area_mm2=5.0, at=(200, 300))   # level 5 > general 3
    result = grade([d], 'housing', SHAPE, table)
    assert result.verdict == REJECT and '(5.00 mm2)' in result.reasons[0]


def test_worst_outcome_wins_and_reasons_are_sorted(table):
    ds = [defect(size_mm=2.4, at=(200, 300)), defect('inclusion', size_mm=4.0, at=(500, 500)),
          defect(size_mm=0.3, at=(200, 400))]
    result = grade(ds, 'housing', SHAPE, table)
    assert result.verdict == REJECT
    assert result.reasons[0].startswith('REJECT') and result.reasons[1].startswith('REVIEW')
    assert result.decisions == [REVIEW, REJECT, ACCEPT]


def test_zone_override(table):
    d = defect(size_mm=1.0, at=(200, 300))          # level 3: ok in general, > 2 in critical
    assert grade([d], 'housing', SHAPE, table, zone_of=lambda _: 'critical').verdict == REJECT
    with pytest.raises(ValueError, match="zone 'nowhere'"):
        grade([d], 'housing', SHAPE, table, zone_of=lambda _: 'nowhere')


def test_unknown_family_is_refused(table):
    with pytest.raises(ValueError, match="unknown part family 'engine'"):
        grade([], 'engine', SHAPE, table)


@pytest.mark.parametrize('mutate, message', [
    (lambda t: t['categories'].pop('crack'), 'categories missing: crack'),
    (lambda t: t['categories']['gas_porosity'].update(bounds=[3, 2, 1, 0, 0, 0, 0]),
     'increasing'),
    (lambda t: t['categories'].update(porosity={'bounds': []}), 'unknown defect kind'),
    (lambda t: t['families']['hub']['zones']['general']['max_level'].update(crack=9),
     'must be 0..8'),
    (lambda t: t['families']['hub'].update(default_zone='rim'), "'rim' is not one of"),
    (lambda t: t['categories']['crack'].update(ignore_below_confidence=1.5),
     'crack.ignore_below_confidence must be within 0..1'),
    (lambda t: t['families']['hub']['zones']['general'].update(regions=[[0, 1]]),
     r'\[x0, y0, x1, y1\]'),
])
def test_malformed_tables_are_refused_with_the_key(mutate, message):
    data = yaml.safe_load(default_table_path().read_text())
    bad = copy.deepcopy(data)
    mutate(bad)
    with pytest.raises(GradingTableError, match=message):
        parse_table(bad, 'bad.yaml')


def test_unreadable_yaml_is_refused(tmp_path):
    path = tmp_path / 'broken.yaml'
    path.write_text('categories: [unclosed')
    with pytest.raises(GradingTableError, match='not valid YAML'):
        load_table(path)

"""The `paper` presets are the seeds' run scripts: each table under tests/conformance/presets/ (see preset_tables.py)
holds, row by row, one setting of the seed with its source line and soundlab's field and value; every row must hold."""
import csv
import pytest
from preset_tables import (table_paths, row_problems, readme_with_tables, render, config_call, REPO, COLUMNS)

@pytest.mark.parametrize('path', table_paths(), ids=lambda p: p.stem)
def test_table_holds(path):
    problems = row_problems(path)
    assert not problems, '\n'.join(problems)

def test_readme_renders_every_table():
    readme = (REPO / 'README.md').read_text()
    assert readme_with_tables(readme) == readme, 'README out of date: run `python tests/preset_tables.py`'

def test_rules_catch_a_wrong_table(tmp_path):
    "The checker itself: a wrong value, a bad source, an unexplained difference and an unknown field are all reported."
    from soundlab.recipes.respiratory import respiratory_config
    p = tmp_path / 'respiratory.csv'
    rows = [['lr', '1e-4', 'ilyassmoummad/scl_icbhi2017@0123456 main.py:12', 'lr', '0.001', 'equal', ''],
            ['batch', '128', 'somewhere', 'bs', '128', 'equal', ''],
            ['epochs', '400', 'a/b@abcdef0 main.py:3', 'epochs', '400', 'differs', ''],
            ['x', '1', 'a/b@abcdef0 main.py:3', 'no_such_field', '1', 'equal', ''],
            ['y', '1', 'a/b@abcdef0 main.py:3', '', '', 'equal', 'no test named']]
    with open(p, 'w', newline='') as f: csv.writer(f).writerows([COLUMNS] + rows)
    assert config_call(p) == ('respiratory', {'preset': 'paper'})
    probs = row_problems(p, respiratory_config('paper'))
    assert len(probs) == 5 and 'lr is 0.0001' in probs[0] and 'seed_source' in probs[1] and 'needs a note' in probs[2]
    assert 'no field' in probs[3] and 'name the test' in probs[4], probs
    with open(p, 'w', newline='') as f: csv.writer(f).writerows([COLUMNS] + [rows[0][:4] + ['0.0001', 'equal', '']])
    assert row_problems(p, respiratory_config('paper')) == [] and '`lr = 0.0001`' in render([p])

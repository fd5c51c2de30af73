"nbs/run_speechcommands.ipynb through papermill on its synthetic corpus (smoke preset); a rerun writes the same tables."
import pandas as pd
import pytest
from conftest import run_notebook

@pytest.fixture(scope='module')
def first_run(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp('sc1')
    res = run_notebook('run_speechcommands.ipynb', out, shared_data, preset='smoke', out_dir=str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    return out

def test_run_speechcommands_smoke(first_run):
    table = pd.read_csv(first_run / 'ast_speechcommands_results.csv')
    assert len(table) == 1 and table['size'][0] == 'tiny224' and table['words'][0] == 3  # the smoke corpus: yes, no, up
    for c in ('val acc (%)', 'eval acc (%)', 'val AUC (%)', 'eval AUC (%)'): assert table[c].between(0, 100).all(), c
    assert (first_run / 'ast_speechcommands_results.md').read_text().startswith('| model ')
    assert pd.read_csv(first_run / 'ast_speechcommands_skipped.csv').empty
    for name in ('confusion', 'curves'):
        assert (first_run / f'ast_speechcommands_{name}.png').stat().st_size > 1000, name
    assert 'notebook wall time' in (first_run / 'out_run_speechcommands.ipynb').read_text()

def test_rerun_writes_identical_tables(first_run, tmp_path):
    "A second run from scratch (fresh data folder: corpus, fbank cache and checkpoints rebuilt) gives byte-identical tables."
    res = run_notebook('run_speechcommands.ipynb', tmp_path, tmp_path / 'data', preset='smoke', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    for f in ('ast_speechcommands_results.csv', 'ast_speechcommands_results.md'):
        assert (tmp_path / f).read_bytes() == (first_run / f).read_bytes(), f

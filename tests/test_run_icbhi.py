"End-to-end: nbs/run_icbhi.ipynb through papermill on the synthetic corpus (smoke preset)."
import pandas as pd
import pytest
from conftest import run_notebook

@pytest.mark.parametrize('method', ['sl', 'mscl'])
def test_run_icbhi_smoke(method, tmp_path, shared_data):
    res = run_notebook('run_icbhi.ipynb', tmp_path, shared_data, method=method, preset='smoke', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'icbhi_results.csv')
    assert len(table) == 1 and table.Method[0] == {'sl': 'CE', 'mscl': 'M-SCL'}[method]
    assert 0 <= table.score_mean[0] <= 100
    assert (tmp_path / 'icbhi_results.md').read_text().count('\n') >= 3
    for kind in ('confusion', 'curves_*', 'embedding_class', 'embedding_meta'):
        assert list(tmp_path.glob(f'*_{kind}.png')), kind

def test_run_icbhi_wrong_root_fails_fast(tmp_path, shared_data):
    res = run_notebook('run_icbhi.ipynb', tmp_path, shared_data, preset='smoke', data_root=str(tmp_path / 'nowhere'))
    assert res.returncode != 0
    assert 'nowhere' in res.stderr and 'ICBHI' in res.stderr

def test_icbhi_table_smoke(tmp_path, shared_data):
    res = run_notebook('icbhi_table.ipynb', tmp_path, shared_data, preset='smoke', rows='1,7', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'icbhi_table.csv')
    assert list(table.row) == [1, 7] and table.paper_Score[0] == '53.92(0.71)'
    assert table.Sp[1] == 'skipped'                        # AudioSet row without weights
    assert table.Sp[0] != 'skipped' and '(' in table.Score[0]

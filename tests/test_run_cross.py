"""nbs/run_cross.ipynb (the backbone x method table) and run_icbhi.ipynb with a registry backbone, through papermill."""
import pandas as pd
from conftest import run_notebook

def test_run_cross_smoke(tmp_path, shared_data):
    res = run_notebook('run_cross.ipynb', tmp_path, shared_data, preset='smoke', backbones='cnn6,ast_tiny224',
                       methods='sl,patchmix', seeds='0,1', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    t = pd.read_csv(tmp_path / 'cross_icbhi.csv', index_col=0, keep_default_na=False)  # 'n/a' stays a string
    assert list(t.index) == ['cnn6', 'ast_tiny224'] and list(t.columns) == ['CE', 'Patch-Mix CL']
    assert t.loc['cnn6', 'Patch-Mix CL'] == 'n/a'
    for b, m in [('cnn6', 'CE'), ('ast_tiny224', 'CE'), ('ast_tiny224', 'Patch-Mix CL')]:
        mean, std = map(float, t.loc[b, m].split(' ± '))
        assert 0 <= mean <= 100 and std >= 0
    runs = pd.read_csv(tmp_path / 'cross_runs.csv')
    assert len(runs) == 6 and sorted(set(runs.seed)) == [0, 1]
    # the table's cells are the mean +- std (ddof 1) of the runs
    s = runs[(runs.backbone == 'ast_tiny224') & (runs.method == 'patchmix')].Score
    assert t.loc['ast_tiny224', 'Patch-Mix CL'] == f'{s.mean():.2f} ± {s.std(ddof=1):.2f}'
    assert (tmp_path / 'cross_icbhi.png').stat().st_size > 0 and '±' in (tmp_path / 'cross_icbhi.md').read_text()

def test_run_cross_paper_lists_commands(tmp_path, shared_data):
    res = run_notebook('run_cross.ipynb', tmp_path, shared_data, preset='paper', backbones='cnn6,ast_base384',
                       methods='mscl,patchmix', seeds='0,1,2', data_roots='ICBHI=/data/ICBHI', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    cmds = (tmp_path / 'cross_paper_commands.sh').read_text().splitlines()
    runs = [c for c in cmds if 'run_icbhi.ipynb' in c]
    assert len(runs) == 3 and not any('cnn6 -p method patchmix' in c for c in runs)  # patchmix: AST only
    assert all('-p preset paper' in c and '-p n_runs 3' in c and '-p data_root /data/ICBHI' in c for c in runs)
    assert 'run_cross.ipynb' in cmds[-1] and 'execute True' in cmds[-1]
    assert not (tmp_path / 'cross_icbhi.csv').exists()  # nothing trained without execute

def test_run_icbhi_ast_patchmix(tmp_path, shared_data):
    for method in ('mscl', 'patchmix'):
        res = run_notebook('run_icbhi.ipynb', tmp_path, shared_data, backbone='ast_tiny224', method=method, preset='smoke',
                           duration=1.0, out_dir=str(tmp_path))
        assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'icbhi_results.csv')
    assert list(table.Method) == ['M-SCL', 'Patch-Mix CL'] and (table.score_mean.between(0, 100)).all()

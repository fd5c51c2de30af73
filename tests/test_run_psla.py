"End-to-end: nbs/run_psla.ipynb through papermill on the synthetic FSD50K-layout corpus (smoke preset)."
import pandas as pd
from conftest import run_notebook

def test_run_psla_smoke(tmp_path, shared_data):
    "Both runs (original and enhanced labels), the seed's three models x two sets, tables and figures."
    res = run_notebook('run_psla.ipynb', tmp_path, shared_data, preset='smoke', label_enhance='mean', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'psla_results.csv')
    runs = table[table.model != 'label prior']
    assert list(runs.model) == ['best_single', 'wa', 'ensemble'] * 2 and list(runs.labels.unique()) == ['none', 'type1_2_mean']
    assert runs[['vali mAP', 'eval mAP', 'eval mAUC']].stack().between(0, 1).all() and (runs.b == 0).all()
    assert (table.model == 'label prior').sum() == 1
    le = pd.read_csv(tmp_path / 'psla_label_enhancement.csv')
    assert set(le.threshold.astype(str)) == {'none', 'mean', 'median', '5', '10', '25'} and len(le) == 21
    assert (le[le.type.isin(['type1', 'type2', 'type1_2'])].change >= 0).all()
    ens = pd.read_csv(tmp_path / 'psla_ensemble.csv')
    assert list(ens.model.str.split().str[0]) == ['Model', 'Model', 'Ensemble']
    for name in ('psla_results.md', 'psla_label_enhancement.md', 'psla_ensemble.md'): assert (tmp_path / name).read_text().count('\n') >= 3
    for name in ('map_per_epoch', 'classwise_ap'): assert (tmp_path / f'psla_fsd50k_{name}.png').stat().st_size > 1000, name
    out = (tmp_path / 'out_run_psla.ipynb').read_text()
    assert 'evaluate weight average model on the evaluation set' in out and 'label-prior baseline' in out

def test_run_psla_bad_threshold_fails_fast(tmp_path, shared_data):
    res = run_notebook('run_psla.ipynb', tmp_path, shared_data, preset='smoke', label_enhance='90', out_dir=str(tmp_path))
    assert res.returncode != 0 and 'label_enhance must be one of' in res.stderr

"End-to-end: nbs/run_fewshot.ipynb through papermill on the synthetic MetaAudio corpus (smoke preset)."
import pandas as pd
from conftest import run_notebook

SCENARIOS = ['protonet', 'protonet+aug', 'protonet+aug+attention', 'protonet+contrastive', 'protonet+aug+contrastive', 'relationnet']

def test_run_fewshot_smoke(tmp_path, shared_data):
    res = run_notebook('run_fewshot.ipynb', tmp_path, shared_data, preset='smoke', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'fewshot_results.csv')
    assert [(d, s) for d, s in table[['dataset', 'scenario']].values] == [(d, s) for d in ('ESC-50-master', 'FSD2018') for s in SCENARIOS]
    assert table['accuracy (%)'].between(0, 100).all() and (table['± 95% CI'] >= 0).all() and (table['test tasks'] == 4).all()
    assert list(table.contrastive) == ['-', '-', '-', 'CPL', 'APL', '-'] * 2
    pivot = pd.read_csv(tmp_path / 'fewshot_table.csv', index_col=0)
    assert list(pivot.index) == SCENARIOS and list(pivot.columns) == ['ESC-50-master', 'FSD2018'] and pivot.iloc[0, 0].count('±') == 1
    assert (tmp_path / 'fewshot_table.md').read_text().count('\n') >= 8
    for name in ('fewshot_accuracy', 'fewshot_curves'): assert (tmp_path / f'{name}.png').stat().st_size > 1000, name
    assert 'notebook wall time' in (tmp_path / 'out_run_fewshot.ipynb').read_text()

def test_run_fewshot_config_overrides(tmp_path, shared_data):
    "The JSON as it is (scenario 'config') with the common-key overrides: angular loss instead of CPL, 2-way, one dataset."
    res = run_notebook('run_fewshot.ipynb', tmp_path, shared_data, preset='smoke', scenarios='config', dataset_name='ESC-50-master',
                       cpl=False, angular=True, use_attention=False, n_way=2, out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    row = pd.read_csv(tmp_path / 'fewshot_results.csv').iloc[0]
    assert (row.dataset, row.scenario, row.contrastive, row.task) == ('ESC-50-master', 'config', 'APL', '2-way 2-shot')

def test_run_fewshot_two_processes(tmp_path, shared_data):
    "nproc=2: each run trains under torchrun (episodes dealt to the ranks); one table row per run from rank 0's results."
    res = run_notebook('run_fewshot.ipynb', tmp_path, shared_data, preset='smoke', dataset_name='ESC-50-master', scenarios='protonet',
                       nproc=2, on_bad_file='skip', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    row = pd.read_csv(tmp_path / 'fewshot_results.csv').iloc[0]
    assert (row.dataset, row.scenario, row['test tasks']) == ('ESC-50-master', 'protonet', 4) and 0 <= row['accuracy (%)'] <= 100
    assert pd.read_csv(tmp_path / 'fewshot_skipped.csv').empty

def test_run_fewshot_registered_encoder(tmp_path, shared_data):
    "-p encoder cnn6 -p weights <PANNs checkpoint>: CPL episodes on PANNs' Cnn6 conv blocks loaded from a PANNs-layout file."
    import torch
    from soundlab.models.panns import Cnn6
    torch.manual_seed(0); ckpt = tmp_path / 'Cnn6_mAP=0.343.pth'; torch.save({'model': Cnn6().state_dict()}, ckpt)
    res = run_notebook('run_fewshot.ipynb', tmp_path, shared_data, preset='smoke', dataset_name='ESC-50-master',
                       scenarios='protonet+contrastive', encoder='cnn6', weights=str(ckpt), num_epochs=1, out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    row = pd.read_csv(tmp_path / 'fewshot_results.csv').iloc[0]
    assert (row.encoder, row.contrastive, row.tag.endswith('|cnn6')) == ('cnn6', 'CPL', True) and 0 <= row['accuracy (%)'] <= 100

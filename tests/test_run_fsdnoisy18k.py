"End-to-end: nbs/run_fsdnoisy18k.ipynb through papermill on the synthetic FSDnoisy18k corpus (smoke preset)."
import pandas as pd
from conftest import run_notebook

def test_run_fsdnoisy18k_smoke(tmp_path, shared_data):
    res = run_notebook('run_fsdnoisy18k.ipynb', tmp_path, shared_data, preset='smoke', stage='all', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'sed_results.csv')
    assert [tuple(r) for r in table[['stage', 'init']].values] == [('lineval', 'ours'), ('lineval', 'random'), ('finetune', 'ours')]
    assert table['balanced acc (%)'].between(0, 100).all() and (table.arch == 'vgglike').all()
    assert (tmp_path / 'sed_results.md').read_text().count('\n') >= 5
    for name in ('pretrain_curves', 'lineval_ours_curves', 'finetune_ours_curves', 'lineval_ours_embedding',
                 'lineval_random_embedding', 'per_class'):
        assert (tmp_path / f'sed_vgglike_{name}.png').stat().st_size > 1000, name
    out = (tmp_path / 'out_run_fsdnoisy18k.ipynb').read_text()
    assert 'linear evaluation: pre-trained encoder' in out

def test_run_fsdnoisy18k_published_finetune(tmp_path, shared_data):
    "One stage alone: fine-tuning the published CRNN, appended to an existing table."
    (tmp_path / 'sed_results.csv').write_text('tag,arch\nold,vgglike\n')
    res = run_notebook('run_fsdnoisy18k.ipynb', tmp_path, shared_data, preset='smoke', stage='finetune', arch='crnn',
                       encoder_path='published', epochs=1, out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'sed_results.csv')
    assert list(table.tag) == ['old', 'crnn_finetune_published_noisy_synth']
    assert (tmp_path / 'sed_vgglike_per_class.png').exists() is False and (tmp_path / 'sed_crnn_per_class.png').exists()

def test_run_fsdnoisy18k_lineval_needs_encoder(tmp_path, shared_data):
    res = run_notebook('run_fsdnoisy18k.ipynb', tmp_path, shared_data, preset='smoke', stage='lineval', seed=12345, out_dir=str(tmp_path))
    assert res.returncode != 0 and "run the 'pretrain' stage" in res.stderr

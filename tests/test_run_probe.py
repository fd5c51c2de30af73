"""nbs/run_probe.ipynb (frozen encoders x tasks) through papermill, and its embedding cache: a new task or probe runs no encoder again."""
import h5py
import pandas as pd
from conftest import run_notebook

def _entries(cache):
    return {k for p in cache.glob('shard-*.h5') for k in h5py.File(p, 'r').keys()}

def test_run_probe_smoke(tmp_path, shared_data, monkeypatch):
    common = dict(preset='smoke', encoders='logmel,fewshot_cnn', checkpoints='vgglike:fixtures/uclser20/VGG_best.pth', seeds='0,1',
                  out_dir=str(tmp_path))
    res = run_notebook('run_probe.ipynb', tmp_path, shared_data, tasks='esc50', probes='knn', **common)
    assert res.returncode == 0, res.stderr[-3000:]
    t = pd.read_csv(tmp_path / 'probe_results.csv', index_col=0)
    assert list(t.index) == ['log-mel stats', 'fewshot_cnn (random)', 'vgglike (VGG_best)'] and list(t.columns) == ['esc50 knn']
    runs = pd.read_csv(tmp_path / 'probe_runs.csv')
    assert len(runs) == 3 * 5 and runs.score.between(0, 100).all()   # 3 encoders x 5 folds (a fold task: one seed)
    s = runs[runs.encoder == 'log-mel stats'].score
    assert t.loc['log-mel stats', 'esc50 knn'] == f'{s.mean():.2f} ± {s.std(ddof=1):.2f}'  # mean ± std (ddof 1) over folds
    assert (tmp_path / 'probe_results.png').stat().st_size > 0 and '±' in (tmp_path / 'probe_results.md').read_text()

    cache = shared_data / 'cache' / 'embeddings'; before = _entries(cache)
    res = run_notebook('run_probe.ipynb', tmp_path, shared_data, tasks='esc50,vocalsound', probes='knn,linear,mlp', **common)
    assert res.returncode == 0, res.stderr[-3000:]
    t = pd.read_csv(tmp_path / 'probe_results.csv', index_col=0)
    assert list(t.columns) == [f'{task} {p}' for task in ('esc50', 'vocalsound') for p in ('knn', 'linear', 'mlp')]
    # two more probes on esc50 embedded nothing again; vocalsound was embedded once per encoder config:
    # fewshot_cnn's two random draws (seeds 0, 1) and the checkpoint (the same for both seeds)
    monkeypatch.setenv('SOUNDLAB_DATA', str(shared_data))
    from soundlab.probe import load_corpus
    n_voc = len(load_corpus('vocalsound', synth=dict(n_speakers=(4, 2, 2), durations=(0.5, 1.))).records)
    assert len(_entries(cache) - before) == 3 * n_voc

"End-to-end: nbs/run_psla.ipynb through papermill on the synthetic FSD50K-layout corpus (smoke preset)."
import pandas as pd
from pathlib import Path
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

def test_run_psla_two_processes(tmp_path, shared_data):
    "nproc=2: training, evaluation and label enhancement under torchrun; the notebook writes the tables from rank 0's results."
    res = run_notebook('run_psla.ipynb', tmp_path, shared_data, preset='smoke', epochs=1, nproc=2, on_bad_file='skip', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    runs = pd.read_csv(tmp_path / 'psla_results.csv')
    assert list(runs[runs.model != 'label prior'].model) == ['best_single', 'wa', 'ensemble'] and (runs.epochs.dropna() == 1).all()
    assert pd.read_csv(tmp_path / 'psla_fsd50k_skipped.csv').empty

def test_psla_recipe_skips_bad_training_clip(tmp_path, shared_data, monkeypatch):
    "on_bad_file='skip': a silent training clip is dropped before training and the balanced-sampling weights follow the clips kept."
    import numpy as np, pytest, soundfile as sf
    from soundlab.core import DatasetError
    from soundlab.synth import make_fsd50k
    from soundlab.recipes.psla import psla_config, load_data, train_psla
    monkeypatch.setenv('SOUNDLAB_DATA', str(tmp_path / 'data'))
    root = make_fsd50k(tmp_path / 'fsd50k', n_dev=24, n_eval=8, durations=(0.5, 1.), seed=0)
    dev = pd.read_csv(root / 'FSD50K.ground_truth' / 'dev.csv')
    silent = root / 'FSD50K.dev_audio' / f"{dev[dev.split == 'train'].fname.iloc[0]}.wav"
    sf.write(silent, np.zeros(8000, np.float32), 16000)
    over = dict(data_root=str(root), epochs=1, device='cpu', out_dir=str(tmp_path / 'runs'))
    with pytest.raises(DatasetError, match=silent.stem):
        cfg = psla_config('smoke', **over); train_psla(cfg, load_data(cfg, progress=False), progress=False)
    cfg = psla_config('smoke', on_bad_file='skip', **over)
    data = load_data(cfg, progress=False)
    run = train_psla(cfg, data, progress=False)
    assert [Path(p).stem for p, _ in data['bad'].skipped] == [silent.stem] and len(run['history']) == 1

def test_run_psla_features_stream(tmp_path, shared_data):
    "features='stream' with 2 loader workers: nothing is precomputed or cached; training, evaluation and tables as in cache mode."
    res = run_notebook('run_psla.ipynb', tmp_path, shared_data, preset='smoke', epochs=1, features='stream', num_workers=2,
                       out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    runs = pd.read_csv(tmp_path / 'psla_results.csv')
    assert list(runs[runs.model != 'label prior'].model) == ['best_single', 'wa', 'ensemble']
    assert runs[['vali mAP', 'eval mAP']].dropna().stack().between(0, 1).all()
    assert "features='stream'" in (tmp_path / 'out_run_psla.ipynb').read_text()

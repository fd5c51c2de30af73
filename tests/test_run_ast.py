"End-to-end: nbs/run_vocalsound.ipynb and nbs/run_esc50.ipynb through papermill on their synthetic corpora (smoke preset)."
import pandas as pd
from pathlib import Path
from conftest import run_notebook

def test_run_vocalsound_smoke(tmp_path, shared_data):
    res = run_notebook('run_vocalsound.ipynb', tmp_path, shared_data, preset='smoke', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'ast_vocalsound_results.csv')
    assert len(table) == 1 and table['test acc (%)'].between(0, 100).all() and table['size'][0] == 'tiny224'
    assert {'f (%)', 'm (%)'} <= set(table.columns)
    groups = pd.read_csv(tmp_path / 'ast_vocalsound_groups.csv')
    assert set(groups.group) == {'gender', 'age_band'} and groups[groups.group == 'gender'].n.sum() == 12
    assert (tmp_path / 'ast_vocalsound_results.md').read_text().startswith('| model ')
    for name in ('confusion', 'groups', 'curves', 'example'):
        assert (tmp_path / f'ast_vocalsound_{name}.png').stat().st_size > 1000, name
    assert 'notebook wall time' in (tmp_path / 'out_run_vocalsound.ipynb').read_text()

def test_run_esc50_smoke(tmp_path, shared_data):
    res = run_notebook('run_esc50.ipynb', tmp_path, shared_data, preset='smoke', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    acc = pd.read_csv(tmp_path / 'ast_esc50_acc_fold.csv')
    assert list(acc.fold) == ['fold1', 'fold2', 'fold3', 'fold4', 'fold5', 'mean']
    assert abs(acc.accuracy.iloc[-1] - acc.accuracy.iloc[:5].mean()) < 1e-9 and acc.accuracy.between(0, 100).all()
    table = pd.read_csv(tmp_path / 'ast_esc50_results.csv')
    assert len(table) == 1 and table['mean acc (%)'][0] == round(acc.accuracy.iloc[-1], 2)
    for name in ('confusion', 'folds', 'accuracy_by_epoch'):
        assert (tmp_path / f'ast_esc50_{name}.png').stat().st_size > 1000, name

def test_run_esc50_two_folds_appends(tmp_path, shared_data):
    "A second configuration (2 folds, 2 epochs) is appended to an existing table."
    (tmp_path / 'ast_esc50_results.csv').write_text('tag,model\nold,ast\n')
    res = run_notebook('run_esc50.ipynb', tmp_path, shared_data, preset='smoke', folds='[1, 2]', epochs=2, out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    acc = pd.read_csv(tmp_path / 'ast_esc50_acc_fold.csv')
    assert list(acc.fold) == ['fold1', 'fold2', 'mean']
    table = pd.read_csv(tmp_path / 'ast_esc50_results.csv')
    assert list(table.tag)[0] == 'old' and len(table) == 2 and table.epochs.iloc[1] == 2

def test_run_esc50_two_processes(tmp_path, shared_data):
    "nproc=2: the recipe runs under torchrun (soundlab.dist.launch); rank 0's results make the table; the skipped list is written."
    res = run_notebook('run_esc50.ipynb', tmp_path, shared_data, preset='smoke', folds='[1]', nproc=2, on_bad_file='skip', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'ast_esc50_results.csv')
    assert len(table) == 1 and 0 <= table['mean acc (%)'][0] <= 100
    assert pd.read_csv(tmp_path / 'ast_esc50_skipped.csv').empty  # the synthetic corpus has no bad file

def test_esc50_recipe_skips_bad_files(tmp_path, shared_data, monkeypatch):
    "on_bad_file: 'raise' names the bad file; 'skip' trains without it and returns both bad clips (reader + fbank) in res['bad']."
    import numpy as np, pytest, soundfile as sf
    from soundlab.core import DatasetError
    from soundlab.synth import make_esc50
    from soundlab.recipes.ast import ast_config, run_esc50
    monkeypatch.setenv('SOUNDLAB_DATA', str(shared_data))
    root = make_esc50(tmp_path / 'esc', categories=[0, 10], clips_per_class=5, duration=0.8, sample_rate=16000, seed=0)
    wavs = sorted((root / 'audio').glob('[23]-*.wav'))[1:3]                  # one clip of fold 2 and one of fold 3
    wavs[0].write_bytes(b'')                                                    # zero-length file: the reader's check
    sf.write(wavs[1], np.zeros(12800, np.float32), 16000)                      # silent clip: the fbank's check
    cfg = ast_config('smoke', 'esc50', data_root=str(root), folds=(1,), device='cpu', out_dir=str(tmp_path / 'runs'))
    with pytest.raises(DatasetError, match=wavs[0].name): run_esc50(cfg, progress=False)
    res = run_esc50(ast_config('smoke', 'esc50', data_root=str(root), folds=(1,), device='cpu', on_bad_file='skip',
                               out_dir=str(tmp_path / 'runs')), progress=False)
    skipped = res['bad'].df()
    assert {Path(p).name for p in skipped.path} == {wavs[0].name, wavs[1].name}, skipped
    assert 0 <= res['mean_acc'] <= 100 and len(res['runs'][1]['history']) == 1
    assert len(pd.read_csv(res['bad'].write(tmp_path / 'ast_esc50_skipped.csv'))) == 2

def test_run_esc50_features_device(tmp_path, shared_data):
    "features='device': the loader yields waveforms and the recipe's step / predictions run the batched fbank (soundlab.streaming)."
    res = run_notebook('run_esc50.ipynb', tmp_path, shared_data, preset='smoke', folds='[1]', features='device', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'ast_esc50_results.csv')
    assert len(table) == 1 and 0 <= table['mean acc (%)'][0] <= 100
    assert "features='device'" in (tmp_path / 'out_run_esc50.ipynb').read_text()

def test_esc50_feature_modes_train_alike(tmp_path, shared_data, monkeypatch):
    """One fold, one epoch, no SpecAugment (drawn in a different order on the device): the three modes train alike.
    They compute the same fbank with other kernels (cache: in the loader's workers, stream: in the loader, device:
    `BatchKaldiFbank` on the batch), so they differ by the fbank's float32 rounding, carried through one epoch.
    Tolerance from the computation: that rounding, measured against the fbank's float64 twin on the corpus's clips
    (`f64_tol`: x2 sides x3), is put on every fbank value of a fourth run (stream, +-that much at random); how far it
    moves the loss and the test logits, again x2 sides x3 plus 4 ulps (`f64_tol` of the perturbed run), bounds the
    modes' differences. Not exact: the worker and main processes run their FFTs and sums with other thread counts."""
    import numpy as np, soundfile as sf, torch, torchaudio
    from soundlab.recipes.ast import ast_config, run_esc50
    from soundlab.features import KaldiFbank
    from conftest import check_close, f64_tol
    monkeypatch.setenv('SOUNDLAB_DATA', str(shared_data))
    run = lambda m, name=None: run_esc50(ast_config('smoke', 'esc50', folds=(1,), device='cpu', features=m, freqm=0, timem=0,
                                                    out_dir=str(tmp_path / (name or m))), progress=False)
    res = {m: run(m) for m in ('cache', 'stream', 'device')}
    clips = sorted(shared_data.glob('synth/esc50_*/audio/*.wav'))[:16]
    wav = torch.stack([torch.from_numpy(sf.read(p, dtype='float32')[0]) for p in clips])
    fb = KaldiFbank()
    f32, f64 = fb(wav), torch.stack([torchaudio.compliance.kaldi.fbank((w - w.mean())[None], **fb.kw) for w in wav.double()])
    delta = float(f64_tol(f32, f64).max())  # the fbank's rounding, one side's worst, x2 x3 (+ ulps)
    fbank, g = torchaudio.compliance.kaldi.fbank, torch.Generator().manual_seed(0)
    def rounded(*a, **kw):
        f = fbank(*a, **kw); return f + delta * (2 * torch.randint(0, 2, f.shape, generator=g) - 1).to(f.dtype)
    monkeypatch.setattr(torchaudio.compliance.kaldi, 'fbank', rounded)
    res['perturbed'] = run('stream', 'perturbed')  # stream: no feature cache to read or to fill with perturbed values
    loss = {m: r['runs'][1]['history']['train_loss'].iloc[0] for m, r in res.items()}
    s = {m: r['runs'][1]['scores'][0]['test'] for m, r in res.items()}
    tol_loss, tol_s = f64_tol(loss['perturbed'], loss['stream']), f64_tol(s['perturbed'], s['stream'])
    print(f'fbank rounding bound {delta:.2e}; training loss moved {abs(loss["perturbed"] - loss["stream"]):.2e} by it')
    assert 0 < delta < 0.1 and (s['perturbed'] != s['stream']).any(), 'a sane bound, and the perturbation reaches the results'
    for m in ('cache', 'device'):
        check_close(f'one-epoch training loss, {m} vs stream', loss[m], loss['stream'], atol=tol_loss)
        check_close(f'test logits after one epoch, {m} vs stream', s[m], s['stream'], atol=tol_s)

def test_run_vocalsound_mscl_smoke(tmp_path, shared_data):
    "-p method mscl -p metalabel gender: M-SCL on the speakers' gender through the AST recipe, one contrastive epoch + linear eval."
    res = run_notebook('run_vocalsound.ipynb', tmp_path, shared_data, preset='smoke', method='mscl', metalabel='gender', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'ast_vocalsound_results.csv')
    assert table['method'][0] == 'M-SCL (gender)' and table['tag'][0].endswith('_mscl-gender')
    assert table['test acc (%)'].between(0, 100).all() and {'f (%)', 'm (%)'} <= set(table.columns)
    assert (tmp_path / 'ast_vocalsound_curves.png').stat().st_size > 1000

def test_run_vocalsound_patchmix_smoke(tmp_path, shared_data):
    "-p method patchmix: CE + Patch-Mix contrastive learning (soundlab.patchmix) on VocalSound, one smoke epoch."
    res = run_notebook('run_vocalsound.ipynb', tmp_path, shared_data, preset='smoke', method='patchmix', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'ast_vocalsound_results.csv')
    assert table['method'][0] == 'Patch-Mix CL' and table['tag'][0].endswith('_patchmix')
    assert table['test acc (%)'].between(0, 100).all()

def test_run_esc50_patchmix_smoke(tmp_path, shared_data):
    "-p method patchmix on ESC-50 (one fold; PSLA's refusal is tested in nbs/44_recipes.ast.ipynb)."
    res = run_notebook('run_esc50.ipynb', tmp_path, shared_data, preset='smoke', method='patchmix', folds='[1]', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'ast_esc50_results.csv')
    assert table['method'][0] == 'Patch-Mix CL' and table['tag'][0].endswith('_patchmix') and 0 <= table['mean acc (%)'][0] <= 100

"""Faults: a real training process SIGKILLed mid-epoch and rerun resumes from last.pt and ends exactly like an
uninterrupted run; a corrupt feature-cache shard is detected and rebuilt, never used.

Resume granularity: the epoch. last.pt is written (atomically) at the end of every epoch and every epoch is seeded
from (seed, epoch) alone (model RNG, augmentation generator, the loader's order), so the rerun replays the killed
epoch from its start and every number downstream is identical (tested with ==, not a tolerance)."""
import os, sys, json, time, signal, subprocess, textwrap, warnings
from pathlib import Path
import numpy as np
import pytest, torch

SCRIPT = textwrap.dedent('''
    import os, sys, json, math, time
    from pathlib import Path
    import soundlab.recipes.respiratory as R
    out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
    cfg = R.respiratory_config('smoke', method='sl', epochs=3, t_max=3, duration=1., out_dir=str(out / 'runs'))
    data = R.load_cycles(cfg, progress=False)
    per_epoch = math.ceil(len(data['train']['y']) / cfg.bs)
    pause = int(os.environ.get('PAUSE_AT_EPOCH', 0)) * per_epoch + 2   # the 2nd step of that epoch (0-based epochs)
    orig, steps = R.make_step, [0]
    def make_step(*a, **k):
        step = orig(*a, **k)
        def counted(m, b):
            steps[0] += 1; (out / 'steps').write_text(str(steps[0]))
            if os.environ.get('PAUSE_AT_EPOCH') and steps[0] == pause:
                (out / 'paused').write_text(str(per_epoch)); time.sleep(600)     # killed here, mid-epoch
            return step(m, b)
        return counted
    R.make_step = make_step
    row, runs = R.run_respiratory(cfg, data, progress=False)
    h = runs[0]['history'].drop(columns=['seconds'])
    json.dump(dict(row=row, history=h.to_dict('list'), y_pred=runs[0]['y_pred'].tolist(), steps=steps[0], per_epoch=per_epoch),
              open(out / 'result.json', 'w'))
''')

def _cmd(tmp_path, out): 
    (tmp_path / 'train_resp.py').write_text(SCRIPT)
    return [sys.executable, str(tmp_path / 'train_resp.py'), str(out)]

def _env(shared_data, **extra):
    return {**os.environ, 'SOUNDLAB_DATA': str(shared_data), 'OMP_NUM_THREADS': '1', **extra}

def test_sigkill_mid_epoch_then_resume(tmp_path, shared_data, monkeypatch):
    t0 = time.time()
    from soundlab.recipes.respiratory import load_cycles, respiratory_config
    monkeypatch.setenv('SOUNDLAB_DATA', str(shared_data))     # corpus and cache first, then two runs side by side
    load_cycles(respiratory_config('smoke', duration=1.), progress=False)
    ref = subprocess.Popen(_cmd(tmp_path, tmp_path / 'ref'), env=_env(shared_data), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out = tmp_path / 'killed'
    p = subprocess.Popen(_cmd(tmp_path, out), env=_env(shared_data, PAUSE_AT_EPOCH='1'), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (out / 'paused').exists():
        assert p.poll() is None, p.stderr.read().decode()[-3000:]
        assert time.time() < deadline, 'the run never reached epoch 2'
        time.sleep(0.2)
    stage = out / 'runs'
    last = next(stage.rglob('stage1/last.pt'))
    assert torch.load(last, weights_only=False)['epoch'] == 1               # 1 epoch done, the 2nd under way
    p.send_signal(signal.SIGKILL); p.wait(); p.stderr.close()
    assert p.returncode == -signal.SIGKILL and not (out / 'result.json').exists()
    again = subprocess.run(_cmd(tmp_path, out), env=_env(shared_data), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert ref.wait(timeout=600) == 0, ref.stderr.read().decode()[-3000:]
    ref.stderr.close()
    a, b = (json.loads((d / 'result.json').read_text()) for d in (tmp_path / 'ref', out))
    assert b['steps'] == 2 * b['per_epoch']                                 # the rerun trained epochs 2 and 3 only
    # exact, not a tolerance: both runs execute the same kernels on one machine, and the resumed one restores every RNG
    # state and the data order, so each operation sees the same operands in the same order
    assert a['row'] == b['row'] and a['history'] == b['history'] and a['y_pred'] == b['y_pred']
    print(f"resume test: {time.time() - t0:.0f} s; score {a['row']['Score']}; {b['per_epoch']} steps per epoch")

def test_corrupt_cache_shard_is_rebuilt(tmp_path):
    "A flipped byte in a feature shard: detected by its checksum, moved aside, recomputed to the same features."
    import h5py, soundfile as sf
    from soundlab.data.core import Record, SegmentDataset, precompute
    from soundlab.features import FeatureCache, RespiratoryMel
    t = np.arange(8000 * 2) / 8000
    sf.write(tmp_path / 'a.wav', 0.3 * np.sin(2 * np.pi * 440 * t), 8000)
    recs = [Record(f'a{k}', tmp_path / 'a.wav', 8000, 0.5 * k, 0.5, 0, 'train') for k in range(3)]
    make = lambda: SegmentDataset(recs, duration=1., frontend=RespiratoryMel(), cache=FeatureCache(tmp_path / 'cache'))
    ds = make(); assert precompute(ds, progress=False) == 3
    x0 = torch.stack([ds[i]['x'] for i in range(3)]); ds.cache.close()
    shard = next((tmp_path / 'cache').glob('shard-*.h5'))
    with h5py.File(shard, 'r') as f: key = sorted(f.keys())[1]; off = f[key].id.get_chunk_info(0).byte_offset
    with open(shard, 'r+b') as fh: fh.seek(off + 16); b = fh.read(1); fh.seek(off + 16); fh.write(bytes([b[0] ^ 0xFF]))
    ds = make()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always'); x1 = torch.stack([ds[i]['x'] for i in range(3)])
    assert any(shard.name in str(m.message) and 'corrupt' in str(m.message) for m in w)
    assert ds.n_decoded >= 1 and torch.equal(x0, x1) and shard.with_name(shard.name + '.corrupt').exists()

def test_other_settings_never_share_a_checkpoint(tmp_path, shared_data, monkeypatch):
    """Two runs that differ in epochs (or duration, corpus, ...) in one out_dir train in their own folders; a run folder
    holding a checkpoint written with other settings is refused, never resumed."""
    from dataclasses import replace
    import shutil
    import soundlab.recipes.respiratory as R
    from soundlab.train import CheckpointError
    monkeypatch.setenv('SOUNDLAB_DATA', str(shared_data))
    cfg = R.respiratory_config('smoke', method='sl', epochs=2, t_max=2, duration=1., out_dir=str(tmp_path / 'runs'))
    data = R.load_cycles(cfg, progress=False)
    a = R.run_once(cfg, data, 0, progress=False)
    b = R.run_once(replace(cfg, epochs=1, t_max=1), data, 0, progress=False)  # used to resume a's last.pt and train nothing
    assert (len(a['history']), len(b['history'])) == (2, 1) and a['run_dir'] != b['run_dir']
    for kw in (dict(duration=2.), dict(synth=dict(n_patients=7)), dict(per_clip=False), dict(views_in_one_pass=False),
               dict(select='val'), dict(amp=True), dict(lr=2e-3)):
        assert R.run_dir(replace(cfg, **kw), 0) != a['run_dir'], kw
    c = replace(cfg, epochs=3, t_max=3)
    shutil.copytree(a['run_dir'], R.run_dir(c, 0))                           # a folder holding another run's checkpoint
    with pytest.raises(CheckpointError, match=r'epochs: 2 -> 3'): R.run_once(c, data, 0, progress=False)

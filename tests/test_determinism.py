"""Same seed, same data, same device (CPU) -> byte-identical result tables.

The respiratory recipe's smoke preset with M-SCL (SpecAugment views drawn from the trainer's generator, SupCon
losses, then a linear evaluation: two Trainers) runs in two separate processes; their result tables (CSV and
Markdown, written by update_table), per-epoch histories (all but the wall-clock column) and test predictions
must be identical byte for byte."""
import os, sys, subprocess, textwrap, time
from pathlib import Path
import pandas as pd

SCRIPT = textwrap.dedent('''
    import sys, json
    from pathlib import Path
    import soundlab.recipes.respiratory as R
    from soundlab.train import update_table, precision_name
    out = Path(sys.argv[1])
    cfg = R.respiratory_config('smoke', method='mscl', duration=1., out_dir=str(out / 'runs'))
    row, runs = R.run_respiratory(cfg, progress=False)
    update_table(row, out / 'icbhi_results.csv', hidden=('tag', 'score_mean'),
                 precision=precision_name(cfg.device, cfg.amp), device=cfg.device)
    runs[0]['history'].drop(columns=['seconds']).to_csv(out / 'history.csv', index=False)
    (out / 'y_pred.txt').write_text(' '.join(map(str, runs[0]['y_pred'].tolist())))
''')

def test_same_seed_same_tables(tmp_path, shared_data, monkeypatch):
    t0 = time.time()
    monkeypatch.setenv('SOUNDLAB_DATA', str(shared_data))
    from soundlab.recipes.respiratory import load_cycles, respiratory_config
    load_cycles(respiratory_config('smoke', duration=1.), progress=False)     # corpus + cache once, then 2 runs side by side
    (tmp_path / 'run.py').write_text(SCRIPT)
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONHASHSEED': 'random'}
    procs = [subprocess.Popen([sys.executable, str(tmp_path / 'run.py'), str(tmp_path / k)], env=env, stderr=subprocess.PIPE, text=True)
             for k in ('a', 'b')]
    for p in procs: _, err = p.communicate(timeout=600); assert p.returncode == 0, err[-3000:]
    for name in ('icbhi_results.csv', 'icbhi_results.md', 'history.csv', 'y_pred.txt'):
        a, b = ((tmp_path / k / name).read_bytes() for k in ('a', 'b'))
        assert a == b, name  # exact: same seeds, same kernels, same order on one machine (not a cross-machine check)
    t = pd.read_csv(tmp_path / 'a' / 'icbhi_results.csv')
    assert len(t) == 1 and t.Method[0] == 'M-SCL' and 0 <= t.score_mean[0] <= 100
    assert len(pd.read_csv(tmp_path / 'a' / 'history.csv')) == 1 + 2             # 1 contrastive + 2 linear epochs
    print(f'determinism test: {time.time() - t0:.0f} s')

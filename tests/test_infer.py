"soundlab.infer: tagging the real mp3 fixture, the soundlab-tag command, and an hour-long file in bounded memory."
import json, subprocess, sys, textwrap
from pathlib import Path
import numpy as np, pandas as pd, pytest, soundfile as sf, torch
from soundlab.core import fixtures_dir
from soundlab.infer import tag, load_tagger
from soundlab.models.ast import ASTModel

MP3 = fixtures_dir() / 'panns' / 'R9_ZSCveAHg_7s.mp3'
LABELS = fixtures_dir() / 'panns' / 'audioset_class_labels_indices.csv'

@pytest.fixture(scope='module')
def tiny_ast(tmp_path_factory):
    torch.manual_seed(0)
    m = ASTModel(527, 16, 16, 128, 300, imagenet_pretrain=False, model_size='tiny224').eval()
    path = tmp_path_factory.mktemp('ckpt') / 'best.pt'
    torch.save({'model': m.state_dict(), 'epoch': 1}, path)
    return m, path

def test_tag_real_mp3(tiny_ast):
    m, _ = tiny_ast
    df = tag(MP3, m, LABELS, progress=False, top_k=5)             # 3-s windows (the model's 300 frames), 1.5-s hop
    assert df.window.tolist() == [0, 1, 2, 3, 'file'] and df.start.tolist()[:4] == [0., 1.5, 3., 4.5]
    assert df.end.iloc[-1] == pytest.approx(7.) and df.end.iloc[3] == pytest.approx(7.)
    S = df.attrs['scores']; assert S.shape == (4, 527) and ((S > 0) & (S < 1)).all()
    names = pd.read_csv(LABELS).display_name.tolist()
    top = [names[i] for i in np.argsort(-df.attrs['file_scores'])[:5]]
    assert df.iloc[-1][[f'label_{j}' for j in range(1, 6)]].tolist() == top

def test_cli(tiny_ast, tmp_path):
    _, ckpt = tiny_ast
    out = tmp_path / 'tags.csv'
    r = subprocess.run([sys.executable, '-m', 'soundlab.infer', str(MP3), '--checkpoint', str(ckpt), '--fstride', '16', '--tstride', '16',
                        '--labels', str(LABELS), '--window', '2', '--hop', '2', '--out', str(out), '--quiet'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith(f'{MP3}: ') and r.stdout.count(' (0.') == 3
    t = pd.read_csv(out); assert t.window.tolist() == ['0', '1', '2', '3', 'file']   # 2-s windows on 7 s: 3 full + a 1-s tail
    bad = subprocess.run([sys.executable, '-m', 'soundlab.infer', str(tmp_path / 'nope.wav'), '--checkpoint', str(ckpt)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and 'nope.wav' in bad.stderr

def _write_long(path:Path, minutes:int, sr:int=8000):
    "A long 8 kHz mono file written minute by minute (never whole in memory): noise with a tone every other minute."
    rng = np.random.default_rng(0); t = np.arange(60 * sr) / sr
    with sf.SoundFile(str(path), 'w', sr, 1, 'PCM_16') as f:
        for k in range(minutes): f.write((0.05 * rng.standard_normal(60 * sr) + (0.3 * np.sin(2 * np.pi * 440 * t) if k % 2 else 0)).astype(np.float32))
    return path

PROBE = textwrap.dedent('''
    import json, resource, sys, time, tracemalloc, torch
    from torch import nn
    from soundlab.infer import tag
    class Tiny(nn.Module):  # a tiny fbank classifier: band energies -> 2 classes
        def __init__(self): super().__init__(); self.fc = nn.Linear(128, 2)
        def forward(self, x): return self.fc(x.mean(1))
    torch.manual_seed(0); tracemalloc.start(); t = time.time()
    df = tag(sys.argv[1], Tiny(), ['a', 'b'], window=10., hop=10., batch_size=4, progress=False, norm=None)  # raw fbank
    print(json.dumps(dict(windows=len(df) - 1, seconds=time.time() - t, traced_peak=tracemalloc.get_traced_memory()[1],
                          max_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)))
''')

def _probe(path):
    r = subprocess.run([sys.executable, '-c', PROBE, str(path)], capture_output=True, text=True, timeout=900,
                       env={**__import__('os').environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])

def test_hour_long_file_bounded_memory(tmp_path):
    short, hour = _write_long(tmp_path / 'ten_minutes.wav', 10), _write_long(tmp_path / 'one_hour.wav', 60)
    assert sf.info(str(hour)).duration == 3600.
    a, b = _probe(short), _probe(hour)
    assert (a['windows'], b['windows']) == (60, 360)
    decoded = 3600 * 8000 * 4   # the hour as float32 at its own rate: 115 MB (230 MB resampled to 16 kHz)
    print(f"10 min: {a['seconds']:.1f} s, RSS {a['max_rss'] / 2**20:.0f} MiB, traced {a['traced_peak'] / 2**20:.1f} MiB; "
          f"60 min: {b['seconds']:.1f} s, RSS {b['max_rss'] / 2**20:.0f} MiB, traced {b['traced_peak'] / 2**20:.1f} MiB")
    assert b['max_rss'] - a['max_rss'] < decoded / 4, (a, b)        # six times the audio, (almost) the same peak memory
    assert b['traced_peak'] < 2 * a['traced_peak'] + 2**20 and b['traced_peak'] < decoded / 10, (a, b)

def test_panns_tagger_cli(tmp_path):
    "A PANNs Cnn6 checkpoint (random weights, PANNs' {'model': ...} layout) through `load_tagger` + `tag` and soundlab-tag."
    from soundlab.infer import tagger_defaults
    from soundlab.models.panns import Cnn6
    torch.manual_seed(0); ckpt = tmp_path / 'Cnn6_mAP=0.343.pth'
    torch.save({'iteration': 0, 'model': Cnn6().state_dict()}, ckpt)
    m = load_tagger(ckpt); d = tagger_defaults(m)
    assert (m.arch, d['sample_rate'], d['input']) == ('cnn6', 32000, 'waveform')
    df = tag(MP3, m, LABELS, window=3.5, hop=3.5, progress=False, **d)                 # 2 windows of 3.5 s at 32 kHz
    assert df.window.tolist() == [0, 1, 'file'] and ((df.attrs['scores'] > 0) & (df.attrs['scores'] < 1)).all()
    out = tmp_path / 'tags.csv'
    r = subprocess.run([sys.executable, '-m', 'soundlab.infer', str(MP3), '--checkpoint', str(ckpt), '--labels', str(LABELS),
                        '--window', '3.5', '--hop', '3.5', '--out', str(out), '--quiet'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    t = pd.read_csv(out); assert t.window.tolist() == ['0', '1', 'file']
    np.testing.assert_allclose(t.score_1.iloc[-1], df.score_1.iloc[-1], rtol=1e-4)     # the CLI picks the same defaults
    assert t.label_1.iloc[-1] == df.label_1.iloc[-1] and r.stdout.startswith(f'{MP3}: {t.label_1.iloc[-1]} (')

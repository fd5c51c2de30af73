"""soundlab.export: every registry family and the released tagger layouts through ONNX, onnxruntime against PyTorch on inputs
of several lengths; soundlab-export / soundlab-tag --backend onnx on a long recording give the PyTorch tags."""
import numpy as np, pandas as pd, pytest, soundfile as sf, torch
from soundlab.export import export_onnx, read_metadata, ort_session, OnnxModel, fix_frames, frontend_of, load_for_export, main as export_main
from soundlab.models.registry import create_model, list_models, model_family
from soundlab.infer import main as tag_main, tag, tagger_defaults
from soundlab.core import fixtures_dir

ATOL = 1e-4  # float32 through other kernels: sqrt(L*K)*2^-24 ~ 3e-5 of O(1) outputs (derivation in nbs/51_export.ipynb)

# one model per architecture of every registry family (small variants where the family has sizes)
FAMILY_MODELS = {'cnn6': {}, 'ast_tiny224': dict(input_tdim=128, fstride=16, tstride=16), 'effnet_b0': {}, 'resnet18': {}, 'vgglike': {},
                 'crnn': {}, 'fewshot_cnn': {}, 'fewshot_hybrid': {}}
DYNAMIC = {'panns': True, 'ast': False, 'psla': True, 'sed': True, 'fewshot': False}

def test_every_family_is_covered():
    assert {model_family(n) for n in FAMILY_MODELS} == {model_family(n) for n in list_models()}

def _max_err(sess, net, x):
    with torch.no_grad(): ref = net(x).float().numpy()
    got = sess.run(None, {'features': x.numpy()})[0]
    assert got.shape == ref.shape and np.abs(ref).max() < 10     # O(1) outputs: the tolerance's premise
    return float(np.abs(got - ref).max())

@pytest.mark.parametrize('name', list(FAMILY_MODELS))
def test_family_matches_onnxruntime(name, tmp_path):
    torch.manual_seed(0)
    m = create_model(name, n_classes=5, **FAMILY_MODELS[name]).eval()
    path = export_onnx(m, tmp_path / f'{name}.onnx')
    meta, sess = read_metadata(path), ort_session(path)
    spec = meta['input']; fam = model_family(name)
    assert meta['family'] == fam and (spec['time_axis'] is not None) == DYNAMIC[fam], spec
    assert len(meta['labels']) == 5 and meta['output']['kind'] == 'logits'
    shape = [d for d in spec['shape'][1:]]
    if DYNAMIC[fam]:   # batches of several sizes and lengths through the same graph
        for b, t in ((1, 101), (3, 257), (2, 1000)):
            x = torch.randn(b, *[t if d == 'time' else d for d in shape])
            assert _max_err(sess, m, x) <= ATOL, (name, b, t)
    else:              # the fixed frames: clips of several lengths padded/cut to them by the tagger's front end step
        om, fe = OnnxModel(path), frontend_of(meta)
        axis = spec['frames_axis']
        for b, seconds in ((1, 0.7), (3, 2.3), (2, 7.0)):
            w = torch.randn(b, int(seconds * spec['sample_rate']))
            x = fix_frames(fe(w), spec['frames'], axis)
            assert _max_err(sess, m, x) <= ATOL, (name, b, seconds)
            with torch.no_grad(): assert (om(w) - m(x)).abs().max() <= ATOL

def test_released_layouts_through_the_cli(tmp_path):
    "A PSLA file in the seed's released layout and a PANNs AudioSet checkpoint: soundlab-export reads them as soundlab-tag does."
    from soundlab.models.psla import EffNetAttention, released_state_dict
    from soundlab.models.panns import create_panns
    torch.manual_seed(0)
    ps = EffNetAttention(label_dim=7, b=0, pretrain=None, head_num=4).eval()
    torch.save(released_state_dict(ps), tmp_path / 'as_mdl_0.pth')
    assert export_main([str(tmp_path / 'as_mdl_0.pth'), str(tmp_path / 'psla.onnx'), '--labels', 'a,b,c,d,e,f,g']) == 0
    meta = read_metadata(tmp_path / 'psla.onnx')
    assert (meta['family'], meta['input']['time_axis'], meta['input']['window_frames'], meta['output']['kind']) == ('psla', 1, 1056, 'probabilities')
    assert meta['input']['frontend']['class'] == 'KaldiFbank' and meta['input']['frontend']['target_length'] == 1056
    sess, tagger = ort_session(tmp_path / 'psla.onnx'), load_for_export(tmp_path / 'as_mdl_0.pth')
    for t in (300, 1056):
        assert _max_err(sess, tagger, torch.randn(2, t, 128)) <= ATOL
    mp3 = fixtures_dir() / 'panns' / 'R9_ZSCveAHg_7s.mp3'   # the ONNX tagger's front end is the one soundlab-tag uses: same tags
    a = tag(mp3, tagger, list('abcdefg'), progress=False, **{k: v for k, v in tagger_defaults(tagger).items()})
    om = OnnxModel(tmp_path / 'psla.onnx'); d = om.tagger_defaults()
    b = tag(mp3, om, d['labels'], d['window'], sample_rate=d['sample_rate'], input='waveform', activation=d['activation'], progress=False)
    assert (a.filter(like='label_') == b.filter(like='label_')).all().all() and np.abs(a.attrs['scores'] - b.attrs['scores']).max() <= ATOL
    pn = create_panns('cnn6', sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmax=8000., classes_num=4).eval()
    torch.save({'model': pn.state_dict()}, tmp_path / 'Cnn6_16k.pth')
    assert export_main([str(tmp_path / 'Cnn6_16k.pth'), str(tmp_path / 'panns.onnx')]) == 0
    meta = read_metadata(tmp_path / 'panns.onnx')
    assert (meta['input']['sample_rate'], meta['input']['frontend']['class'], meta['output']) == (16000, 'PannsLogmel', {'kind': 'probabilities', 'activation': None})
    assert export_main([str(tmp_path / 'as_mdl_0.pth'), str(tmp_path / 'x.onnx'), '--model', 'nope']) == 2

def test_tag_backend_onnx_long_recording(tmp_path, capsys):
    "soundlab-tag --backend onnx on a recording of 80 s (15 windows): the PyTorch tags of every window and of the file."
    from soundlab.models.panns import create_panns
    torch.manual_seed(0)
    pn = create_panns('cnn6', sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmax=8000., classes_num=6).eval()
    torch.save({'model': pn.state_dict()}, tmp_path / 'Cnn6_16k.pth')
    sr, rng = 16000, np.random.default_rng(0)
    t = np.arange(80 * sr) / sr
    wav = (0.05 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * t / 30) > 0)).astype(np.float32)
    sf.write(tmp_path / 'long.wav', wav, sr)
    labels = tmp_path / 'labels.csv'
    pd.DataFrame(dict(index=range(6), mid=[f'/m/{i}' for i in range(6)], display_name=list('uvwxyz'))).to_csv(labels, index=False)
    assert export_main([str(tmp_path / 'Cnn6_16k.pth'), str(tmp_path / 'panns.onnx'), '--labels', str(labels)]) == 0
    common = [str(tmp_path / 'long.wav'), '--quiet', '--top-k', '3']
    assert tag_main(common + ['--checkpoint', str(tmp_path / 'Cnn6_16k.pth'), '--labels', str(labels), '--out', str(tmp_path / 'pt.csv')]) == 0
    assert tag_main(common + ['--checkpoint', str(tmp_path / 'panns.onnx'), '--backend', 'onnx', '--out', str(tmp_path / 'onnx.csv')]) == 0
    pt, ox = pd.read_csv(tmp_path / 'pt.csv'), pd.read_csv(tmp_path / 'onnx.csv')   # labels from the file's metadata
    assert len(pt) == 16 and pt.window.iloc[-1] == 'file'                             # 10-s windows, 5-s hop, + the file
    labels_of = lambda df: df[['window', 'start', 'end'] + [f'label_{j}' for j in (1, 2, 3)]]
    pd.testing.assert_frame_equal(labels_of(ox), labels_of(pt))
    for j in (1, 2, 3): assert np.abs(ox[f'score_{j}'] - pt[f'score_{j}']).max() <= ATOL
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == out[-2] and out[-1].startswith(str(tmp_path / 'long.wav'))     # the same printed file tags

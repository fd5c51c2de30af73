"""The real `xares` package (soundlab[eval]) on soundlab encoders: its checker on every registered encoder, and its
MLP + kNN evaluation end to end on soundlab-written WebDataset tars of tiny synthetic corpora, offline."""
import json, tarfile
import pytest, torch
xares = pytest.importorskip('xares', reason='the X-ARES benchmark is the eval extra: pip install -e .[eval] (make install does)')
from xares.audio_encoder_checker import check_audio_encoder
from soundlab.models.registry import list_models, model_family
from soundlab.encoders import SoundlabEncoder, load_encoder
from soundlab.probe import load_corpus, run_xares, write_xares_tars, xares_encoder

def test_checker_accepts_every_registered_encoder():
    names = list_models(); assert len(names) >= 20  # all of them (20 today)
    for name in names:  # AST at 128 input frames: the same network and interface, smoke-sized
        kw = dict(input_tdim=128) if model_family(name) == 'ast' else {}
        enc = xares_encoder(SoundlabEncoder(*load_encoder(name, **kw)))
        assert type(enc).__name__.endswith('Encoder') and check_audio_encoder(enc), name

@pytest.fixture
def offline(monkeypatch):
    import xares.task
    def refuse(*a, **k): raise AssertionError('xares tried to download')
    monkeypatch.setattr(xares.task, 'download_zenodo_record', refuse)
    monkeypatch.setattr(xares.task, 'download_hf_model_to_local', refuse)

@pytest.mark.parametrize('task,synth', [
    ('esc50', dict(categories='esc10', clips_per_class=5, duration=1., sample_rate=16000)),        # k-fold task
    ('vocalsound', dict(n_speakers=(4, 2, 2), durations=(0.5, 1.))),                               # train / valid / test task
])
def test_xares_end_to_end(tmp_path, shared_data, monkeypatch, offline, task, synth):
    monkeypatch.setenv('SOUNDLAB_DATA', str(shared_data))
    corpus = load_corpus(task, synth=synth)
    enc = SoundlabEncoder(*load_encoder('fewshot_cnn'))
    res = run_xares(corpus, enc, tmp_path / 'env', epochs=2, num_encoder_workers=0)
    assert res['task'] == task and 0 <= res['mlp'] <= 1 and 0 <= res['knn'] <= 1, res
    d = tmp_path / 'env' / task
    enc_dir = d / 'embeddings' / res['encoder']
    assert (d / '.audio_tar_ready').is_file() and (enc_dir / '.encoded_tar_ready').is_file()
    with tarfile.open(sorted(enc_dir.glob('*.tar'))[0]) as tf:  # X-ARES's encoded tars: one (T', D) array + the JSON label per clip
        m = tf.getmembers(); js = json.loads(tf.extractfile(next(x for x in m if x.name.endswith('.json'))).read())
    assert ('label' in js) and len(m) >= 2
    n = sum(1 for p in d.glob('*.tar') for x in tarfile.open(p).getmembers() if x.name.endswith('.wav'))
    assert n == len(corpus.records)  # every clip written once, under the names the task's config expects

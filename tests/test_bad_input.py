"""Bad input: every damage of `soundlab.synth.corrupt_corpus` x every dataset reader x both policies.

'raise' must stop with an error naming the file and the reason; 'skip' must carry on, leave out exactly the damaged
item(s), and list each with its reason (written to skipped.csv). Valid odd files (stereo 24-bit, a 4 kHz file among
higher-rate ones) must load under both policies. A silent clip passes the readers and is caught when features are
computed (precompute), as are a clip damaged after the reader listed it and a clip with NaN samples (the feature
stage of SegmentDataset / FSDnoisy18k / TaggingDataset)."""
import shutil
from pathlib import Path
import numpy as np, pandas as pd
import pytest, torch
from soundlab import synth
from soundlab.core import SoundlabError
from soundlab.data.core import BadFiles, SegmentDataset, precompute
from soundlab.data.icbhi import prepare_icbhi
from soundlab.data.sprsound import prepare_sprsound
from soundlab.data.fsdnoisy18k import prepare_fsdnoisy18k, FSDnoisy18k
from soundlab.data.tagging import TaggingDataset
import soundfile as sf
from soundlab.features import FeatureCache, RespiratoryMel

def _segments(recs, bad, cache): return SegmentDataset(recs, duration=2., frontend=RespiratoryMel(), cache=cache, on_bad_file=bad)
def _seg_pre(ds): return precompute(ds, progress=False)

READERS = {  # kind: (make a small corpus, read it under a policy, a feature dataset over records, fill its cache)
    'icbhi': (lambda r: synth.make_icbhi(r, n_patients=8, cycles_per_recording=(2, 3), recordings_per_patient=(1, 2)),
              lambda root, bad: prepare_icbhi(root, on_bad_file=bad), _segments, _seg_pre),
    'sprsound': (lambda r: synth.make_sprsound(r, n_patients=8, events_per_recording=(2, 3)),
                 lambda root, bad: prepare_sprsound(root, on_bad_file=bad), _segments, _seg_pre),
    'fsdnoisy18k': (lambda r: synth.make_fsdnoisy18k(r, n_per_class=2, n_test_per_class=1, durations=(1., 2.)),
                    lambda root, bad: prepare_fsdnoisy18k(root, on_bad_file=bad),
                    lambda recs, bad, cache: FSDnoisy18k('', 'train', records=recs, cache=cache, on_bad_file=bad),
                    lambda ds: ds.precompute(progress=False)),
}
# the AST / PSLA corpora: their feature stage is TaggingDataset(on_bad_file=...).precompute; MetaAudio ships
# features (.npy), its bad files are found by the reader (no audio feature stage)
def _tagging(recs, bad, cache): return TaggingDataset(recs, 200, target_length=64, train=False, cache=cache, on_bad_file=bad)
def _tg_pre(ds): return ds.precompute(progress=False)
TAGGING = ('esc50', 'vocalsound', 'speechcommands', 'fsd50k')
OTHERS = {
    'esc50': (lambda r: synth.make_esc50(r, categories='esc10', clips_per_class=5, duration=1.), 'soundlab.data.esc50:prepare_esc50'),
    'vocalsound': (lambda r: synth.make_vocalsound(r, n_speakers=(2, 1, 1)), 'soundlab.data.vocalsound:prepare_vocalsound'),
    'speechcommands': (lambda r: synth.make_speechcommands(r, words=('yes', 'no', 'up'), n_speakers=10), 'soundlab.data.speechcommands:prepare_speechcommands'),
    'fsd50k': (lambda r: synth.make_fsd50k(r, n_dev=30, n_eval=10, durations=(1., 2.)), 'soundlab.data.fsd50k:prepare_fsd50k'),
    'metaaudio': (lambda r: synth.make_metaaudio(r, datasets=('ESC-50-master',), n_classes=6, samples_per_class=(3, 4)) / 'ESC-50-master',
                  'soundlab.data.metaaudio:prepare_metaaudio'),
}
def _other(kind, make, target):
    def prepare(root, bad):
        from soundlab.dist import resolve
        return resolve(target)(root, on_bad_file=bad)
    return (make, prepare, *((_tagging, _tg_pre) if kind in TAGGING else (None, None)))
READERS.update({k: _other(k, *v) for k, v in OTHERS.items()})
FEATURE_KINDS = [k for k in READERS if READERS[k][2] is not None]

@pytest.fixture(scope='module')
def corpora(tmp_path_factory):
    base = tmp_path_factory.mktemp('bad_input_base')
    return {k: READERS[k][0](base / k) for k in READERS}

def _damaged(corpora, kind, tmp_path, cases):
    root = tmp_path / kind; shutil.copytree(corpora[kind], root)
    return root, synth.corrupt_corpus(root, kind, cases)

def _all(recs): return [r for split in recs.values() for r in split]
def _k(p): p = Path(p); return f'{p.parent.name}/{p.name}'   # file names repeat across Speech Commands' word folders

def _features(kind, recs, bad, cache_dir, must):
    "Feature dataset over the records of file `must` and two others; precompute under `bad`."
    pick = [r for r in recs if _k(r.path) == _k(must)][:2] + [r for r in recs if _k(r.path) != _k(must)][:2]
    ds = READERS[kind][2](pick, bad, FeatureCache(cache_dir))
    return ds, READERS[kind][3](ds)

@pytest.mark.parametrize('policy', ['raise', 'skip'])
@pytest.mark.parametrize('case', synth.BAD_CASES)
@pytest.mark.parametrize('kind', list(READERS))
def test_bad_input(kind, case, policy, corpora, tmp_path):
    prepare = READERS[kind][1]
    root, cases = _damaged(corpora, kind, tmp_path, [case])
    if case not in cases: pytest.skip(f'{case} does not apply to {kind}')  # FSDnoisy18k has no demographic table
    c = cases[case]; bad = BadFiles(policy)
    if c.expect == 'bad' and c.stage == 'prepare' and policy == 'raise':
        with pytest.raises(SoundlabError) as e: prepare(root, bad)
        assert c.path.name in str(e.value) and c.reason in str(e.value), str(e.value)
        return
    recs = _all(prepare(root, bad)); base = _all(prepare(corpora[kind], 'raise'))
    names = {_k(r.path) for r in recs}
    if c.expect == 'bad' and c.stage == 'prepare':                          # 'skip': listed with its reason, left out
        hits = [why for p, why in bad.skipped if _k(p) == _k(c.path)]
        assert hits and any(c.reason in h for h in hits), bad.skipped
        if c.path.suffix == '.wav': assert _k(c.path) not in names            # the damaged recording is out ...
        kept = {r.id for r in recs}; lost = {r.id for r in base} - kept
        assert lost <= {r.id for r in base if r.path.stem.split('_')[0] == c.path.stem.split('_')[0] or r.path.name == c.path.name
                        or (case == 'unknown_label' and kind not in ('icbhi', 'sprsound'))}, lost   # ... and nothing else
        if case in ('row_past_end', 'unknown_label') and kind in ('icbhi', 'sprsound'): assert kept == {r.id for r in base}  # only the bad row
        out = bad.write(tmp_path / 'skipped.csv'); df = pd.read_csv(out)
        assert df.path.map(lambda p: Path(p).name).eq(c.path.name).any() and list(df.columns) == ['path', 'reason']
        return
    assert bad.skipped == [] and _k(c.path) in names                          # the readers accept the file
    if READERS[kind][2] is None:                                             # MetaAudio: no audio feature stage
        assert c.expect == 'ok', f'{kind}: a feature-stage case with no feature dataset'
        return
    ds, n = _features(kind, recs, bad, tmp_path / 'cache', c.path) if c.expect == 'ok' or policy == 'skip' else (None, None)
    if c.expect == 'ok':
        assert n == len(ds.records) >= 3 and bad.skipped == []
        if case == 'low_rate': assert {r.sample_rate for r in recs if _k(r.path) == _k(c.path)} == {4000}
        xs = [ds[i]['x'] for i in range(len(ds))]                               # clips differ in length
        assert all(torch.isfinite(x).all() and x.std() > 0 for x in xs)
    elif policy == 'raise':                                                   # silent clip, found by precompute
        with pytest.raises(SoundlabError) as e: _features(kind, recs, bad, tmp_path / 'cache', c.path)
        assert c.path.name in str(e.value) and c.reason in str(e.value), str(e.value)
    else:
        assert [_k(p) for p, _ in bad.skipped] and {_k(p) for p, _ in bad.skipped} == {_k(c.path)}
        assert c.reason in bad.skipped[0][1] and _k(c.path) not in {_k(r.path) for r in ds.records} and n == len(ds.records) == 2

DAMAGE_LATER = {'decode': (lambda p, x, sr: p.write_bytes(b'RIFF' + bytes(64)), 'not a readable audio file'),  # after the reader read it
                'nan': (lambda p, x, sr: sf.write(p, np.where(np.arange(len(x)) % (sr // 10) == 0, np.nan, x), sr, subtype='FLOAT'), 'non-finite')}
# (a NaN every 0.1 s: every segment of the file has one, so a segment corpus drops all of that file's segments)

@pytest.mark.parametrize('policy', ['raise', 'skip'])
@pytest.mark.parametrize('damage', list(DAMAGE_LATER))
@pytest.mark.parametrize('kind', FEATURE_KINDS)
def test_feature_stage(kind, damage, policy, corpora, tmp_path):
    "A clip that stops decoding after it was listed, or that decodes to NaN: caught when features are computed."
    root = tmp_path / kind; shutil.copytree(corpora[kind], root)
    recs = _all(READERS[kind][1](root, 'raise')); p = recs[-1].path
    x, sr = sf.read(p, dtype='float32'); DAMAGE_LATER[damage][0](p, x, sr); why = DAMAGE_LATER[damage][1]
    bad = BadFiles(policy)
    if policy == 'raise':
        with pytest.raises(SoundlabError) as e: _features(kind, recs, bad, tmp_path / 'cache', p)
        assert p.name in str(e.value) and why in str(e.value), str(e.value)
        return
    ds, n = _features(kind, recs, bad, tmp_path / 'cache', p)
    assert {_k(q) for q, _ in bad.skipped} == {_k(p)} and why in bad.skipped[0][1], bad.skipped
    assert _k(p) not in {_k(r.path) for r in ds.records} and n == len(ds.records) == 2

@pytest.mark.parametrize('kind', FEATURE_KINDS)
def test_all_cases_at_once(kind, corpora, tmp_path):
    "Every damage in one corpus: 'raise' stops at one of them; 'skip' reads the rest and lists them all."
    root, cases = _damaged(corpora, kind, tmp_path, synth.BAD_CASES)
    with pytest.raises(SoundlabError) as e: READERS[kind][1](root, 'raise')
    assert any(c.path.name in str(e.value) for c in cases.values())
    bad = BadFiles('skip'); recs = _all(READERS[kind][1](root, bad))
    listed = {_k(p) for p, _ in bad.skipped}
    assert {_k(c.path) for c in cases.values() if c.expect == 'bad' and c.stage == 'prepare'} <= listed
    assert listed.isdisjoint({_k(c.path) for c in cases.values() if c.expect == 'ok' or c.stage == 'features'})
    ds, n = _features(kind, recs, bad, tmp_path / 'cache', cases['silent_clip'].path)
    assert _k(cases['silent_clip'].path) in {_k(p) for p, _ in bad.skipped} and n == len(ds.records) == 2
    assert len(pd.read_csv(bad.write(tmp_path / 'skipped.csv'))) == len(bad.skipped)

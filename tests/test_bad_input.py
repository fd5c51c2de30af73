"""Bad input: every damage of `soundlab.synth.corrupt_corpus` x every dataset reader x both policies.

'raise' must stop with an error naming the file and the reason; 'skip' must carry on, leave out exactly the damaged
item(s), and list each with its reason (written to skipped.csv). Valid odd files (stereo 24-bit, a 4 kHz file among
higher-rate ones) must load under both policies. A silent clip passes the readers and is caught when features are
computed (precompute)."""
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
# the AST / PSLA / few-shot corpora (readers of other helpers): the layout stage; their datasets (TaggingDataset,
# MetaAudio) compute features on the fly with no bad-clip policy, so the silent clip is not checked for them
OTHERS = {
    'esc50': (lambda r: synth.make_esc50(r, categories='esc10', clips_per_class=5, duration=1.), 'soundlab.data.esc50:prepare_esc50'),
    'vocalsound': (lambda r: synth.make_vocalsound(r, n_speakers=(2, 1, 1)), 'soundlab.data.vocalsound:prepare_vocalsound'),
    'speechcommands': (lambda r: synth.make_speechcommands(r, words=('yes', 'no', 'up'), n_speakers=10), 'soundlab.data.speechcommands:prepare_speechcommands'),
    'fsd50k': (lambda r: synth.make_fsd50k(r, n_dev=30, n_eval=10, durations=(1., 2.)), 'soundlab.data.fsd50k:prepare_fsd50k'),
    'metaaudio': (lambda r: synth.make_metaaudio(r, datasets=('ESC-50-master',), n_classes=6, samples_per_class=(3, 4)) / 'ESC-50-master',
                  'soundlab.data.metaaudio:prepare_metaaudio'),
}
def _other(make, target):
    def prepare(root, bad):
        from soundlab.dist import resolve
        return resolve(target)(root, on_bad_file=bad)
    return (make, prepare, None, None)
READERS.update({k: _other(*v) for k, v in OTHERS.items()})
# known gaps of other helpers' readers: under on_bad_file='skip' they still raise for these (reported to the lead)
NOT_YET = {('esc50', 'unknown_label'), ('speechcommands', 'unknown_label'), ('vocalsound', 'unknown_label'), ('fsd50k', 'unknown_label')}

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
    pick = [r for r in recs if r.path.name == must][:2] + [r for r in recs if r.path.name != must][:2]
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
    if policy == 'skip' and (kind, case) in NOT_YET:                         # still checked: passes once it complies
        try: prepare(root, BadFiles('skip'))
        except SoundlabError as e: pytest.xfail(f'{kind} reader still raises for {case} under skip: {e}')
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
    if READERS[kind][2] is None:
        if c.expect == 'bad': pytest.skip(f'{kind}: its dataset has no feature-stage bad-clip policy (not done)')
        if case == 'low_rate': assert {r.sample_rate for r in recs if _k(r.path) == _k(c.path)} == {4000}
        return
    ds, n = _features(kind, recs, bad, tmp_path / 'cache', c.path.name) if c.expect == 'ok' or policy == 'skip' else (None, None)
    if c.expect == 'ok':
        assert n == len(ds.records) >= 3 and bad.skipped == []
        if case == 'low_rate': assert {r.sample_rate for r in recs if r.path.name == c.path.name} == {4000}
        xs = [ds[i]['x'] for i in range(len(ds))]                               # clips differ in length
        assert all(torch.isfinite(x).all() and x.std() > 0 for x in xs)
    elif policy == 'raise':                                                   # silent clip, found by precompute
        with pytest.raises(SoundlabError) as e: _features(kind, recs, bad, tmp_path / 'cache', c.path.name)
        assert c.path.name in str(e.value) and c.reason in str(e.value), str(e.value)
    else:
        assert [Path(p).name for p, _ in bad.skipped] and {Path(p).name for p, _ in bad.skipped} == {c.path.name}
        assert c.reason in bad.skipped[0][1] and c.path.name not in {r.path.name for r in ds.records} and n == len(ds.records) == 2

@pytest.mark.parametrize('kind', ['icbhi', 'sprsound', 'fsdnoisy18k'])
def test_all_cases_at_once(kind, corpora, tmp_path):
    "Every damage in one corpus: 'raise' stops at one of them; 'skip' reads the rest and lists them all."
    root, cases = _damaged(corpora, kind, tmp_path, synth.BAD_CASES)
    with pytest.raises(SoundlabError) as e: READERS[kind][1](root, 'raise')
    assert any(c.path.name in str(e.value) for c in cases.values())
    bad = BadFiles('skip'); recs = _all(READERS[kind][1](root, bad))
    listed = {Path(p).name for p, _ in bad.skipped}
    assert {c.path.name for c in cases.values() if c.expect == 'bad' and c.stage == 'prepare'} <= listed
    assert listed.isdisjoint({c.path.name for c in cases.values() if c.expect == 'ok' or c.stage == 'features'})
    ds, n = _features(kind, recs, bad, tmp_path / 'cache', cases['silent_clip'].path.name)
    assert cases['silent_clip'].path.name in {Path(p).name for p, _ in bad.skipped} and n == len(ds.records) == 2
    assert len(pd.read_csv(bad.write(tmp_path / 'skipped.csv'))) == len(bad.skipped)

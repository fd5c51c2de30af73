"""Conformance with seed 000 (Moummad & Farrugia, WASPAA 2023, respiratory M-SCL): soundlab equals the seed's own code.

The pinned numbers in tests/conformance/ were produced ONCE by running the seed's code (github.com/ilyassmoummad/
scl_icbhi2017, WASPAA version with M-SCL as in the fork michiel-j/SCL_ICBHI2017 @935d509: dataset.py, utils.py,
losses.py, models.py, ce.py, scl.py, hybrid.py, mscl.py) from a scratch copy outside this repository, on inputs built
here by `conformance_corpus` / `step_inputs` (the reference code is not part of soundlab). See the README section
"Conformance" for the table of what equals the reference, to what tolerance, and what deliberately differs.
"""
import math
from pathlib import Path
import numpy as np
import pytest, torch
import soundfile as sf

PINS = Path(__file__).parent / 'conformance'
WAVE_STRIDE, MEL_STRIDE = 61, 5  # pinned waveforms: every 61st sample; log-mels: every 5th frame (all 64 bands)

# ---------------------------------------------------------------------------------------------------------------
# the corpus: deterministic, from soundlab.synth (4, 10 and 44.1 kHz; 16- and 24-bit; one stereo 24-bit file;
# one cycle ending 2 s past the end of its recording, one longer than 8 s)

def conformance_corpus(root) -> Path:
    "Write the conformance corpus to `root` (a fresh folder) and return it."
    from soundlab import synth
    root = synth.make_icbhi(Path(root), n_patients=5, cycles_per_recording=(2, 3), recordings_per_patient=(1, 1), seed=1)
    synth.corrupt_corpus(root, 'icbhi', ['stereo_24bit'])
    w = next(w for w in sorted(root.glob('*.wav')) if w.stem.endswith('Meditron'))  # a 10 kHz recording
    dur = sf.info(w).duration
    with open(w.with_suffix('.txt'), 'a') as f: f.write(f'{dur - 0.5:.3f}\t{dur + 2:.3f}\t1\t0\n')
    w = next(w for w in sorted(root.glob('*.wav')) if sf.info(w).channels == 2)  # the stereo 24-bit file (8.5 s)
    with open(w.with_suffix('.txt'), 'a') as f: f.write('0.100\t8.400\t0\t0\n')   # a cycle longer than 8 s: cropped
    return root

def seed_cycle_order(root) -> list:
    "(file name, onset) of every cycle in the order of the seed's metadata.csv: recordings by name, cycles as annotated."
    out = []
    for w in sorted(Path(root).glob('*.wav')):
        out += [(w.name, float(on)) for on in np.loadtxt(w.with_suffix('.txt'), ndmin=2)[:, 0]]
    return out

@pytest.fixture(scope='module')
def corpus(tmp_path_factory): return conformance_corpus(tmp_path_factory.mktemp('conformance') / 'icbhi')

@pytest.fixture(scope='module')
def cycles(corpus):
    "soundlab's cycles of both splits: (records, waveforms (N, 128000)), with the default settings (8 s, 16 kHz, circular)."
    from soundlab.data.core import BadFiles
    from soundlab.data.icbhi import ICBHI, prepare_icbhi
    bad = BadFiles('raise'); recs = prepare_icbhi(corpus, on_bad_file=bad)
    out = {s: (recs[s], torch.stack([ICBHI(corpus, s, records=recs[s]).waveform(i) for i in range(len(recs[s]))]))
           for s in ('train', 'test')}
    return out, bad

def _maxdiff(a, b) -> float: return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())

# ---------------------------------------------------------------------------------------------------------------
# 1. cycles: the seed's count, order, labels and waveforms

def test_cycles_equal_seed(cycles):
    pin = np.load(PINS / 'respiratory_cycles.npz'); (out, bad) = cycles
    for s in ('train', 'test'):
        recs, x = out[s]
        assert [f'{r.path.name}|{r.start!r}' for r in recs] == list(pin[f'{s}_order'])          # same cycles, same order
        assert [r.labels for r in recs] == pin[f'{s}_labels'].tolist()
        assert x.shape == (len(recs), int(pin[f'{s}_wave_len'][0]))
        assert _maxdiff(x[:, ::WAVE_STRIDE], pin[f'{s}_wave_sub']) <= 1e-6                    # measured: 0 (bit-identical)
        np.testing.assert_allclose(x.double().sum(1).numpy(), pin[f'{s}_wave_sum'], rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose((x.double() ** 2).sum(1).numpy(), pin[f'{s}_wave_sumsq'], rtol=1e-9)
    # the cycle past the end of its recording is kept (the seed's count) and listed, not skipped
    assert bad.skipped == [] and len(bad.clipped) == 1 and 'past the end' in bad.clipped[0][1]
    assert sum(r.custom['past_end'] for s in out for r in out[s][0]) == 1

def test_cycles_past_end_raise_is_optional(corpus):
    from soundlab.core import DatasetError
    from soundlab.data.icbhi import prepare_icbhi
    with pytest.raises(DatasetError, match='past the end'): prepare_icbhi(corpus, past_end='raise')

def test_logmels_equal_seed(cycles):
    "Per clip: the seed's frontend on a batch of one. Per batch (per_clip=False): the seed's min-max over the whole batch."
    from soundlab.features import RespiratoryMel
    pin = np.load(PINS / 'respiratory_cycles.npz'); (out, _) = cycles
    for s in ('train', 'test'):
        m = RespiratoryMel()(out[s][1])
        assert tuple(m.shape) == tuple(pin[f'{s}_mel_shape'])
        assert _maxdiff(m[:, 0, :, ::MEL_STRIDE], pin[f'{s}_mel_clip_sub']) <= 1e-5                # measured: 0
    mb = RespiratoryMel(per_clip=False)(out['test'][1])
    assert _maxdiff(mb[:, 0, :, ::MEL_STRIDE], pin['test_mel_batch_sub']) <= 1e-5                  # measured: 0
    # the deliberate difference: soundlab's recipe scales each clip on its own (cacheable, independent of the batch);
    # the seed scales over the whole training batch. On this 6-cycle batch: max 6.9, mean 2.6 standardised units.
    d = (m - mb).abs()
    assert 1 < float(d.max()) < 20 and 0.5 < float(d.mean()) < 10, (float(d.max()), float(d.mean()))

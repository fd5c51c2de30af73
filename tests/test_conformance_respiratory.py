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

from conftest import check_close

PINS = Path(__file__).parent / 'conformance'
WAVE_STRIDE, MEL_STRIDE = 61, 5  # pinned waveforms: every 61st sample; log-mels: every 5th frame (all 64 bands)

# ---------------------------------------------------------------------------------------------------------------
# tolerances: the pins are float32 results of the seed's code on one machine; soundlab's are float32 results of other
# kernels (another FFT, GEMM, convolution blocking, vector width: AVX2, AVX-512, AMX, MKL's Intel and AMD paths).
# Every bound below is the rounding of the computation itself, for any summation order, on both sides.
U = 2.0 ** -24  # float32 unit roundoff (half an ulp of 1)
N_TAPS, SUM_W = 475, 1.87  # resampling: the longest sinc kernel of the corpus (44.1 -> 16 kHz), max sum |w| of a phase (4/10 kHz)
WAVE_TOL = 2 * N_TAPS * U * SUM_W  # 1.06e-4: a dot product of n terms errs by <= n u sum|w x| (|x| <= 1), on both sides
# log-mels: the pinned waveforms deviate from the exact (float64) resampling at isolated samples by up to 3.8e-4 of the
# frame RMS (the seed builds its sinc kernel in float32; soundlab's, built in float64, is within 3e-8), 3-4 such
# samples per 1024-sample frame: a relative input error of 3.8e-4 sqrt(k/1024) of the frame's norm; each side's
# FFT (10 radix-2 stages) adds <= 5 u log2(1024) = 3e-6 of it (Higham, Accuracy and Stability, 24.1)
RHO_MEL = 3.8e-4 * (8 / 1024) ** 0.5 + 2 * 5 * U * 10  # up to 8 such samples a frame (twice the density seen)
# one training step of CNN6: forward 4 conv layers (reductions <= 25 x 256 = 6400 terms) + pooling + heads, backward
# twice as long; each reduction errs by ~ sqrt(n) u of its terms (<= 80 u), summed over ~12 layers, both sides
RHO_FWD = 2 * 6 * 80 * U    # 5.7e-5 relative: losses, batch statistics
RHO_GRAD = 2 * 12 * 80 * U  # 1.1e-4 of a tensor's largest gradient
EPS_ADAM = 1e-8             # torch.optim.Adam's eps (the seed's default)

def logmel_tolerance(waves, fm, rho:float, per_clip:bool=True) -> torch.Tensor:
    """Per-element bound of |soundlab - seed| for `fm` = RespiratoryMel(per_clip) on `waves` (B, T), (B, 1, mels, frames).
    First order in a relative error `rho` of each frame (spread over its n FFT bins, z = 6 for the largest of ~1e5 bins):
    |dX_k| = 6 rho ||X||_2 / sqrt(n); band power dP = sum_k w_k (2|X_k| dX_k + dX_k^2) + 2 n u P (the mel sum, both
    sides); dB: 10 log10(1 + dP/P) -- large only in bands far below their frame --; min-max: the errors of the
    clip's min and max move every element; standardising divides by std (0.0255); + 8 ulps of |value| <= 25."""
    import math
    mel = fm.mel; n = mel.n_fft; win = mel.spectrogram.window.double()
    X = torch.stft(waves.double(), n, mel.hop_length, n, win, center=True, pad_mode='reflect', return_complex=True).abs()
    dX = 6 * rho * torch.sqrt(2 * (X ** 2).sum(1, keepdim=True)) / math.sqrt(n)   # ||X||_2 over all n bins (Hermitian)
    fb = mel.mel_scale.fb.double()
    P = torch.einsum('bkf,km->bmf', X ** 2, fb).clamp_min(fm.to_db.amin)
    dP = torch.einsum('bkf,km->bmf', 2 * X * dX + dX ** 2, fb) + 2 * fb.shape[0] * U * P
    ddb, db = 10 / math.log(10) * torch.log1p(dP / P), 10 * torch.log10(P)
    dims = (1, 2) if per_clip else (0, 1, 2)
    lo, hi = db.amin(dims, keepdim=True), db.amax(dims, keepdim=True)
    dlo, dhi = (ddb * (db == lo)).amax(dims, keepdim=True), (ddb * (db == hi)).amax(dims, keepdim=True)
    scaled = (ddb + dlo) / (hi - lo) + (db - lo) / (hi - lo) * (dlo + dhi) / (hi - lo)
    return (scaled / fm.std + 8 * U * 25)[:, None].float()

def adam_step_tolerance(model, before:torch.Tensor, lr:float, wd:float, rho:float) -> tuple[np.ndarray, np.ndarray]:
    """(tol, free): per-parameter bound (in units of lr) of |soundlab - seed| on one first Adam step from the same
    weights, and where the update is free to take any value. Adam's first update is lr g / (|g| + eps), g = grad + wd w:
    +-lr wherever |g| >> eps, so a gradient error d moves it by 2 eps d / (|g| - d + eps)^2; where |g| <= d (a gradient
    that is 0 up to rounding) it can take any value in [-lr, lr], a sign flip included: `free`. d = rho max|g| of the
    parameter's tensor (0 where the gradient is exactly 0). Floor: each side rounds w_after and the update and reads
    the update back as (w_after - w_before) / lr in float32, w_before itself a few ulps off where the fills differ:
    <= 6 ulp(|w| + 2 lr) a side, ulp(v) <= 2 u |v|."""
    tol, free, i = [], [], 0
    for p in model.parameters():
        w0 = before[i:i + p.numel()].reshape(p.shape).double(); i += p.numel()
        floor = 2 * 6 * 2 * U * (torch.maximum(w0.abs(), p.detach().double().abs()) + 2 * lr) / lr
        g = (p.grad.double() if p.grad is not None else torch.zeros_like(w0)) + wd * w0  # no grad: unused, not updated
        # an exact 0 gradient (a unit or input nothing reached) has no terms to round: 0 on every kernel
        d = torch.where(p.grad.double() != 0, rho * g.abs().max(), 0.) if p.grad is not None else torch.zeros_like(g)
        tol.append((2 * EPS_ADAM * d / (g.abs() - d + EPS_ADAM) ** 2 + floor).clamp(max=2.).reshape(-1))
        free.append((g.abs() <= d).reshape(-1) & (p.grad is not None))
    return torch.cat(tol).numpy(), torch.cat(free).numpy()

def check_adam_step(delta, pin_sub, tol, free, what:str='weight updates / lr'):
    "Every sampled update within `tol`, except the few `free` ones (a gradient that is 0 up to rounding: any value)."
    sub, fr = tol[::STRIDE], free[::STRIDE]
    assert fr.mean() < 0.05, f'{fr.mean():.1%} of the updates are free (gradients 0 up to rounding): the check would be empty'
    check_close(f'{what}, every {STRIDE}th ({fr.sum()} free)', delta[::STRIDE][~fr], pin_sub[~fr], atol=sub[~fr])

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
        check_close(f'{s} waveforms, every {WAVE_STRIDE}th sample', x[:, ::WAVE_STRIDE], pin[f'{s}_wave_sub'], atol=WAVE_TOL)
        # every sample: |sum (x+d)^2 - sum x^2| <= 2 max|x| sum_i |d_i|, |d_i| <= 2 n u sum|w| |x|_local (as WAVE_TOL)
        check_close(f'{s} sum of squares per cycle', (x.double() ** 2).sum(1), pin[f'{s}_wave_sumsq'],
                    atol=(2 * x.abs().amax(1) * WAVE_TOL * x.abs().sum(1)).double() + x.shape[1] * WAVE_TOL ** 2)
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
    sub = lambda t: t[:, 0, :, ::MEL_STRIDE]
    for s in ('train', 'test'):
        fm = RespiratoryMel(); m = fm(out[s][1])
        assert tuple(m.shape) == tuple(pin[f'{s}_mel_shape'])
        # quiet bands (far below their frame's level) amplify the rounding in dB: per element, see logmel_tolerance
        check_close(f'{s} log-mels per clip, every {MEL_STRIDE}th frame', sub(m), pin[f'{s}_mel_clip_sub'],
                    atol=sub(logmel_tolerance(out[s][1], fm, RHO_MEL)))
    fb = RespiratoryMel(per_clip=False); mb = fb(out['test'][1]); tol_b = sub(logmel_tolerance(out['test'][1], fb, RHO_MEL, per_clip=False))
    check_close('test log-mels, min-max over the batch', sub(mb), pin['test_mel_batch_sub'], atol=tol_b)  # the same bound
    from soundlab.recipes.respiratory import RespiratoryMelDB, batch_scale   # the recipe's per_clip=False: cache dB, scale per batch
    check_close("the recipe's dB cache + batch_scale", sub(batch_scale(RespiratoryMelDB()(out['test'][1]))), pin['test_mel_batch_sub'],
                atol=tol_b)  # the same computation in two steps
    # the deliberate difference: soundlab's recipe scales each clip on its own (cacheable, independent of the batch);
    # the seed scales over the whole training batch. On this 6-cycle batch: max 6.9, mean 2.6 standardised units.
    d = (m - mb).abs()
    assert 1 < float(d.max()) < 20 and 0.5 < float(d.mean()) < 10, (float(d.max()), float(d.mean()))

# ---------------------------------------------------------------------------------------------------------------
# 3. one training step of every method from identical weights and an identical batch

LR, WD, STRIDE = 1e-4, 1e-4, 1009  # the seed's Adam defaults; pinned weight updates: every 1009th parameter
SEED_CLASS_COUNTS = (2063, 1215, 501, 363)  # the seed's hard-coded class weights come from these training counts
MASK = -0.3690 / 0.0255  # a masked bin of the seed's spectrogram (0 before standardising)

def step_inputs():
    "RespiratoryNet(cnn6, 4 classes, 5 metadata classes) from torch.manual_seed(0); 8 standardised log-mels (1, 64, 32)."
    from soundlab.models.panns import create_backbone, RespiratoryNet
    torch.manual_seed(0)
    model = RespiratoryNet(create_backbone('cnn6'), n_classes=4, n_meta=5)
    x = torch.randn(8, 1, 64, 32, generator=torch.Generator().manual_seed(1))
    y, meta = torch.tensor([0, 1, 2, 3, 0, 1, 0, 2]), torch.tensor([0, 1, 4, 2, 0, 3, 1, 4])
    v1, v2 = x.clone(), x.clone()   # two fixed SpecAugment-like views (for the one-pass / two-pass difference)
    v1[..., 10:20, :] = MASK; v1[..., 5:12] = MASK; v2[..., 40:52, :] = MASK; v2[..., 20:27] = MASK
    return model, x, y, meta, (v1, v2)

def fixed_views(views):
    "augment(x) returning views[0], views[1], views[0], ... (what the seed's train_transform gives in successive calls)."
    calls = iter(range(10 ** 6))
    return lambda x: views[next(calls) % len(views)]

def param_vector(model) -> torch.Tensor: return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

WAVE_META = [0, 1, 4, 2, 0, 3, 1, 4, 2]  # metadata labels of the 9 training cycles of the conformance corpus (step from waveforms)

STEP_CASES = [('sl', 'same'), ('scl', 'same'), ('hybrid', 'same'), ('mscl', 'same'), ('scl', 'views'), ('hybrid', 'views'),
              ('mscl', 'views')]  # 'same': augmentation off; 'views': the two fixed views above

def soundlab_step(method:str, kind:str, one_pass:bool):
    "One step of soundlab's recipe (its `make_step` in its `Trainer`, fp32 on the CPU): loss, update / lr, buffers, model."
    from soundlab.recipes.respiratory import respiratory_config, make_step
    from soundlab.losses import class_weights
    from soundlab.train import Trainer
    model, x, y, meta, views = step_inputs()
    # per_clip=True: x is already the model's input (standardised log-mels), not dB to be scaled over the batch
    cfg = respiratory_config('paper', method=method, lr=LR, wd=WD, views_in_one_pass=one_pass, amp=False, channels_last=False,
                             per_clip=True)
    weights = class_weights(torch.repeat_interleave(torch.arange(4), torch.tensor(SEED_CLASS_COUNTS)), 4)
    step = make_step(cfg, weights, None, augment=fixed_views(views) if kind == 'views' else (lambda v: v))
    before = param_vector(model)
    tr = Trainer(model, step, torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.wd), device='cpu', amp=False,
                 progress=False)
    loss = tr.train_epoch([(x, y, meta)])['train_loss']
    running = torch.cat([b.reshape(-1).float() for n, b in model.named_buffers() if 'running' in n])
    return loss, ((param_vector(model) - before) / LR).numpy(), running.numpy(), model

@pytest.mark.parametrize('method,kind', STEP_CASES)
def test_step_equals_seed(method, kind):
    "views_in_one_pass=False: the seed's step. Measured: loss rel <= 1.8e-7, updated weights <= 3.5e-3 lr, BN buffers 0."
    pin = np.load(PINS / 'respiratory_step.npz'); key = f'{method}_{kind}'
    before = param_vector(step_inputs()[0])
    loss, delta, running, model = soundlab_step(method, kind, one_pass=False)
    # torch's CPU uniform / normal fills are vectorised (log, cos, sqrt of ATen's capability: AVX2, AVX-512 or scalar):
    # each weight within a few ulps of the pinned one on any kernel, 4 ulps of |w| each, summed in float64
    check_close('initial weights (sum, float64)', before.double().sum(), float(pin[f'{key}_before_sum']),
                atol=4 * 2 * U * float(before.double().abs().sum()))
    check_close('loss', loss, float(pin[f'{key}_loss']), rtol=RHO_FWD)
    tol, free = adam_step_tolerance(model, before, LR, WD, RHO_GRAD)  # in lr units: +-1 wherever the gradient is not ~0
    check_adam_step(delta, pin[f'{key}_delta_sub'], tol, free)
    # a sum over a whole tensor meets the tail of the rounding estimate (rho is 3 sigma of one reduction): 3 rho there
    tol3, _ = adam_step_tolerance(model, before, LR, WD, 3 * RHO_GRAD)
    check_close('weight updates / lr, sum per tensor', _sums(model, delta), pin[f'{key}_delta_sums'], atol=_sums(model, tol3))
    # running = 0.9 r0 + 0.1 batch statistic (mean / unbiased var over 8 x H x W): 0.1 x its relative rounding, both sides
    check_close('BatchNorm running mean / var', running, pin[f'{key}_running'], atol=0.1 * RHO_FWD * np.abs(pin[f'{key}_running']).max())

def _sums(model, delta):
    sizes = [p.numel() for p in model.parameters()]
    return [d.astype(np.float64).sum() for d in np.split(delta, np.cumsum(sizes)[:-1])]

@pytest.mark.parametrize('method,kind', [('scl', 'same'), ('scl', 'views'), ('hybrid', 'views'), ('mscl', 'views')])
def test_step_one_pass_differs(method, kind):
    """The default views_in_one_pass=True: BatchNorm normalises both views together (and updates its running averages
    once). Augmentation off (identical views): the seed's loss and update, running averages differ (measured 0.089).
    Two different views: loss 12-19 % off the seed's, about 40 % of the sampled weights move the other way."""
    pin = np.load(PINS / 'respiratory_step.npz'); key = f'{method}_{kind}'
    loss, delta, running, _ = soundlab_step(method, kind, one_pass=True)
    d_run = _maxdiff(running, pin[f'{key}_running']); flipped = float(np.mean(np.abs(delta[::STRIDE] - pin[f'{key}_delta_sub']) > 0.5))
    if kind == 'same':  # identical views: one batch of 2B identical examples has the statistics of B (loss: see test_step_equals_seed)
        check_close('loss, views in one pass (identical views)', loss, float(pin[f'{key}_loss']), rtol=RHO_FWD)
        assert flipped == 0 and 0.01 < d_run < 1
    else:
        assert 0.05 < abs(loss / float(pin[f'{key}_loss']) - 1) < 0.5 and 0.1 < flipped < 0.9 and d_run > 0.1, (loss, flipped, d_run)

# ---------------------------------------------------------------------------------------------------------------
# 4. the run notebook on the conformance corpus: the past-end cycle is kept and listed; select='val' is recorded

def test_run_icbhi_keeps_past_end_cycle_and_selects_on_val(corpus, tmp_path, shared_data):
    import pandas as pd
    from conftest import run_notebook
    res = run_notebook('run_icbhi.ipynb', tmp_path, shared_data, method='sl', preset='smoke', data_root=str(corpus),
                       select='val', val_frac=0.34, out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'icbhi_results.csv')
    assert table['select'][0].startswith('val') and table.tag[0].endswith('_selval0.34')
    clipped = pd.read_csv(next(tmp_path.glob('*_clipped.csv')))
    assert len(clipped) == 1 and 'past the end' in clipped.reason[0] and clipped.path[0].endswith('Meditron.txt')

@pytest.mark.parametrize('method', ['hybrid', 'mscl'])
def test_step_from_waveforms_equals_seed(method, cycles):
    """The seed's whole training input path: its train_transform (mel -> min-max over the batch -> standardise,
    SpecAugment off) on the 9 training cycles, then one step. soundlab: the dB cache (RespiratoryMelDB) and
    per_clip=False, views_in_one_pass=False. Measured: loss rel <= 1.7e-7, weights <= 1.2e-4 lr, BN buffers 0."""
    from soundlab.recipes.respiratory import respiratory_config, make_step, RespiratoryMelDB, batch_scale
    from soundlab.losses import class_weights
    from soundlab.train import Trainer
    pin = np.load(PINS / 'respiratory_step.npz'); (out, _) = cycles
    recs, waves = out['train']
    model = step_inputs()[0]; before = param_vector(model).clone()
    cfg = respiratory_config('paper', method=method, per_clip=False, views_in_one_pass=False, amp=False, channels_last=False)
    weights = class_weights(torch.repeat_interleave(torch.arange(4), torch.tensor(SEED_CLASS_COUNTS)), 4)
    tr = Trainer(model, make_step(cfg, weights, None, augment=lambda v: v), torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WD),
                 device='cpu', amp=False, progress=False)
    batch = (RespiratoryMelDB()(waves), torch.tensor([r.labels for r in recs]), torch.tensor(WAVE_META))
    loss = tr.train_epoch([batch])['train_loss']
    delta = ((param_vector(model) - before) / LR).numpy()
    running = torch.cat([b.reshape(-1).float() for n, b in model.named_buffers() if 'running' in n]).numpy()
    # the inputs differ too: the model sees the batch-scaled log-mels, equal to the seed's within logmel_tolerance: a
    # relative input difference rho_in (RMS over RMS), which moves the loss, gradients and batch statistics by as much
    from soundlab.features import RespiratoryMel
    x = batch_scale(batch[0]); tol_x = logmel_tolerance(waves, RespiratoryMel(per_clip=False), RHO_MEL, per_clip=False)
    rho_in = float(tol_x.pow(2).mean().sqrt() / x.pow(2).mean().sqrt()); print(f'relative input difference {rho_in:.2e}')
    check_close('loss', loss, float(pin[f'wave_{method}_loss']), rtol=RHO_FWD + rho_in)
    tol, free = adam_step_tolerance(model, before, LR, WD, RHO_GRAD + rho_in)
    check_adam_step(delta, pin[f'wave_{method}_delta_sub'], tol, free)
    check_close('BatchNorm running mean / var', running, pin[f'wave_{method}_running'],
                atol=0.1 * (RHO_FWD + rho_in) * np.abs(pin[f'wave_{method}_running']).max())

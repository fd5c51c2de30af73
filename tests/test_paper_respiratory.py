"""Seed 000's `paper` run, end to end: the first training batch, the lr at every step, the kept checkpoint, and the
guards that keep a paper run from silently training from scratch or on the synthetic corpus.

`tests/conformance/paper_respiratory_batch.npz` was pinned ONCE from the seed's own dataloader code
(michiel-j/SCL_ICBHI2017 @935d509, the upstream's WASPAA version: `dataset.ICBHI`, `utils.Normalize` / `Standardize`,
`main.py`'s `DataLoader(train_ds, batch_size=128, shuffle=True)` after `torch.manual_seed(0)` and its mel front end)
run from a scratch folder outside this repository on the corpus `conformance_corpus` regenerates, with a `metadata.csv`
in the seed's format (its `sa_class_num` coding), SpecAugment off (`val_transform`: the train transform without it),
and a soundfile shim for `torchaudio.load`. The seed's code is not part of soundlab.
"""
from dataclasses import replace
from pathlib import Path
import numpy as np, pytest, torch
from test_conformance_respiratory import conformance_corpus
import soundlab.recipes.respiratory as R
from soundlab.core import DatasetError

PIN = np.load(Path(__file__).parent / 'conformance' / 'paper_respiratory_batch.npz')

@pytest.fixture(scope='module')
def paper(tmp_path_factory):
    "The paper preset on the conformance corpus (from scratch, asked explicitly: no AudioSet file here) and its cycles."
    tmp = tmp_path_factory.mktemp('paper000')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('SOUNDLAB_DATA', str(tmp / 'data'))
        cfg = R.respiratory_config('paper', data_root=str(conformance_corpus(tmp / 'icbhi')), scratch=True, device='cpu',
                                   channels_last=False, out_dir=str(tmp / 'runs'))
        yield cfg, R.load_cycles(cfg, progress=False)

class _Stop(Exception): pass

def test_first_batch_equals_seed(paper, monkeypatch):
    """The recipe's first training batch (cache -> Trainer.loader -> the step's `model_input`) holds the seed's cycles
    with the seed's model input (mel, min-max over the whole batch, standardised), labels and metadata partition."""
    cfg, data = paper
    got = {}
    def capture(cfg_, weights, generator, augment=None):
        def step(m, b): got.update(batch=b, weights=weights); raise _Stop
        return step
    monkeypatch.setattr(R, 'make_step', capture)
    with pytest.raises(_Stop): R.run_once(cfg, data, seed=0, progress=False)
    x, y, meta = got['batch']
    assert len(y) == len(data['train']['y']) == len(PIN['ids'])   # batch 128 > 9 cycles: one batch of all of them, as the seed
    x = R.model_input(cfg)(x)                                      # what make_step feeds the backbone (batch_scale, per_clip=False)
    ids = [f'{r.path.name}|{r.start!r}' for r in data['train']['records']]
    row = {i: k for k, i in enumerate(ids)}
    # the batch is the whole (shuffled) training set: put it in the seed's order (the two shuffles draw from other streams)
    pos = [next(k for k in range(len(y)) if torch.equal(data['train']['x'][row[i]], got['batch'][0][k])) for i in PIN['ids']]
    x, y, meta = x[pos], y[pos], meta[pos]
    assert tuple(x.shape) == tuple(PIN['x_shape'])
    # float32 mel (1024-point FFT, 64-band sums) -> dB -> min-max -> / 0.0255: other kernels' rounding (~1e-6 dB) is
    # magnified by 1 / (dB range * 0.0255) < 0.5 here; 1e-4 in standardised units leaves > 100x margin (measured: 0)
    d = float((x[:, 0, :, ::5].double() - torch.from_numpy(PIN['x_sub']).double()).abs().max())
    print(f'first batch: max |diff| {d:.2e}'); assert d <= 1e-4
    np.testing.assert_allclose(x.double().sum((1, 2, 3)).numpy(), PIN['x_sum'], rtol=1e-6, atol=1e-2)  # 16k values of |x| < 50
    np.testing.assert_allclose((x.double() ** 2).sum((1, 2, 3)).numpy(), PIN['x_sumsq'], rtol=1e-6)
    assert y.tolist() == PIN['y'].tolist()
    # metadata labels: soundlab codes sex/age as 2*sex + child (unknown: 4), the seed's CSV its own numbering; SupCon only
    # compares labels, so the same partition of the batch is the same loss
    assert torch.equal(meta[:, None] == meta[None], torch.from_numpy(PIN['meta'][:, None] == PIN['meta'][None]))
    # class weights: computed from the training labels; the seed hard-codes the official split's counts into the same formula
    counts = torch.tensor([2063, 1215, 501, 363], dtype=torch.float32)   # seed main.py:99-103
    w = 1 / (counts / counts.sum()); w = w / w.sum()
    from soundlab.losses import class_weights
    torch.testing.assert_close(class_weights(torch.repeat_interleave(torch.arange(4), counts.long()), 4).float(), w, rtol=1e-6, atol=0)
    torch.testing.assert_close(got['weights'].float(), class_weights(data['train']['y'], 4).float())

def test_schedule_and_kept_checkpoint(paper, monkeypatch):
    """A shortened paper run (M-SCL, 42 epochs of 3 steps, 0.5-s cycles): Adam's lr at every step equals seed 000's
    CosineAnnealingLR(T_max=40, eta_min=1e-6) stepped once per epoch (main.py:93, scl/mscl.py: `scheduler.step()` after
    the epoch), past T_max too; the linear stage keeps lr2 (no scheduler); the encoder is the last epoch's (the seed's
    `final_state`) and the reported scores are the linear epoch with the first best test Score (`best < val`)."""
    cfg, _ = paper
    cfg = replace(cfg, epochs=42, epochs2=4, bs=4, duration=.5)
    data = R.load_cycles(cfg, progress=False)
    lrs = {}; step = torch.optim.Adam.step
    def recording(self, *a, **k):
        lrs.setdefault(id(self), []).append(self.param_groups[0]['lr']); return step(self, *a, **k)
    monkeypatch.setattr(torch.optim.Adam, 'step', recording)
    r = R.run_once(cfg, data, seed=0, progress=False)
    monkeypatch.undo()
    stage1, linear = list(lrs.values())
    n_steps = -(-len(data['train']['y']) // cfg.bs)   # 9 cycles, batch 4: 4 + 4 + 1, the last batch kept (the seed's DataLoader)
    p = torch.nn.Parameter(torch.zeros(1)); opt = torch.optim.Adam([p], lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40, eta_min=1e-6); want = []   # the seed's, main.py:93
    for _ in range(cfg.epochs):
        want += [opt.param_groups[0]['lr']] * n_steps; opt.step(); sched.step()
    assert len(stage1) == len(want) == 42 * 3
    np.testing.assert_allclose(stage1, want, rtol=1e-12, atol=0)   # the same float recursion: equal to the last bit
    assert stage1[-n_steps - 1] == 1e-6 < stage1[-1]               # eta_min at epoch 41, then it climbs again, as the seed's
    assert linear == [cfg.lr2] * (cfg.epochs2 * n_steps)
    h = r['history'][r['history'].stage == 'linear'].reset_index(drop=True)
    first_best = int(np.flatnonzero(h.test_score.values == h.test_score.max())[0])
    assert r['best_epoch'] == int(h.epoch[first_best]) and r['score'] == h.test_score.max()
    # the encoder of the linear stage: the contrastive stage's last epoch (last.pt), not a selected one
    n_meta = int(torch.cat([data['train']['meta'], data['test']['meta']]).max()) + 1
    model = R.build_model(cfg, n_meta=n_meta); model.load_state_dict(torch.load(r['run_dir'] / 'stage1' / 'last.pt', weights_only=True)['model'])
    model.eval()
    with torch.no_grad(): emb = torch.cat([model.embed(R.model_input(cfg)(xb)) for xb in data['test']['x'].split(cfg.bs)])
    torch.testing.assert_close(emb, r['embeddings'], rtol=1e-5, atol=1e-5)  # same weights, eval mode, same batches: rounding only

def test_paper_never_scratch_or_synthetic_unasked(tmp_path, monkeypatch):
    "No data_root: a clear error naming the dataset and the switch; AudioSet weights missing: an error naming the file."
    monkeypatch.setenv('SOUNDLAB_DATA', str(tmp_path))
    with pytest.raises(DatasetError, match='allow_synthetic=True'): R.load_cycles(R.respiratory_config('paper', scratch=True))
    with pytest.raises(DatasetError, match='SPRSound'): R.corpus_root(R.respiratory_config('paper', dataset='SPRS'))
    assert R.corpus_root(R.respiratory_config('paper', allow_synthetic=True, synth=dict(n_patients=2))).is_dir()
    cfg = R.respiratory_config('paper', data_root=str(tmp_path / 'nowhere'))
    assert (cfg.scratch, cfg.weights_path, cfg.lr) == (False, 'audioset', 1e-4)
    try: import soundlab.hub  # noqa: F401  (the catalogue, when present, names the URLs itself)
    except ImportError:
        with pytest.raises(FileNotFoundError, match=r'Cnn6_mAP=0\.343\.pth'): R.run_respiratory(cfg)   # before any data is read
    else:
        with pytest.raises(Exception, match='cnn6'): R.run_respiratory(cfg)

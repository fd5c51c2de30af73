"""Seed 001's `paper` run, end to end: the input statistics and the first pre-training batch, the kNN validation that
keeps the encoder, the lr at every step, and the guard against a silent synthetic run.

`tests/conformance/paper_sed_batch.npz` was pinned ONCE from the seed's own code (edufonseca/uclser20 @d546759:
`extract/wav2spec.py` on the corpus below, `FSDnoisy18k.make_dataset` / `__getitem__` with `params_unsupervised_cl.yaml`
and every augmentation switched off (mix-back and all `da` switches), `main_train.py`'s transforms, seeding and
`DataLoader(shuffle=True)` with num_workers=0, the patch starts recorded; and `utils_train_eval.eval_model_contrastive` on
fixed features), run from a scratch folder outside this repository with shims for newer scipy / h5py (an int written
into a string dataset is stored as its decimal string, as h5py 2 did) and a stub `cv2` (blur, off). The seed's code is
not part of soundlab.
"""
from dataclasses import replace
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
import soundlab.recipes.sed as S
from soundlab.core import DatasetError
from soundlab.synth import make_fsdnoisy18k

PIN = np.load(Path(__file__).parent / 'conformance' / 'paper_sed_batch.npz')
CORPUS = dict(n_per_class=4, n_test_per_class=1, clean_fraction=0.5, durations=(1., 2.5), sample_rate=22050, seed=0)
P = 101  # patch length

@pytest.fixture(scope='module')
def paper(tmp_path_factory):
    "The paper preset (VGG-like: the seed's `vgg_relu`, cheaper than ResNet-18) on a 22.05-kHz corpus and its clips."
    tmp = tmp_path_factory.mktemp('paper001')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('SOUNDLAB_DATA', str(tmp / 'data'))
        root = make_fsdnoisy18k(tmp / 'fsd', **CORPUS)
        cfg = S.sed_config('paper', data_root=str(root), arch='vgglike', device='cpu', out_dir=str(tmp / 'runs'))
        yield cfg, S.load_clips(cfg, progress=False)

def test_statistics_and_first_batch_equal_seed(paper):
    """The seed's input statistics (mean; sqrt(sum (x - mean)^2) / N, `std_rule='seed'`) and its first batch: with the
    seed's patch starts, soundlab's standardised patches of the same clips are the seed's views; labels name the same
    classes."""
    cfg, data = paper
    mean, std = data['norm']
    # soundlab's log-mels are float32 STFTs (the seed's complex64 STFT, float64 afterwards): per-value rounding ~1e-7 of
    # |x| < 10 leaves the mean within 1e-6 (measured 6e-8) and the divisor within 1e-6 relative (measured 2e-9)
    assert abs(mean - float(PIN['mean'])) <= 1e-6 and std == pytest.approx(float(PIN['std']), rel=1e-6)
    k_of = {i: k for k, i in enumerate(data['pretrain']['ids'])}
    rows = [k_of[Path(f).stem] for f in PIN['ids']]
    worst = 0.
    for b, (k, (s1, s2)) in enumerate(zip(rows, PIN['starts'])):
        x = data['pretrain']['x'][k].double()
        for view, s in (('ex1', s1), ('ex2', s2)):
            v = (x[s:s + P] - mean) / std
            # compared in log10-mel units (x std): float32 STFT + mel vs the seed's float64 numpy, |log10 mel| < 10
            worst = max(worst, float((v[::10, ::4] - torch.from_numpy(PIN[f'{view}_sub'][b]).double()).abs().max()) * std)
    print(f'first batch: max |diff| {worst:.2e} (log10 mel)'); assert worst <= 1e-5
    # labels: the seed numbers classes by the *string* order of wav2spec's integer labels ('10' < '2'); soundlab alphabetically
    names = sorted(pd.read_csv(Path(cfg.data_root) / 'FSDnoisy18k.meta' / 'train.csv').label.unique())
    seed_names = [names[int(PIN['label_names'][y])] for y in PIN['y']]
    assert [S.CLASSES[int(data['pretrain']['y'][k])] for k in rows] == seed_names

class _Stop(Exception): pass

def test_recipe_first_batch(paper, monkeypatch):
    "The recipe's first pre-training batch holds every clip (batch 128, drop_last off as the seed), views = standardised patches."
    cfg, data = paper
    cfg = replace(cfg, mix_back=0., rrc=False, compand=0., noise=0.)   # augmentation off, as the pinned batch
    got = {}
    def capture(cfg_, views, generator, backgrounds=None):
        def step(m, b): got.update(b=b, views=views(b['x'], generator)); raise _Stop
        return step
    monkeypatch.setattr(S, 'pretrain_step', capture)
    with pytest.raises(_Stop): S.pretrain(cfg, data, progress=False)
    assert sorted(got['b']['id']) == sorted(data['pretrain']['ids'])
    mean, std = data['norm']
    for view in got['views']:
        for c, v in zip(got['b']['x'], view):
            pats = (c.unfold(0, P, 1).permute(0, 2, 1).double() - mean) / std          # every patch the clip has
            assert float(((pats - v.double()) * std).abs().amax((1, 2)).min()) <= 1e-6  # float32 rounding of (x - mean) / std

@pytest.mark.parametrize('k', [1, 3, 10])
def test_knn_validation_equals_seed(k):
    "knn_bacc on the seed's features = `eval_model_contrastive`'s balanced accuracy (its label lookup; ties: the smaller label)."
    lookup = S.sed_config('paper').knn_lookup   # 'seed': labels read at the neighbours' rank among the other clips' patches
    got = S.knn_bacc(torch.from_numpy(PIN['knn_feats']), torch.from_numpy(PIN['knn_y']), torch.from_numpy(PIN['knn_clip']), k, lookup)
    assert got == pytest.approx(float(PIN[f'knn_bacc_k{k}']), abs=1e-9)

def test_schedule_and_kept_encoder(paper, monkeypatch):
    """A shortened paper pre-training (20 epochs of 3 steps): SGD's lr at every step equals the seed's MultiStepLR on the
    yaml's milestones scaled to 20 epochs (325/500 and 425/500 -> 13, 17), stepped once per epoch (main_train.py:232);
    the kept encoder is the first epoch with the best kNN validation accuracy (main_train.py:287-322), and a downstream
    stage keeps its first best validation epoch."""
    cfg, data = paper
    cfg = replace(cfg, epochs=20, bs=16, knn_k=5)   # 5 neighbours: the tiny validation set has 77 patches
    n_steps = -(-len(data['pretrain']['x']) // cfg.bs)   # 40 clips, batch 16, the last batch of 8 kept
    p = torch.nn.Parameter(torch.zeros(1)); opt = torch.optim.SGD([p], lr=0.03, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [13, 17], gamma=0.1); want = []
    for _ in range(cfg.epochs): want += [opt.param_groups[0]['lr']] * n_steps; opt.step(); sched.step()
    lrs = []; step = torch.optim.SGD.step
    def recording(self, *a, **k): lrs.append(self.param_groups[0]['lr']); return step(self, *a, **k)
    monkeypatch.setattr(torch.optim.SGD, 'step', recording)
    r = S.pretrain(cfg, data, progress=False)
    monkeypatch.undo()
    assert S.milestones(500, cfg.lr_steps) == [325, 425] and S.milestones(20, cfg.lr_steps) == [13, 17] and n_steps == 3
    np.testing.assert_allclose(lrs, want, rtol=1e-12, atol=0)   # the same float products: equal to the last bit
    h = r['history']; best = int(h.epoch[int(np.flatnonzero(h.val_knn_bacc.values == h.val_knn_bacc.max())[0])])
    enc = torch.load(r['encoder_path'], weights_only=True); kept = torch.load(r['run_dir'] / 'best.pt', weights_only=True)
    assert enc['epoch'] == r['best_epoch'] == best == kept['epoch']
    assert all(torch.equal(v, kept['model'][f'encoder.{n}']) for n, v in enc['state_dict'].items())
    # downstream (linear evaluation from that encoder): the first epoch with the best validation balanced accuracy is kept
    lv = S.lineval(replace(cfg, lineval_epochs=3), data, progress=False)
    hv = lv['history']; first = int(hv.epoch[int(np.flatnonzero(hv.val_bacc.values == hv.val_bacc.max())[0])])
    assert lv['best_epoch'] == first == torch.load(lv['run_dir'] / 'best.pt', weights_only=True)['epoch']

def test_paper_needs_data(tmp_path, monkeypatch):
    monkeypatch.setenv('SOUNDLAB_DATA', str(tmp_path))
    with pytest.raises(DatasetError, match='FSDnoisy18k.*allow_synthetic=True'): S.load_clips(S.sed_config('paper'))
    assert S.corpus_root(S.sed_config('paper', allow_synthetic=True, synth=dict(n_per_class=1, n_test_per_class=1))).is_dir()

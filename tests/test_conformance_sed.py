"""Seed 001 (uclser20, unsupervised contrastive sound-event learning) conformance: soundlab's views, NT-Xent and lr
schedule against the seed's own code.

`tests/conformance/seed001_reference.npz` holds outputs of the seed's repository (github.com/edufonseca/uclser20, commit
d546759: `train_Contrastive`, `FSDnoisy18k.__getitem__` with its mix-back, `RandomResizedCrop_diy`, `Compander`,
`GaussNoise`, `make_dataset`, and the optimizer / `MultiStepLR` built from `params_unsupervised_cl.yaml`), computed once
outside this repository on the deterministic inputs `clips` regenerates, with numpy / python `random` seeded; where
the seed's draws come from numpy or python `random`, its draws were recorded and are replayed here, and the
distributions of soundlab's own draws are compared with the seed's by two-sample tests. The seed's code is not part
of soundlab.
"""
from pathlib import Path
import numpy as np, pytest, torch
from scipy import stats
import soundlab.augment as A
from soundlab.losses import SupConLoss
from soundlab.recipes.sed import sed_config, milestones
from conftest import check_close, rounding, U

REF = np.load(Path(__file__).parent/'conformance'/'seed001_reference.npz')
P = 101  # the seed's patch_len

def clips(seed, n=6, mel=24):
    "The seed run's deterministic clips: log10-mel-like values, lengths 101..400 frames."
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(101, 401, (n,), generator=g).tolist(); lens[0] = 101
    return [torch.randn(L, mel, generator=g) * 0.7 - 2. for L in lens]

def maxdiff(name, got, tol): return check_close(name, got, REF[name], atol=tol)

def g(seed): return torch.Generator().manual_seed(seed)

@pytest.mark.parametrize('s,B,D', [(0, 8, 16), (1, 32, 128), (2, 5, 3)])
def test_ntxent_equals_train_contrastive(s, B, D):
    "SupConLoss(tau) without labels = the seed's NT-Xent (its +1e-10 inside the logs is the only difference)."
    gen = torch.Generator().manual_seed(100 + s)
    e1 = torch.nn.functional.normalize(torch.randn(B, D, generator=gen), dim=1).requires_grad_()
    e2 = torch.nn.functional.normalize(torch.randn(B, D, generator=gen), dim=1).requires_grad_()
    tau = sed_config('paper').tau; loss = SupConLoss(tau)(torch.stack([e1, e2], 1)); loss.backward()
    # logits: dot products of D unit-vector terms / tau; the loss (log-sum-exp - positive) moves by <= 2x their error;
    # the seed's +1e-10 inside its logs moves it by < 1e-9. Gradient: (p - y) e / (tau B) summed over 2B rows
    dz = rounding(D) / tau
    maxdiff(f'ntxent_{s}', loss, 2 * dz + rounding(2 * B, float(loss)))
    maxdiff(f'ntxent_{s}_grad', torch.stack([e1.grad, e2.grad], 1), (2 * dz + rounding(2 * B)) / (tau * B))

def test_lr_schedule_equals_the_seed():
    "The paper preset's pre-training optimizer and MultiStepLR, stepped once per epoch as Trainer does, give the seed's lr."
    cfg = sed_config('paper'); p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.wd)
    sch = torch.optim.lr_scheduler.MultiStepLR(opt, milestones(cfg.epochs, cfg.lr_steps), 0.1); lrs = []
    for _ in range(cfg.epochs): lrs.append(opt.param_groups[0]['lr']); opt.step(); sch.step()
    assert milestones(cfg.epochs, cfg.lr_steps) == [325, 425]
    maxdiff('lr_per_epoch', torch.tensor(lrs, dtype=torch.float64), 0)  # exact: Python floats x 0.1, no kernel involved

def test_patches_and_mix_back_equal_the_seed():
    "With the seed's recorded draws (patch starts, background clips and starts, level), the views are the seed's."
    data, v1, v2 = clips(7), [], []
    for idx, s1, s2, b1, b2, t1, t2, a in REF['mix_draws']:
        idx, s1, s2, b1, b2, t1, t2 = map(int, (idx, s1, s2, b1, b2, t1, t2))
        x = torch.stack([data[idx][s1:s1 + P], data[idx][s2:s2 + P]]).double()
        back = torch.stack([data[b1][t1:t1 + P], data[b2][t2:t2 + P]]).double()
        m = A.mix_back(x, back, torch.tensor([a, a], dtype=torch.float64)); v1.append(m[0]); v2.append(m[1])
    # soundlab in float64, the seed in float32: its ~4 roundings (level, product, sum, clip to the range) of values
    # |v| <= max|v| -- 8 u max|v|, whatever the kernel
    # + the clips themselves (torch.randn: a few ulps apart where ATen's fill kernels differ): 8 u more
    tol = (8 + 8) * U * float(torch.cat(data).abs().max())
    maxdiff('mix_view1', torch.stack(v1), tol); maxdiff('mix_view2', torch.stack(v2), tol)

def test_patch_starts_differ_by_one_position():
    "Deliberate: the seed's np.random.randint(0, L - 101) never starts a patch at the last position; soundlab does."
    seed = REF['patch_starts_150']; ours = np.array([int(A.sample_patches(torch.zeros(150, 2), P, g(s), 1, return_starts=True)[1])
                                                     for s in range(4000)])
    assert seed.min() == 0 and seed.max() == 150 - P - 1 and ours.max() == 150 - P  # 49 starts vs 50
    for s, n in ((seed, 49), (ours, 50)):
        assert stats.chisquare(np.bincount(s, minlength=n)).pvalue > 1e-3  # each uniform over its own range
    print(f'patch starts: total-variation distance {1 / 50:.3f} for a 150-frame clip (1 / (L - 100) in general)')

def test_rrc_given_the_seeds_boxes(monkeypatch):
    "With the seed's boxes, soundlab's crop + bilinear resize equals PIL's (the seed's RandomResizedCrop_diy)."
    x = torch.stack([c[:P] for c in clips(11, n=3, mel=96)])
    b = torch.as_tensor(REF['rrc_boxes']).long()
    monkeypatch.setattr(A, '_rrc_boxes', lambda *a, **k: (b[:, 0], b[:, 1], b[:, 2], b[:, 3]))
    # bilinear weights from float32 source coordinates (<= 101 frames / 96 bins: each weight off by <= 101 u on either
    # side; PIL's are float64), 2 taps per axis, 2 axes, values |x| <= max|x|
    maxdiff('rrc_out', A.random_resized_crop(x), 2 * 2 * 2 * 101 * U * float(x.abs().max()))

def test_rrc_box_distribution():
    "soundlab's ratio is relative to the patch's aspect (101 x 96): rrc_ratio scaled by 101/96 gives the seed's boxes."
    seed = REF['rrc_box_draws']  # (top, left, height, width)
    seed_ratio = tuple(r * 101 / 96 for r in (3/4, 4/3))
    ours = torch.stack(A._rrc_boxes(101, 96, 4000, (0.8, 1.), seed_ratio, g(0)), 1).double().numpy()
    p = [stats.ks_2samp(ours[:, k], seed[:, k]).pvalue for k in range(4)]
    print(f'rrc ratio {tuple(round(r, 4) for r in seed_ratio)}: KS p (top, left, h, w) {np.round(p, 3)}')
    assert min(p) > 1e-3, p
    # the default (relative) ratio: the size of the difference, from 40000 draws of each
    rel, ab = (torch.stack(A._rrc_boxes(101, 96, 40000, (0.8, 1.), r, g(1)), 1).double() for r in ((3/4, 4/3), seed_ratio))
    dh, dw = (rel[:, k].mean() - ab[:, k].mean() for k in (2, 3))
    print(f'rrc default ratio vs the seed: mean crop height {dh:+.2f} frames, width {dw:+.2f} bins')
    assert abs(dh) < 1 and abs(dw) < 1

def test_compander_and_noise_distributions():
    "soundlab's per-example compression factor and noise level follow the seed's U(0.75, 1) and U(0, 0.01) draws."
    f = A.compand(torch.ones(2000, 1, 1, dtype=torch.float64), 0.75, g(1))[:, 0, 0].numpy()
    sd = A.gauss_noise(torch.zeros(1000, P, 24, dtype=torch.float64), 0.01, g(2)).std((1, 2), unbiased=False).numpy()
    for name, ours in (('compander_factors', f), ('noise_std', sd)):
        ks = stats.ks_2samp(ours, REF[name]); print(f'{name}: KS p={ks.pvalue:.3f}')
        assert ks.pvalue > 1e-3, (name, ks)
    x = torch.randn(4, P, 24, dtype=torch.float64); y = A.compand(x, 0.75, g(3)); r = y / x  # one factor per example
    assert torch.allclose(r, r[:, :1, :1].expand_as(r)) and ((r >= .75) & (r <= 1)).all()

def test_normalisation_statistics_differ_by_sqrt_n():
    "Deliberate: the seed's std is sqrt(sum (x - mean)^2) / N = std / sqrt(N); soundlab standardises with the std."
    x = torch.cat(clips(7)).double()  # soundlab's load_clips: (mean, std) of every value of the pre-training clips
    mean, std, n = x.mean().item(), x.std().item(), x.numel()
    # the clips come from torch.randn, whose vectorised fill (ATen's capability) rounds each value differently by a few
    # ulps: 4 ulps of mean |x|; the float64 sum of 1e4 values adds < 1e-11
    check_close('mean of the clips (float64)', mean, float(REF['norm_mean']), atol=4 * 2 * U * x.abs().mean().item())
    ratio = std / float(REF['norm_std']); print(f'normalisation std: soundlab / seed = {ratio:.2f}, sqrt(N) = {n ** .5:.2f}')
    check_close('std ratio / sqrt(N)', ratio / n ** .5 * ((n - 1) / n) ** .5, 1., atol=4 * 2 * U)  # as the mean: 4 ulps  # population vs sample std aside, exactly sqrt(N); float64

def test_background_clips_follow_the_seed():
    "The seed: view 1's background clip is any clip but the clip itself, view 2's also differs from view 1's (uniformly)."
    d = REF['mix_draws'][:, :5].astype(int)  # idx, s1, s2, b1, b2 of the seed's own runs
    assert (d[:, 3] != d[:, 0]).all() and (d[:, 4] != d[:, 0]).all() and (d[:, 4] != d[:, 3]).all()
    me = [[i % 6] for i in range(6000)]
    p1 = A._pick_others(6, me, g(0)); p2 = A._pick_others(6, [m + [p] for m, p in zip(me, p1)], g(1))
    p1, p2, own = np.array(p1), np.array(p2), np.arange(6000) % 6
    assert (p1 != own).all() and (p2 != own).all() and (p2 != p1).all()
    for c in range(6):  # uniform over the 5 other clips, and over the 4 left for the second view
        assert stats.chisquare(np.bincount(p1[own == c], minlength=6)[np.arange(6) != c]).pvalue > 1e-3
    pairs = np.bincount((p1 * 6 + p2)[own == 0], minlength=36).reshape(6, 6)[1:, 1:]
    assert stats.chisquare(pairs[~np.eye(5, dtype=bool)]).pvalue > 1e-3

def _step(view_passes, dtype=torch.float32):
    "One soundlab pre-training step (pretrain_step, SGD of the paper preset) of a VGG-like net on the seed run's weights."
    import zlib
    from dataclasses import replace
    from soundlab.models.sed import create_sed_model
    from soundlab.models.panns import ProjectionHead
    from soundlab.recipes.sed import SimCLRNet, pretrain_step
    def fill(module, prefix=''):
        sd = module.state_dict()
        for k, v in sd.items():
            if not v.is_floating_point(): continue
            w = torch.randn(v.shape, generator=torch.Generator().manual_seed(zlib.crc32((prefix + k).encode())), dtype=torch.float64).float()
            v.copy_(w.abs() + 0.5 if k.endswith('running_var') else 0.1 * w)
        module.load_state_dict(sd); return module
    enc = fill(create_sed_model('vgglike', 20)); head = ProjectionHead(enc.embed_dim, 512, 512, bn=True)
    fill(head); net = SimCLRNet(enc, head).train().to(dtype)
    gv = torch.Generator().manual_seed(77); v1, v2 = (torch.randn(6, 1, P, 96, generator=gv).to(dtype) for _ in range(2))
    cfg = replace(sed_config('paper'), view_passes=view_passes)
    step = pretrain_step(cfg, lambda x, *a: (x[0], x[1]), None)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.wd)
    loss = step(net, {'x': (v1[:, 0], v2[:, 0]), 'index': None})['loss']; loss.backward(); opt.step()
    grads = {k: p.grad for k, p in enc.named_parameters()} | {f'head.{k}': p.grad for k, p in head.named_parameters()}
    return loss, {k: v for k, v in enc.state_dict().items()} | {f'head.{k}': v for k, v in head.state_dict().items()}, grads, cfg.lr

# one step of the VGG-like net + head: ~10 layers forward, reductions <= 3 x 3 x 256 = 2304 terms, rounding(n) of
# their terms each: the loss and batch statistics to RHO_FWD. The gradients pass back through 6 train-mode batch norms
# over 6 clips, whose mean subtraction cancels: how much that amplifies rounding is measured, not assumed -- the same
# step in float64 gives this kernel's error of every tensor, and another kernel's is of the same size (two sides, x3)
RHO_FWD = 10 * rounding(2304)     # 1e-4 relative

def test_one_pretraining_step_equals_the_seed():
    "view_passes=2 (the default): loss and every updated weight / batch-norm statistic of train_Contrastive's step."
    loss, sd, grads, lr = _step(2)
    _, sd64, grads64, _ = _step(2, torch.float64)
    maxdiff('step_loss', loss, RHO_FWD * float(loss))
    # SGD's first step moves w by lr (g + wd w); per tensor: 2 sides x 3 x this kernel's gradient error (float64 step),
    # + 2 ulp(|w|) a side; running statistics (0.9 r0 + 0.1 batch statistic): 6 x their float32 - float64 difference
    err = lambda a, b: 0. if a is None else 6 * float((a.double() - b).abs().max())  # no gradient: not updated
    tol = {k: (lr * err(grads[k], grads64[k]) if k in grads else err(v, sd64[k])) + 4 * U * v.abs().double()
           for k, v in sd.items() if v.is_floating_point()}
    got = torch.cat([v.flatten()[:16].double() for k, v in sd.items() if k in tol])
    check_close('updated weights and statistics, first 16 of every tensor', got,
                np.concatenate([REF[f'step_{k}'] for k in tol]), atol=torch.cat([tol[k].flatten()[:16] for k in tol]))
    check_close('tensor sums', [v.double().sum().item() for k, v in sd.items() if k in tol], [float(REF[f'step_sum_{k}']) for k in tol],
                atol=[float(tol[k].sum()) for k in tol])

def test_one_batch_pass_differs_from_the_seed():
    "Deliberate (demo / smoke presets): view_passes=1 puts both views in one batch-norm batch; the size of that change."
    loss, sd, _, _ = _step(1)
    d = abs(loss.item() - float(REF['step_loss'])); print(f'view_passes=1: loss differs by {d:.3g} from the seed\'s {float(REF["step_loss"]):.4f}')
    assert d > 1e-4  # batch statistics over 2B instead of B: a different loss

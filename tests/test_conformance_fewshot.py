"""Seed 002 (few-shot prototypical contrastive learning) conformance: soundlab's modules against the seed's own code.

`tests/conformance/seed002_reference.npz` holds outputs of the seed's repository (github.com/magcil/audio-few-shot-learning,
commit c927e20), computed once outside this repository on the deterministic weights and inputs that `fill` and `randn`
below regenerate: every floating-point tensor of a module's state dict is drawn from a generator seeded by the crc32 of
its soundlab key. The seed's code itself is not part of soundlab.
"""
import zlib
from pathlib import Path
import numpy as np, pytest, torch
import torch.nn.functional as F
from scipy import stats
from soundlab.models.fewshot import load_fewshot_config, create_encoder, CNNEncoder, ViewAttention, create_fewshot_model
from soundlab.models.panns import ProjectionHead
from soundlab.losses import class_prototypes, prototypical_loss, cpl_loss, cpl_loss_loop, AngularProtoLoss
from soundlab.recipes.fewshot import majority_vote, _scores
from conftest import check_close, f64_tol, rounding, U

REF = np.load(Path(__file__).parent/'conformance'/'seed002_reference.npz')
EXP, MCFG = load_fewshot_config()
D = 32  # the loss tests' embedding width: distances are sums of D terms

def fill(module):
    "The seed run's deterministic weights: each floating tensor from a generator seeded by its key's crc32."
    sd = module.state_dict()
    for k, v in sd.items():
        if not v.is_floating_point(): continue
        w = torch.randn(v.shape, generator=torch.Generator().manual_seed(zlib.crc32(k.encode())), dtype=torch.float64).float()
        v.copy_(w.abs() + 0.5 if k.endswith('running_var') else 0.2 * w)
    module.load_state_dict(sd)
    return module

def randn(seed, *shape): return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))

def close(name, got, tol): return check_close(name, got, REF[name], atol=tol)

def twin(m):
    "The module in float64: the same computation without float32 rounding (see conftest.f64_tol)."
    import copy
    return copy.deepcopy(m).double()

@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad(): yield

def test_encoders_equal_the_seed():
    x = randn(1, 6, 1, 128, 157)
    # every output against the float64 twin: train-mode batch norm over 6 clips amplifies rounding (measured, f64_tol)
    for name, m in (('cnn', fill(CNNEncoder(**MCFG['CNN'], input_shape=(128, 157)))), ('hybrid', fill(create_encoder('Hybrid', MCFG)))):
        y = m.eval()(x); close(f'{name}_eval', y, f64_tol(y, twin(m)(x.double())))
        m.train(); m.logits[0].eval(); y = m(x); close(f'{name}_train', y, f64_tol(y, twin(m)(x.double())))  # batch statistics, dropout off
    xl = randn(2, 3, 1, 128, 300)
    for name, m in (('cnn_long_eval', fill(CNNEncoder(**MCFG['CNN'], input_shape=(128, 300)))), ('hybrid_long_eval', fill(create_encoder('Hybrid', MCFG)))):
        y = m.eval()(xl); close(name, y, f64_tol(y, twin(m)(xl.double())))
    assert int(REF['cnn_from_config_builds']) == 0  # the seed's get_backbone_model('CNN') omits trial_shape; soundlab's builds

def test_attention_and_projection_equal_the_seed():
    m, x = fill(ViewAttention(**MCFG['Attention'])).eval(), randn(3, 7, 4, 64); y = m(x)
    close('attention', y, f64_tol(y, twin(m)(x.double())))
    p = MCFG['Projection']; m, x = fill(ProjectionHead(p['input_dim'], p['output_dim'], p['hidden_dim'])), randn(4, 7, 256); y = m(x)
    close('projection', y, f64_tol(y, twin(m)(x.double())))

def test_protonet_forward_equals_the_seed():
    "Hybrid on the 4 views -> attention -> prototypes -> negative distances, as ContrastivePrototypicalNetworks."
    m = create_fewshot_model(EXP | dict(use_attention=True, use_contrastive=True, encoder_name='Hybrid'), MCFG).eval()
    fill(m.encoder); fill(m.attention)
    def fused(views):  # (V, B, 1, F, T), the seed's list of view batches
        v = views.transpose(0, 1); B, V = v.shape[:2]
        return m.fuse(m.encoder(v.reshape(B * V, *v.shape[2:])).reshape(B, V, -1))
    vs, vq = randn(5, 4, 6, 1, 128, 157), randn(6, 4, 4, 1, 128, 157)
    protos = class_prototypes(fused(vs), torch.tensor([0, 0, 1, 1, 2, 2]), 3); scores = _scores(m, protos, fused(vq))
    m = twin(m); p64 = class_prototypes(fused(vs.double()), torch.tensor([0, 0, 1, 1, 2, 2]), 3)
    close('protonet_prototypes', protos, f64_tol(protos, p64))
    close('protonet_scores', scores, f64_tol(scores, _scores(m, p64, fused(vq.double()))))

P, Z, Y = randn(7, 5, 32), randn(8, 15, 32), torch.arange(5).repeat_interleave(3)

def loss_tol(loss, t:float=1.) -> float:
    "A loss of distances (sums of D terms, |x| <= 4) scaled by 1/t: rounding(D) of the largest squared distance / t."
    return rounding(D, 2 * D * 16) / t + rounding(15, float(loss))  # + the mean over the 15 queries

def test_prototypical_loss_equals_the_seed():
    loss = prototypical_loss(P, Z, Y, squared=False); close('fsl_loss', loss, loss_tol(loss))
    loss = F.cross_entropy(_scores(type('M', (), {'relation': None}), P, Z), Y); close('fsl_loss', loss, loss_tol(loss))  # the recipe's path

def test_cpl_equals_the_seed():
    torch.manual_seed(11); loss = cpl_loss_loop(P, Z, Y, t=0.7, m=2); close('cpl_m2', loss, loss_tol(loss, 0.7))  # same randperm stream, same draws
    loss = cpl_loss(P, Z, Y, t=0.7, m=3); close('cpl_mall', loss, loss_tol(loss, 0.7))  # every negative: no randomness
    ours = np.array([float(cpl_loss(P, Z, Y, t=0.7, m=1, generator=torch.Generator().manual_seed(s))) for s in range(300)])
    ks = stats.ks_2samp(ours, REF['cpl_m1_draws'])
    print(f'cpl m=1: mean {ours.mean():.5f} vs seed {REF["cpl_m1_draws"].mean():.5f}, KS p={ks.pvalue:.3f}')
    assert ks.pvalue > 0.01, ks

@pytest.mark.parametrize('angle', [0, 15, 30, 45])
@pytest.mark.parametrize('anchors', [True, False])
def test_angular_equals_the_seed(angle, anchors):
    Pn, Zn = F.normalize(P, dim=1), F.normalize(Z, dim=1)
    loss = AngularProtoLoss(angle, anchors)(Pn, Zn, Y)  # cosines of unit vectors (sums of D terms <= 1), scaled by its s <= 64
    close(f'angular_{angle}_{int(anchors)}', loss, 64 * rounding(D) + rounding(15, float(loss)))

@pytest.mark.parametrize('strategy', ['', 'min_label', 'max_posterior'])
def test_majority_vote_equals_the_seed(strategy):
    accs = []
    for t in range(40):
        g = torch.Generator().manual_seed(500 + t)
        nseg = torch.randint(1, 7, (5,), generator=g); ids = torch.repeat_interleave(torch.arange(5), nseg)
        scores = -torch.rand(len(ids), 3, generator=g) * 4
        pred = torch.randint(0, 3, (len(ids),), generator=g)
        truth = torch.randint(0, 3, (5,), generator=g)
        accs.append(float((majority_vote(pred, scores, ids, strategy) == truth).float().mean()))
    close(f'vote_{strategy or "first"}', torch.tensor(accs), 2 * U)  # a fraction k/5 in float32 vs float64: 1 rounding

def test_spec_views_equal_the_seed():
    "The seed's 3 spectrogram views: time warp on the same torch stream; masks with the seed's recorded numpy draws."
    from soundlab.models.fewshot import time_warp, band_mask, SpecViews
    sp = EXP['specaug_params']
    x = randn(9, 2, 1, 128, 90)[:, 0]; torch.manual_seed(0); y = time_warp(x, sp['W'], torch.Generator().manual_seed(21))
    # linear weights from float32 positions (<= 90 frames): 3 operations (scale, shift, floor's remainder) of <= 90 u
    # each, 2 taps, 2 sides
    close('views_warp', y, 2 * 2 * 3 * 90 * U * float(x.abs().max()))
    for name, dim in (('time', -1), ('freq', -2)):
        got = band_mask(torch.ones(1, 128, 90), dim, 0, 2, 0., draws=REF[f'views_{name}_draws'].tolist())[0] == 0
        assert torch.equal(got, torch.as_tensor(REF[f'views_{name}_mask'])), name
    # soundlab's own draws: the seed's widths and starts, in distribution (one stripe each, 2000 calls)
    v = SpecViews(sp); g = torch.Generator().manual_seed(3)
    ones = torch.ones(1, 128, 157)
    for name, k, read in (('time', 2, lambda m: m[0]), ('freq', 3, lambda m: m[:, 0])):
        cols = [read((v(ones, g)[0, k] == 0)).nonzero()[:, 0] for _ in range(2000)]
        ours = np.array([(len(c), int(c[0])) for c in cols]); seed = REF[f'views_{name}_stripes']
        for j, what in enumerate(('width', 'start')):
            ks = stats.ks_2samp(ours[:, j], seed[:, j]); print(f'{name} stripe {what}: KS p={ks.pvalue:.3f}')
            assert ks.pvalue > 1e-3 and ours[:, j].min() == seed[:, j].min() and ours[:, j].max() <= seed[:, j].max() + (j == 1)

def test_one_training_episode_equals_the_seed(monkeypatch):
    "run_episode + Adam on identical weights and views (train mode, dropout off): the seed's FSL, CPL, loss and updated weights."
    import soundlab.recipes.fewshot as R
    exp = EXP | dict(use_attention=True, use_contrastive=True, encoder_name='Hybrid', specaug_params=EXP['specaug_params'] | dict(use=True))
    exp['loss'] = EXP['loss'] | dict(cpl=EXP['loss']['cpl'] | dict(m_param=2))  # every negative: 2 queries per class
    perm = torch.as_tensor(REF['episode_perm'])  # the seed's random.shuffle of the augmented views
    monkeypatch.setattr(R, '_shuffle_views', lambda e, g: e[:, torch.cat([torch.zeros(1, dtype=torch.long), perm])])
    def episode(dtype):
        m = create_fewshot_model(exp, MCFG); fill(m.encoder); fill(m.attention); fill(m.projection); m.to(dtype)
        sup, qry = randn(31, 4, 6, 1, 128, 100).to(dtype), randn(32, 4, 6, 1, 128, 100).to(dtype)
        sx, qx = torch.zeros(6, 128, 100), torch.zeros(6, 128, 100)
        class Given(torch.nn.Module):  # the seed's view lists, (V, B, 1, F, T) -> (B, V, F, T)
            def forward(self, x): return (sup if x is sx else qry).transpose(0, 1)[:, :, 0]
        m.views = Given(); m.train()
        for mod in m.modules():
            if isinstance(mod, (torch.nn.Dropout, torch.nn.MultiheadAttention)): mod.eval()
        y, grp = torch.tensor([0, 0, 1, 1, 2, 2]), torch.arange(6)
        b = dict(support=sx, query=qx, support_y=y, support_group=grp, query_y=y, query_group=grp)
        opt = torch.optim.Adam(m.parameters(), lr=exp['lr'])
        with torch.enable_grad():
            o = R.run_episode(m, b, exp, 'train', None, R.contrastive_loss_fn(exp)); o['loss'].backward(); opt.step()
        return o, {k: v for k, v in m.state_dict().items() if v.is_floating_point() and not k.startswith('views')}
    (o, sd), (o64, sd64) = episode(torch.float32), episode(torch.float64)  # the twin: see conftest.f64_tol
    for k in ('contrastive', 'loss'):  # + the losses' own float32 rounding (both twins compute them in float32): 256-d distances
        close(f'episode_{k.replace("contrastive", "cpl")}', o[k], f64_tol(o[k], o64[k]) + rounding(256, float(o[k])))
    assert {f'episode_{k}' for k in sd} == {k for k in REF.files if k.startswith('episode_') and not k.startswith('episode_sum_')} - {'episode_fsl', 'episode_cpl', 'episode_loss', 'episode_perm'}
    # per tensor, from the float64 twin: Adam's first step is +-lr where a gradient is >> eps, but a conv bias right
    # before train-mode batch norm (and the attention's key bias) has an exact gradient of 0, i.e. rounding noise that
    # Adam turns into a step of up to lr: the twin's ~0 against float32's noise makes those tensors' tolerance ~6 lr
    tol = {k: f64_tol(v, sd64[k]) for k, v in sd.items()}
    check_close('updated weights and statistics, first 16 of every tensor', torch.cat([v.flatten()[:16] for v in sd.values()]),
                np.concatenate([REF[f'episode_{k}'] for k in sd]), atol=np.concatenate([tol[k].reshape(-1)[:16] for k in sd]))
    keys = [k for k in sd if f'episode_sum_{k}' in REF.files]
    check_close('tensor sums', [sd[k].double().sum().item() for k in keys], [float(REF[f'episode_sum_{k}']) for k in keys],
                atol=[float(tol[k].sum()) for k in keys])

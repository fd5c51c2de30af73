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

REF = np.load(Path(__file__).parent/'conformance'/'seed002_reference.npz')
EXP, MCFG = load_fewshot_config()
TOL = 1e-5  # float32, CPU; the measured max |diff| is printed by `-s`

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

def close(name, got, tol=TOL):
    ref = torch.as_tensor(REF[name]); got = got.detach().float()
    assert got.shape == ref.shape, (name, got.shape, ref.shape)
    d = (got - ref).abs().max().item(); print(f'{name}: max |diff| {d:.2e}')
    assert d <= tol, f'{name}: max |diff| {d:.3g} > {tol}'

@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad(): yield

def test_encoders_equal_the_seed():
    x = randn(1, 6, 1, 128, 157)
    for name, m in (('cnn', fill(CNNEncoder(**MCFG['CNN'], input_shape=(128, 157)))), ('hybrid', fill(create_encoder('Hybrid', MCFG)))):
        close(f'{name}_eval', m.eval()(x))
        m.train(); m.logits[0].eval(); close(f'{name}_train', m(x))  # batch statistics, dropout off
    xl = randn(2, 3, 1, 128, 300)
    close('cnn_long_eval', fill(CNNEncoder(**MCFG['CNN'], input_shape=(128, 300))).eval()(xl))
    close('hybrid_long_eval', fill(create_encoder('Hybrid', MCFG)).eval()(xl))
    assert int(REF['cnn_from_config_builds']) == 0  # the seed's get_backbone_model('CNN') omits trial_shape; soundlab's builds

def test_attention_and_projection_equal_the_seed():
    close('attention', fill(ViewAttention(**MCFG['Attention'])).eval()(randn(3, 7, 4, 64)))
    p = MCFG['Projection']
    close('projection', fill(ProjectionHead(p['input_dim'], p['output_dim'], p['hidden_dim']))(randn(4, 7, 256)))

def test_protonet_forward_equals_the_seed():
    "Hybrid on the 4 views -> attention -> prototypes -> negative distances, as ContrastivePrototypicalNetworks."
    m = create_fewshot_model(EXP | dict(use_attention=True, use_contrastive=True, encoder_name='Hybrid'), MCFG).eval()
    fill(m.encoder); fill(m.attention)
    def fused(views):  # (V, B, 1, F, T), the seed's list of view batches
        v = views.transpose(0, 1); B, V = v.shape[:2]
        return m.fuse(m.encoder(v.reshape(B * V, *v.shape[2:])).reshape(B, V, -1))
    protos = class_prototypes(fused(randn(5, 4, 6, 1, 128, 157)), torch.tensor([0, 0, 1, 1, 2, 2]), 3)
    close('protonet_prototypes', protos)
    close('protonet_scores', _scores(m, protos, fused(randn(6, 4, 4, 1, 128, 157))), 1e-4)

P, Z, Y = randn(7, 5, 32), randn(8, 15, 32), torch.arange(5).repeat_interleave(3)

def test_prototypical_loss_equals_the_seed():
    close('fsl_loss', prototypical_loss(P, Z, Y, squared=False))
    close('fsl_loss', F.cross_entropy(_scores(type('M', (), {'relation': None}), P, Z), Y))  # the recipe's path

def test_cpl_equals_the_seed():
    torch.manual_seed(11); close('cpl_m2', cpl_loss_loop(P, Z, Y, t=0.7, m=2))  # same randperm stream, same draws
    close('cpl_mall', cpl_loss(P, Z, Y, t=0.7, m=3))  # every negative: no randomness
    ours = np.array([float(cpl_loss(P, Z, Y, t=0.7, m=1, generator=torch.Generator().manual_seed(s))) for s in range(300)])
    ks = stats.ks_2samp(ours, REF['cpl_m1_draws'])
    print(f'cpl m=1: mean {ours.mean():.5f} vs seed {REF["cpl_m1_draws"].mean():.5f}, KS p={ks.pvalue:.3f}')
    assert ks.pvalue > 0.01, ks

@pytest.mark.parametrize('angle', [0, 15, 30, 45])
@pytest.mark.parametrize('anchors', [True, False])
def test_angular_equals_the_seed(angle, anchors):
    Pn, Zn = F.normalize(P, dim=1), F.normalize(Z, dim=1)
    close(f'angular_{angle}_{int(anchors)}', AngularProtoLoss(angle, anchors)(Pn, Zn, Y))

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
    close(f'vote_{strategy or "first"}', torch.tensor(accs), 1e-6)

def test_spec_views_equal_the_seed():
    "The seed's 3 spectrogram views: time warp on the same torch stream; masks with the seed's recorded numpy draws."
    from soundlab.models.fewshot import time_warp, band_mask, SpecViews
    sp = EXP['specaug_params']
    torch.manual_seed(0); close('views_warp', time_warp(randn(9, 2, 1, 128, 90)[:, 0], sp['W'], torch.Generator().manual_seed(21)), 1e-5)
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
    m = create_fewshot_model(exp, MCFG); fill(m.encoder); fill(m.attention); fill(m.projection)
    sup, qry = randn(31, 4, 6, 1, 128, 100), randn(32, 4, 6, 1, 128, 100)
    sx, qx = torch.zeros(6, 128, 100), torch.zeros(6, 128, 100)
    class Given(torch.nn.Module):  # the seed's view lists, (V, B, 1, F, T) -> (B, V, F, T)
        def forward(self, x): return (sup if x is sx else qry).transpose(0, 1)[:, :, 0]
    m.views = Given(); m.train()
    for mod in m.modules():
        if isinstance(mod, (torch.nn.Dropout, torch.nn.MultiheadAttention)): mod.eval()
    perm = torch.as_tensor(REF['episode_perm'])  # the seed's random.shuffle of the augmented views
    monkeypatch.setattr(R, '_shuffle_views', lambda e, g: e[:, torch.cat([torch.zeros(1, dtype=torch.long), perm])])
    y, grp = torch.tensor([0, 0, 1, 1, 2, 2]), torch.arange(6)
    b = dict(support=sx, query=qx, support_y=y, support_group=grp, query_y=y, query_group=grp)
    opt = torch.optim.Adam(m.parameters(), lr=exp['lr'])
    with torch.enable_grad():
        o = R.run_episode(m, b, exp, 'train', None, R.contrastive_loss_fn(exp)); o['loss'].backward(); opt.step()
    close('episode_cpl', o['contrastive']); close('episode_loss', o['loss'])
    sd = {k: v for k, v in m.state_dict().items() if v.is_floating_point() and not k.startswith('views')}
    assert {f'episode_{k}' for k in sd} == {k for k in REF.files if k.startswith('episode_') and not k.startswith('episode_sum_')} - {'episode_fsl', 'episode_cpl', 'episode_loss', 'episode_perm'}
    # a conv bias right before train-mode batch norm has an exact gradient of 0: both sides hold rounding noise that
    # Adam scales to a step of up to lr, so those biases are only checked to move by less than 2 lr
    noise = {k for k in sd if k.startswith('encoder.conv_encoder.') and k.endswith('.0.bias')}
    per = {k: (torch.as_tensor(REF[f'episode_{k}']) - v.flatten()[:16]).abs().max().item() for k, v in sd.items()}
    assert max(per[k] for k in noise) < 2 * exp['lr']
    worst = max(d for k, d in per.items() if k not in noise)
    # the same holds for the key bias of the attention (in_proj_bias[64:128]): its sum is left out, its first 16 (query) kept
    rel = {k: abs(float(REF[f'episode_sum_{k}']) - v.double().sum().item()) / (1 + abs(v.double().sum().item()))
           for k, v in sd.items() if k not in noise | {'attention.layer.self_attn.in_proj_bias'}}
    sums = max(rel.values())
    print(f'one episode: updated weights max |diff| {worst:.2e}, relative diff of tensor sums {sums:.2e} (conv biases before BN aside)')
    assert worst < 1e-5 and sums < 2e-4  # sums: 2.9e-5 measured with AVX2 kernels (the pins were made with AVX-512's)

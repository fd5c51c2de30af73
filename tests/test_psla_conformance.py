"""PSLA: a released-layout B2 / 4-head / 527-class checkpoint loads through `psla_from_checkpoint` and gives the seed's outputs.

Pins in tests/conformance/ (made once, outside the repo, by the seed's own `EffNetAttention` from YuanGongND/psla
@76aedd1 on efficientnet_pytorch 0.7.1, wrapped in `torch.nn.DataParallel`, eval mode, CPU fp32):
  psla_b2_h4_released_keys.json  its state-dict keys and shapes (the released layout: `module.effnet._blocks.N...`)
  psla_b2_h4_reference.npz       probs_L (2, 527): its outputs; feat_L (2, 1408): its AvgPool2d((4,1)) features,
                                 first frequency group, averaged over time; for L = 200, 1056, 3000 frames
The weights are `seeded_tensor(key, shape)` below for every key (the same recipe produced the pins), the inputs
`torch.randn(2, L, 128, generator=torch.Generator().manual_seed(L))`.
"""
import json, math, zlib
from pathlib import Path
import numpy as np, pytest, torch
from soundlab.models.psla import EffNetAttention, psla_from_checkpoint, load_psla_checkpoint
from conftest import check_close, rounding

# eval mode (no batch statistics): ~71 layers (stem, 23 MBConv blocks x 3 convolutions, head), reductions <= 1408
# terms, each rounding(n) of its terms; independent per layer, they add up as sqrt(71) -> relative to the largest value
RHO = 71 ** 0.5 * rounding(1408)  # 1.1e-4

PINS = Path(__file__).parent/'conformance'
LENGTHS = (200, 1056, 3000)

def seeded_tensor(key:str, shape:tuple, seed:int=0) -> torch.Tensor:
    "Deterministic weights for a released key: a generator seeded by (seed, crc32(key)); kernels at gain 1.4."
    g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
    name = key.rsplit('.', 1)[-1]
    if name == 'num_batches_tracked': return torch.tensor(0)
    if name == 'running_var': return 0.5 + torch.rand(shape, generator=g)
    r = torch.randn(shape, generator=g)
    if name == 'head_weight': return 0.25 + 0.05 * r
    if name in ('running_mean', 'bias'): return 0.1 * r
    if len(shape) == 1: return 1 + 0.1 * r  # BatchNorm weight
    return 1.4 * r / math.sqrt(math.prod(shape[1:]))

@pytest.fixture(scope='module')
def released(tmp_path_factory):
    shapes = json.loads((PINS/'psla_b2_h4_released_keys.json').read_text())
    f = tmp_path_factory.mktemp('psla')/'as_mdl_seeded.pth'
    torch.save({k: seeded_tensor(k, tuple(s)) for k, s in shapes.items()}, f)
    return f

@pytest.fixture(scope='module')
def model(released):
    m, rep = psla_from_checkpoint(released)
    assert rep['layout'].startswith('released') and (m.b, m.head_num, m.label_dim, m.mode) == (2, 4, 527, 'reference')
    return m

@pytest.mark.parametrize('L', LENGTHS)
def test_released_psla_equals_reference(model, L):
    ref = np.load(PINS/'psla_b2_h4_reference.npz')
    x = torch.randn(2, L, 128, generator=torch.Generator().manual_seed(L))
    with torch.no_grad(): feats = model.forward_features(x); probs = model.forward_head(feats)
    pf, pp = ref[f'feat_{L}'], ref[f'probs_{L}'].astype(np.float64)
    check_close(f'features 128x{L}', feats.mean(1), pf, atol=RHO * np.abs(pf).max())
    logits = np.log(pp / (1 - pp))  # probs = sigmoid(logits): |d prob| <= p (1 - p) |d logit|, logits err by RHO of the largest
    check_close(f'probabilities 128x{L}', probs, pp, atol=pp * (1 - pp) * RHO * np.abs(logits).max() + 2 ** -24)

def test_timm_mode_differs(released):
    "The pins can tell the padding apart: timm's dynamic padding does not reproduce them (so the test above can fail)."
    m = EffNetAttention(527, b=2, head_num=4, mode='timm').eval()
    with pytest.warns(UserWarning, match="mode='reference'"): load_psla_checkpoint(m, released)
    x = torch.randn(2, 200, 128, generator=torch.Generator().manual_seed(200))
    with torch.no_grad(): p = m(x).numpy()
    assert np.abs(p - np.load(PINS/'psla_b2_h4_reference.npz')['probs_200']).max() > 1e-3

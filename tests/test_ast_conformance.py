"""AST: a fine-tuned checkpoint at 128x512 with strides 10 (ESC-50 style) loads through the constructor and through
`soundlab-tag`'s loader and gives the seed's outputs; on CUDA, forward runs under fp16 autocast as the seed's.

Pins in tests/conformance/ (made once, outside the repo, by the seed's `ASTModel` from YuanGongND/ast @31088be,
label_dim=50, fstride=tstride=10, 128x512, model_size='tiny224', imagenet_pretrain=False, wrapped in
`torch.nn.DataParallel`, eval mode, CPU fp32; shims for timm 1.0: `vit_deit_*` names -> `deit_*`, the seed's own
unchecked `PatchEmbed` put back in place of timm's, explicit (non-fused) attention as timm 0.4.5):
  ast_tiny_ft512_keys.json        its state-dict keys and shapes (`module.v.*`, `module.mlp_head.*`, ImageNet heads kept)
  ast_tiny_ft512_reference.npz    logits_512 (2, 50): its outputs
Weights: `seeded_tensor(key, shape)` below for every key; input `torch.randn(2, 512, 128, generator=manual_seed(512))`.
"""
import json, math, zlib
from pathlib import Path
import numpy as np, pytest, torch
from soundlab.models.ast import ASTModel
from soundlab.infer import load_tagger
from conftest import check_close, rounding

# eval mode: 12 blocks x ~8 layers (qkv, q.k over 64, softmax.v over ~600 tokens, projection, 2 MLP layers, 2 layer
# norms) + patch embedding and head, reductions <= 768 terms: rounding(n) each, adding up as sqrt(100) -> relative to
# the largest logit
RHO = 100 ** 0.5 * rounding(768)  # 1e-4

PINS = Path(__file__).parent/'conformance'

def seeded_tensor(key:str, shape:tuple, seed:int=0) -> torch.Tensor:
    "Deterministic weights for a key of the seed's layout: a generator seeded by (seed, crc32(key))."
    g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
    name = key.rsplit('.', 1)[-1]
    r = torch.randn(shape, generator=g)
    if name in ('pos_embed', 'cls_token', 'dist_token', 'bias'): return 0.02 * r
    if len(shape) == 1: return 1 + 0.1 * r  # LayerNorm weight
    return r / math.sqrt(math.prod(shape[1:]))

@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    shapes = json.loads((PINS/'ast_tiny_ft512_keys.json').read_text())
    f = tmp_path_factory.mktemp('ast')/'esc50_fold1_seeded.pth'
    torch.save({k: seeded_tensor(k, tuple(s)) for k, s in shapes.items()}, f)
    return f

X = lambda: torch.randn(2, 512, 128, generator=torch.Generator().manual_seed(512))

def test_finetuned_ast_through_constructor(ckpt):
    m = ASTModel(50, 10, 10, 128, 512, imagenet_pretrain=False, audioset_pretrain=ckpt, model_size='tiny224').eval()
    with torch.no_grad(): y = m(X()).numpy()
    ref = np.load(PINS/'ast_tiny_ft512_reference.npz')['logits_512']
    check_close('logits 128x512 (constructor)', y, ref, atol=RHO * np.abs(ref).max())

def test_finetuned_ast_through_tagger_loader(ckpt):
    m = load_tagger(ckpt, 10, 10, input_tdim=512)
    assert (m.f_dim, m.t_dim, m.label_dim, m.model_size) == (12, 50, 50, 'tiny224')
    with torch.no_grad(): y = m(X()).numpy()
    ref = np.load(PINS/'ast_tiny_ft512_reference.npz')['logits_512']
    check_close("logits 128x512 (soundlab-tag's loader)", y, ref, atol=RHO * np.abs(ref).max())

@pytest.mark.cuda  # make gpu-check runs it
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_forward_autocasts_fp16(ckpt):
    m = ASTModel(50, 10, 10, 128, 512, imagenet_pretrain=False, audioset_pretrain=ckpt, model_size='tiny224').eval().cuda()
    x = X().cuda()
    with torch.no_grad():
        y = m(x)
        with torch.autocast('cuda', dtype=torch.float16): want = m.forward_head(m.forward_features(x))  # the seed's @autocast()
        m.cuda_fp16 = False; full = m(x)
    assert y.dtype == torch.float16 and torch.equal(y, want) and full.dtype == torch.float32  # exact: the same fp16 kernels on the same input
    ref = torch.from_numpy(np.load(PINS/'ast_tiny_ft512_reference.npz')['logits_512'])
    # fp16 autocast: u = 2^-11 (4.9e-4) per layer over ~100 layers (the seed's fp32 pins aside): 20 u of the largest
    # logit; fp32 on CUDA: cuDNN may run the patch embedding in TF32 (u = 2^-11 too), its error diluted downstream: 1 u
    scale = float(ref.abs().max())
    assert (y.float().cpu() - ref).abs().max() < 20 * 2 ** -11 * scale and (full.cpu() - ref).abs().max() < 2 ** -11 * scale

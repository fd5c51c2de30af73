"""Any registered backbone under any method of the respiratory recipe (issue 14).

Every method {CE, SCL, Hybrid, M-SCL} runs one smoke epoch with one backbone of each registry family (PANNs cnn6,
AST ast_tiny224, PSLA effnet_b0, seed 001's resnet18, seed 002's fewshot_cnn) on 1-s cycles, plus Patch-Mix on AST; every
registered name (all 20) takes one training step of Hybrid (embedding, projection and classifier) on its own front
end's features. Crossing all 20 names with all methods for a full epoch is left out to keep CI cheap; the step covers
the wiring every method shares."""
import pytest, torch
from dataclasses import replace

FAMILY_REPS = ['cnn6', 'ast_tiny224', 'effnet_b0', 'resnet18', 'fewshot_cnn']  # one per family
KW = {'ast_tiny224': dict(fstride=16, tstride=16)}  # non-overlapping patches: cheap
SMOKE = dict(duration=1., epochs2=1)  # 1-s cycles, one linear-evaluation epoch

@pytest.fixture(scope='module')
def R(shared_data, tmp_path_factory):
    mp = pytest.MonkeyPatch(); mp.setenv('SOUNDLAB_DATA', str(shared_data))
    SMOKE['out_dir'] = str(tmp_path_factory.mktemp('runs'))  # run folders of their own (other tests share the run tags)
    import soundlab.recipes.respiratory as R
    yield R
    mp.undo()

_DATA = {}
def cycles(R, cfg):
    "load_cycles once per front end (the cache key holds it; the tensors are shared by the tests of this module)."
    key = repr(R.frontend_of(cfg).config())
    if key not in _DATA: _DATA[key] = R.load_cycles(cfg, progress=False)
    return _DATA[key]

@pytest.mark.parametrize('backbone', FAMILY_REPS)
@pytest.mark.parametrize('method', ['sl', 'scl', 'hybrid', 'mscl'])
def test_method_x_backbone_smoke_epoch(R, backbone, method):
    cfg = R.respiratory_config('smoke', backbone=backbone, method=method, backbone_kw=KW.get(backbone, {}), **SMOKE)
    data = cycles(R, cfg)
    r = R.run_once(cfg, data, seed=0, progress=False)
    dim = R.create_model(backbone, **R.backbone_kw(cfg)).embed_dim
    assert r['embeddings'].shape == (len(data['test']['y']), dim)
    assert 0 <= r['sp'] <= 100 and 0 <= r['se'] <= 100 and abs(r['score'] - (r['sp'] + r['se']) / 2) < 1e-9
    assert r['history']['train_loss'].notna().all()

def test_patchmix_ast_and_refusal(R):
    cfg = R.respiratory_config('smoke', backbone='ast_tiny224', method='patchmix', backbone_kw=KW['ast_tiny224'], **SMOKE)
    r = R.run_once(cfg, cycles(R, cfg), seed=0, progress=False)
    h = r['history']
    assert (h.train_loss - h.train_ce - h.train_patchmix).abs().max() < 1e-4  # pm_alpha = 1
    assert 0 <= r['score'] <= 100
    for bb in ('cnn6', 'effnet_b0', 'crnn'):
        with pytest.raises(ValueError, match='patch-based backbone'): R.respiratory_config('smoke', backbone=bb, method='patchmix')

@pytest.mark.parametrize('backbone', __import__('soundlab.models.registry', fromlist=['x']).list_models())
def test_every_backbone_one_hybrid_step(R, backbone):
    kw = KW.get(backbone, dict(fstride=16, tstride=16) if backbone.startswith('ast_') else {})
    cfg = R.respiratory_config('smoke', backbone=backbone, method='hybrid', backbone_kw=kw, **SMOKE)
    data = cycles(R, cfg)
    torch.manual_seed(0)
    model = R.build_model(cfg, n_meta=5).train()
    step = R.make_step(cfg, torch.ones(4), torch.Generator().manual_seed(0))
    b = (data['train']['x'][:4], data['train']['y'][:4], data['train']['meta'][:4])
    out = step(model, b)
    out['loss'].backward()
    assert torch.isfinite(out['loss'])
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())

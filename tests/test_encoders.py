"""soundlab.encoders.load_encoder on the checkpoint every recipe writes (Trainer's best.pt around each recipe's network)."""
import pytest, torch
from torch import nn
from soundlab.encoders import load_encoder, SoundlabEncoder
from soundlab.models.registry import create_model

def _save(tmp_path, net, name='best.pt'):
    torch.save({'model': net.state_dict(), 'epoch': 1, 'metrics': {'val_acc': 0.}}, tmp_path / name)  # the Trainer's best.pt
    return tmp_path / name

def _check(net, prefix, name, path, **kw):
    "Every tensor the loaded registry model holds is the checkpoint's under `prefix` (heads aside); returns the model."
    m, info = load_encoder(name, path, **kw)
    sd = net.state_dict(); n = 0
    for k, v in m.net.state_dict().items():
        if prefix + k in sd and sd[prefix + k].shape == v.shape: assert torch.equal(v, sd[prefix + k]), k; n += 1
    assert n >= 0.9 * len(m.net.state_dict()), (n, len(m.net.state_dict()))
    return m

def _perturbed(module, seed=1):  # weights unlike a fresh init, so that a wrong load cannot pass
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters(): p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return module

@pytest.mark.parametrize('backbone,method', [('cnn6', 'sl'), ('cnn6', 'mscl'), ('ast_tiny224', 'patchmix')])
def test_respiratory_checkpoints(tmp_path, backbone, method):
    from soundlab.recipes.respiratory import RespiratoryConfig, build_model, backbone_kw
    cfg = RespiratoryConfig(backbone=backbone, method=method, duration=1.0)
    net = _perturbed(build_model(cfg, n_meta=3)).eval()
    # the recipe's create_model arguments (AST: input_tdim=98 for 1-s cycles; the checkpoint alone says 96..105)
    m = _check(net, 'backbone.net.', backbone, _save(tmp_path, net), **backbone_kw(cfg))
    x = torch.randn(2, *[s or 40 for s in m.input_spec.shape])
    with torch.no_grad(): torch.testing.assert_close(m.embed(x), net.backbone.embed(x), rtol=0, atol=0)  # same weights, same kernels

def test_simclr_checkpoint(tmp_path):  # seed 001: SimCLRNet(encoder, projection head); encoder.pt with the input norm
    from soundlab.recipes.sed import SimCLRNet
    from soundlab.models.sed import create_sed_model
    net = _perturbed(SimCLRNet(create_sed_model('vgglike', 20), nn.Linear(512, 128))).eval()
    m = _check(net, 'encoder.', 'vgglike', _save(tmp_path, net))
    x = torch.randn(2, 1, 101, 96)
    with torch.no_grad(): torch.testing.assert_close(m.embed(x), net.encoder.embed(x), rtol=0, atol=0)
    torch.save({'state_dict': net.encoder.state_dict(), 'mean': -2., 'std': 3., 'arch': 'vgglike'}, tmp_path / 'encoder.pt')
    m, info = load_encoder('vgglike', tmp_path / 'encoder.pt')
    assert info['norm'] == (-2., 3.) and SoundlabEncoder(m, info).norm == (-2., 3.)

def test_fewshot_checkpoints(tmp_path):
    from soundlab.models.fewshot import create_fewshot_model, load_fewshot_config
    from soundlab.recipes.fewshot import RegistryEncoder
    exp, mcfg = load_fewshot_config()
    net = _perturbed(create_fewshot_model(exp, mcfg, encoder=RegistryEncoder(create_model('cnn6')))).eval()  # any registry encoder
    _check(net, 'encoder.model.net.', 'cnn6', _save(tmp_path, net))
    net = _perturbed(create_fewshot_model(exp, mcfg, pool='adaptive')).eval()     # the seed's own encoder
    _check(net, 'encoder.', f"fewshot_{exp['encoder_name'].lower()}", _save(tmp_path, net, 'native.pt'))  # the seed's: Hybrid

def test_ast_and_psla_recipe_checkpoints(tmp_path):
    from soundlab.recipes.ast import ASTConfig, build_model
    net = _perturbed(build_model(ASTConfig(model='ast', model_size='tiny224', imagenet_pretrain=False, target_length=200), 10)).eval()
    path = _save(tmp_path, net)
    # AST: without input_tdim, the shortest input giving the checkpoint's patch grid (as soundlab-tag): 196 frames here
    assert load_encoder('ast_tiny224', path)[0].input_spec.shape[0] == 196
    m = _check(net, '', 'ast_tiny224', path, input_tdim=200)
    x = torch.randn(1, 200, 128)
    with torch.no_grad(): torch.testing.assert_close(m.embed(x), net.forward_head(net.forward_features(x), pre_logits=True), rtol=0, atol=0)
    net = _perturbed(build_model(ASTConfig(model='psla', effnet_b=0, imagenet_pretrain=False), 10)).eval()
    _check(net, '', 'effnet_b0', _save(tmp_path, net, 'psla.pt'))

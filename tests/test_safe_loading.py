"Every loader of a user-supplied weight/checkpoint file refuses a pickle that would run code (weights_only=True), naming the file."
import contextlib, io, os
import pytest, torch
from soundlab.core import UnsafeFileError, load_torch_file
from soundlab.train import load_checkpoint
from soundlab.infer import load_tagger, main
from soundlab.models.psla import EffNetAttention, load_psla_checkpoint, psla_from_checkpoint
from soundlab.models.ast import ASTModel, load_ast_weights
from soundlab.recipes.psla import weight_average
from soundlab.models.panns import load_panns_checkpoint
from soundlab.models.sed import load_sed_checkpoint

class Payload:
    "Unpickling this calls os.system: creates the marker file."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))

@pytest.fixture
def evil(tmp_path):
    marker, f = tmp_path/'code_ran', tmp_path/'evil_model.pth'
    torch.save({'model': {'w': torch.zeros(1)}, 'x': Payload(marker)}, f)
    yield f
    assert not marker.exists(), 'the payload ran'

LOADERS = {
    'load_torch_file': load_torch_file,
    'Trainer checkpoint (load_checkpoint)': load_checkpoint,
    'soundlab-tag (load_tagger)': load_tagger,
    'load_psla_checkpoint': lambda f: load_psla_checkpoint(EffNetAttention(3, b=0, head_num=1, mode='timm'), f),
    'psla_from_checkpoint': psla_from_checkpoint,
    'PSLA weight averaging': lambda f: weight_average([f, f]),
    'load_panns_checkpoint': lambda f: load_panns_checkpoint(torch.nn.Linear(1, 1), f),
    'load_sed_checkpoint': lambda f: load_sed_checkpoint(torch.nn.Linear(1, 1), f),
    'load_ast_weights': lambda f: load_ast_weights(ASTModel(3, 16, 16, 32, 32, imagenet_pretrain=False, model_size='tiny224'), f),
}

@pytest.mark.parametrize('name', list(LOADERS))
def test_refuses_code(evil, name):
    with pytest.raises(UnsafeFileError, match=r'evil_model\.pth: refused to load'): LOADERS[name](evil)

def test_cli_refuses_code(evil, tmp_path):
    err = io.StringIO()
    with contextlib.redirect_stderr(err): rc = main([str(tmp_path/'any.wav'), '--checkpoint', str(evil)])
    assert rc == 2 and 'evil_model.pth: refused to load' in err.getvalue()

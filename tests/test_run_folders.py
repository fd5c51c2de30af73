"""Run folders: every config field that shapes training changes the folder a run checkpoints to (a field added later
joins by default), and the fields that only say where a run writes or how fast it runs do not. Cheap: no training."""
from dataclasses import fields, replace
import pytest
from soundlab.core import RUN_IGNORE
import soundlab.recipes.respiratory as R, soundlab.recipes.ast as A, soundlab.recipes.psla as P, soundlab.recipes.sed as S
import soundlab.recipes.fewshot as F

def _other(v):
    "A different value of the same kind."
    if isinstance(v, bool): return not v
    if isinstance(v, (int, float)): return v * 2 + 1
    if isinstance(v, str): return v + 'x'
    if isinstance(v, (tuple, list)): return type(v)([*v, 1])
    if isinstance(v, dict): return {**v, 'extra': 1}
    return 1  # None

def _check(cfg, folder, same:tuple):
    rel = lambda c: folder(c) if isinstance(folder(c), str) else folder(c).relative_to(c.out_dir)  # the folder within out_dir
    base = rel(cfg)
    for f in fields(cfg):
        other = rel(replace(cfg, **{f.name: _other(getattr(cfg, f.name))}))
        if f.name in same: assert other == base, f'{f.name} changed the run folder'
        else: assert other != base, f'{f.name} does not change the run folder: a changed run would resume another'

def test_respiratory(tmp_path):
    # choices: what the own-data defaults chose, a record of settings that are themselves in the key
    _check(R.respiratory_config('smoke', out_dir=str(tmp_path)), lambda c: R.run_dir(c, 0), RUN_IGNORE + ('n_runs', 'choices'))

def test_ast(tmp_path):  # every field of the run's method counts (other methods' own fields rightly do not)
    _check(A.ast_config('smoke', 'vocalsound', method='mscl', out_dir=str(tmp_path)), lambda c: A.run_dir(c, 'fold1'),
           RUN_IGNORE + ('folds', 'features', 'lazy_cache', 'allow_synthetic', 'choices') + A._PM_KEYS)
    _check(A.ast_config('smoke', 'vocalsound', method='patchmix', out_dir=str(tmp_path)), lambda c: A.run_dir(c, 'fold1'),
           RUN_IGNORE + ('folds', 'features', 'lazy_cache', 'allow_synthetic', 'choices') + tuple(k for k in A._MSCL_KEYS if k != 'tau'))
    ce = A.ast_config('smoke', 'vocalsound', out_dir=str(tmp_path))
    assert A.run_dir(replace(ce, lam=0.1), 'x') == A.run_dir(ce, 'x') != A.run_dir(replace(ce, amp=not ce.amp), 'x')

def test_psla(tmp_path):
    _check(P.psla_config('smoke', out_dir=str(tmp_path)), P.run_name, RUN_IGNORE + P._NOT_TRAINING)
    c = P.psla_config('smoke')
    assert P.run_name(replace(c, enhance_types='type1'), '5') != P.run_name(c, '5') != P.run_name(c, 'none')

@pytest.mark.parametrize('stage', S.STAGES)
def test_sed(tmp_path, stage):  # downstream from our encoder, the pre-training settings count too (another encoder)
    same = RUN_IGNORE + {'pretrain': S._NOT_IN['pretrain'], 'lineval': S._FINETUNE, 'finetune': S._LINEVAL}[stage]
    _check(S.sed_config('smoke', out_dir=str(tmp_path)), lambda c: S.stage_dir(c, stage), same)

def test_fewshot(tmp_path):
    import numpy as np, soundfile as sf
    for k in range(4):  # a tiny class-folder corpus: with dataset='folder' the key holds what the own-data defaults chose from it
        (tmp_path / 'corpus' / f'c{k % 2}').mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / 'corpus' / f'c{k % 2}' / f'{k}.wav', np.random.default_rng(k).standard_normal(8000).astype('float32') * 0.1, 16000)
    cfg = F.fewshot_config('smoke', data_root=str(tmp_path / 'corpus'), out_dir=str(tmp_path))
    folder = lambda c: F.run_dir(c, F.experiment(c))
    for kw in (dict(amp=True), dict(dataset='folder'), dict(num_epochs=3), dict(lr=0.5), dict(n_way=4), dict(seed=1),
               dict(encoder_pool='max'), dict(data_root=str(tmp_path / 'other')), dict(n_validation_tasks=3)):
        assert folder(replace(cfg, **kw)) != folder(cfg), kw
    assert folder(replace(cfg, device='cpu', progress=True, on_bad_file='skip')) == folder(cfg)

"""DDP on the CPU (gloo, 2 processes through soundlab.dist.launch = torchrun) against one process with the same global batch.

Only float32 summation order differs: DDP averages two half-batch gradients, one process averages one full batch.
Tolerance from the computation: the same single-process training in float64 measures how far float32 rounding moves
every epoch's loss and every final weight over the 24 momentum-SGD steps (`conftest.f64_tol`: x2 sides x3, + 4 ulps);
the test accuracy is identical. Checked for the default shuffled order and for weighted sampling (`weights=`)."""
import os, sys, time
from pathlib import Path
import numpy as np, pandas as pd
import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from conftest import check_close, f64_tol

def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 8, generator=g) + 1.2 * F.one_hot(y, 8).float()
    return x, y

def train_tiny(cfg:dict) -> dict:
    "A tiny classifier trained through Trainer.loader; evaluation sharded over the ranks and gathered."
    from soundlab.train import Trainer
    from soundlab import dist
    torch.manual_seed(0); dt = getattr(torch, cfg.get('dtype', 'float32'))  # float64: the rounding-free twin
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3)).to(dt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
    xt, yt = _data(60, 1); xt = xt.to(dt)
    def evaluate(m):
        r, w = dist.rank(), dist.world_size()
        logits = dist.gather(m(xt[r::w]))                      # each rank scores its shard, rank order restored below
        order = torch.cat([torch.arange(len(xt))[k::w] for k in range(w)])
        y = yt[order]
        return {'test_loss': F.cross_entropy(logits, y).item(), 'test_acc': (logits.argmax(1) == y).float().mean().item(), 'n_test': len(logits)}
    step = lambda m, b: {'loss': F.cross_entropy(m(b[0]), b[1])}
    tr = Trainer(model, step, opt, sched, evaluate, 'test_acc', out_dir=cfg['out_dir'], device='cpu', amp=False, seed=7, progress=False)
    weights = torch.linspace(0.2, 1., 96) if cfg.get('weighted') else None         # the distributed weighted sampler
    x, y = _data(96, 0)
    hist = tr.fit(tr.loader(TensorDataset(x.to(dt), y), cfg['bs'], weights=weights), cfg['epochs'])
    out = dict(history=hist, state={k: v.clone() for k, v in tr.module.state_dict().items()}, world=dist.world_size(),
               ddp=tr.ddp is not None)
    if cfg.get('also_weighted'):
        out['weighted'] = train_tiny({**cfg, 'also_weighted': False, 'weighted': True, 'out_dir': cfg['out_dir'] + '_w'})
    return out

def test_ddp_matches_single_process(tmp_path):
    from soundlab.dist import launch
    cfg = dict(bs=16, epochs=4, also_weighted=True)
    t0 = time.time()
    one = train_tiny(cfg | dict(out_dir=str(tmp_path / 'one')))
    twin = train_tiny(cfg | dict(out_dir=str(tmp_path / 'twin'), dtype='float64'))
    env = {'PYTHONPATH': os.pathsep.join([str(Path(__file__).parent), os.environ.get('PYTHONPATH', '')]), 'OMP_NUM_THREADS': '1'}
    two = launch('test_ddp:train_tiny', cfg | dict(out_dir=str(tmp_path / 'two')), nproc=2, env=env, timeout=240, quiet=True)
    dl = np.abs(one['history'].train_loss.values - two['history'].train_loss.values).max()
    dw = max((one['state'][k] - two['state'][k]).abs().max().item() for k in one['state'])
    print(f'ddp test: {time.time() - t0:.1f} s; max |train loss diff| {dl:.2e}, max |weight diff| {dw:.2e}')
    assert (one['world'], one['ddp'], two['world'], two['ddp']) == (1, False, 2, True)
    h1, h2 = one['history'], two['history']
    assert len(h1) == len(h2) == 4 and (h2.n_test == 60).all()
    for col in ('train_loss', 'test_loss'):
        check_close(f'{col} per epoch', h2[col].values, h1[col].values, atol=f64_tol(h1[col].values, twin['history'][col].values))
    assert (h1.test_acc.values == h2.test_acc.values).all()
    assert h1.train_loss.iloc[-1] < h1.train_loss.iloc[0] * 0.7           # it did learn something
    for k in one['state']: check_close(f'final {k}', two['state'][k], one['state'][k], atol=f64_tol(one['state'][k], twin['state'][k]))
    w1, w2, wt = one['weighted'], two['weighted'], twin['weighted']             # weighted sampling: the same equality
    check_close('train_loss per epoch, weighted sampling', w2['history'].train_loss.values, w1['history'].train_loss.values,
                atol=f64_tol(w1['history'].train_loss.values, wt['history'].train_loss.values))
    assert not np.allclose(w1['history'].train_loss.values, h1.train_loss.values)  # ... and a different sample
    for k in w1['state']: check_close(f'final {k}, weighted', w2['state'][k], w1['state'][k], atol=f64_tol(w1['state'][k], wt['state'][k]))
    # rank 0 alone wrote the run folder: the history file is the gathered history, once
    assert pd.read_csv(tmp_path / 'two' / 'history.csv').train_loss.round(6).tolist() == h2.train_loss.round(6).tolist()
    names = sorted(p.name for p in (tmp_path / 'two').iterdir())
    assert [n for n in names if '.tfevents.' not in n] == ['best.pt', 'history.csv', 'last.pt']
    assert sum('.tfevents.' in n for n in names) == 1                       # TensorBoard: rank 0's event file only

def test_run_icbhi_two_processes(tmp_path, shared_data):
    "The run notebook with nproc=2: the recipe trains under torchrun unchanged; rank 0 alone writes the table."
    from conftest import run_notebook
    res = run_notebook('run_icbhi.ipynb', tmp_path, shared_data, method='sl', preset='smoke', duration=1.0, nproc=2,
                       on_bad_file='skip', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'icbhi_results.csv')
    assert len(table) == 1 and table.Method[0] == 'CE' and 0 <= table.score_mean[0] <= 100
    skipped = list(tmp_path.glob('*_skipped.csv'))
    assert len(skipped) == 1 and pd.read_csv(skipped[0]).empty                 # the synthetic corpus has no bad file

def test_sed_recipe_two_processes(tmp_path, shared_data, monkeypatch):
    "The SED recipe (contrastive pre-training with a custom collate and drop_last, linear eval, fine-tuning) under torchrun."
    from soundlab.dist import launch
    from soundlab.recipes.sed import sed_config, load_clips
    monkeypatch.setenv('SOUNDLAB_DATA', str(shared_data))
    cfg = sed_config('smoke', out_dir=str(tmp_path / 'runs'))
    load_clips(cfg, progress=False)                                            # corpus + cache before the ranks start
    res = launch('soundlab.recipes.sed:run_sed', cfg, 2, kwargs=dict(stage='all', progress=False),
                 env={'SOUNDLAB_DATA': str(shared_data), 'OMP_NUM_THREADS': '1'}, timeout=400, quiet=True)
    assert [r['stage'] for r in res] == ['pretrain', 'lineval', 'finetune']
    assert all(0 <= r['test_bacc'] <= 100 for r in res[1:])
    assert (tmp_path / 'runs').exists() and len(list((tmp_path / 'runs').rglob('encoder.pt'))) == 1

# ---- every recipe under torchrun from an EMPTY data folder: the ranks must not race to write the synthetic corpus,
# the datafiles, the feature cache or the fbank statistics (rank 0 prepares them, the others wait and read).
# Only completion and rank-0-only writing are checked here: the recipes' models have BatchNorm statistics kept per rank
# (SyncBatchNorm needs GPUs) or sample whole episodes per rank, so a 2-process run is not the same computation as one
# process; the loss-curve equality is `test_ddp_matches_single_process` above.

def _recipe_env(tmp_path):
    data = tmp_path / 'data'; data.mkdir()
    return data, {'SOUNDLAB_DATA': str(data), 'OMP_NUM_THREADS': '1',
                  'PYTHONPATH': os.pathsep.join([str(Path(__file__).parent), os.environ.get('PYTHONPATH', '')])}

def _table(row:dict, path:str, cfg):
    "The run notebooks' table write: `update_table` (rank 0 only) plus the skipped-file list."
    from soundlab.train import update_table, precision_name
    return update_table(row, Path(path), precision=precision_name(cfg.device, cfg.amp), device=cfg.device)

def ast_ddp(cfg, table:str) -> dict:
    from soundlab import dist
    from soundlab.recipes.ast import run_ast
    res = run_ast(cfg, progress=False)
    _table({'tag': 'ddp', 'mean acc (%)': res['mean_acc']}, table, cfg)
    if dist.is_main(): res['bad'].write(Path(table).with_name('ast_skipped.csv'))
    return dict(world=dist.world_size(), mean_acc=res['mean_acc'], norm=res['norm'], n_hist=len(res['runs'][cfg.folds[0]]['history']))

def psla_ddp(cfg, table:str) -> dict:
    from soundlab import dist
    from soundlab.recipes.psla import run_psla
    res = run_psla(cfg, progress=False, verbose=False)
    df = res['results']['none']
    _table({'tag': 'ddp', 'eval mAP': float(df[(df.model == 'wa') & (df.set == 'evaluation')].mAP.iloc[0])}, table, cfg)
    if dist.is_main(): res['data']['bad'].write(Path(table).with_name('psla_skipped.csv'))
    return dict(world=dist.world_size(), results=df, enhancement=res['enhancement'], runs=[r['run_dir'] for r in res['runs']])

def fewshot_ddp(cfg, table:str) -> dict:
    from soundlab import dist
    from soundlab.recipes.fewshot import run_fewshot, table_row
    r = run_fewshot(cfg)
    _table(table_row(r), table, cfg)
    return dict(world=dist.world_size(), acc=r['acc'], accs=r['test_accs'], history=r['history'], run_dir=r['run_dir'])

def test_ast_recipe_two_processes(tmp_path):
    from soundlab.dist import launch
    from soundlab.recipes.ast import ast_config
    data, env = _recipe_env(tmp_path)
    cfg = ast_config('smoke', 'esc50', folds=(1,), device='cpu', out_dir=str(tmp_path / 'runs'))
    t0 = time.time()
    res = launch('test_ddp:ast_ddp', cfg, 2, kwargs=dict(table=str(tmp_path / 'ast.csv')), env=env, timeout=300, quiet=True)
    print(f'AST esc50 smoke, 2 processes from an empty data folder: {time.time() - t0:.1f} s')
    assert res['world'] == 2 and 0 <= res['mean_acc'] <= 100 and res['n_hist'] == cfg.epochs and res['norm'][1] > 0
    assert len(pd.read_csv(tmp_path / 'ast.csv')) == 1 and pd.read_csv(tmp_path / 'ast_skipped.csv').empty
    assert len(list((tmp_path / 'runs').rglob('last.pt'))) == 1 and any((data / 'cache').iterdir())  # one writer of the run folder

def test_psla_recipe_two_processes(tmp_path):
    "PSLA smoke with label enhancement: rank 0 writes the datafiles, the weight file and the enhanced datafiles."
    from soundlab.dist import launch
    from soundlab.recipes.psla import psla_config
    data, env = _recipe_env(tmp_path)
    cfg = psla_config('smoke', label_enhance='mean', device='cpu', out_dir=str(tmp_path / 'runs'))
    t0 = time.time()
    res = launch('test_ddp:psla_ddp', cfg, 2, kwargs=dict(table=str(tmp_path / 'psla.csv')), env=env, timeout=300, quiet=True)
    print(f'PSLA smoke (2 runs), 2 processes from an empty data folder: {time.time() - t0:.1f} s')
    assert res['world'] == 2 and len(res['runs']) == 2 and res['results'][['mAP', 'mAUC']].stack().between(0, 1).all()
    assert len(res['enhancement']) == 21 and (res['runs'][1] / 'history.csv').exists()
    assert len(pd.read_csv(tmp_path / 'psla.csv')) == 1 and pd.read_csv(tmp_path / 'psla_skipped.csv').empty
    assert len(list((tmp_path / 'runs').rglob('audio_model_wa.pt'))) == 2

def test_fewshot_recipe_two_processes(tmp_path):
    "One few-shot run (CNN encoder with BatchNorm): the episodes are dealt to the ranks; the test tasks are scored by rank 0."
    from soundlab.dist import launch
    from soundlab.recipes.fewshot import fewshot_config
    data, env = _recipe_env(tmp_path)
    cfg = fewshot_config('smoke', dataset_name='ESC-50-master', scenario='protonet+aug', device='cpu', out_dir=str(tmp_path / 'runs'))
    t0 = time.time()
    res = launch('test_ddp:fewshot_ddp', cfg, 2, kwargs=dict(table=str(tmp_path / 'fewshot.csv')), env=env, timeout=300, quiet=True)
    print(f'few-shot smoke, 2 processes from an empty data folder: {time.time() - t0:.1f} s')
    assert res['world'] == 2 and len(res['accs']) == cfg.n_testing_tasks and 0 <= res['acc'] <= 100
    assert len(res['history']) == cfg.num_epochs and res['history'].train_loss.notna().all()
    assert len(pd.read_csv(tmp_path / 'fewshot.csv')) == 1 and (res['run_dir'] / 'best.pt').exists()

"""The CUDA paths: every test here is marked `cuda` and skipped without a GPU; `make gpu-check` (tools/gpu_check.py) runs
them on one, with the timing. What they prove on a GPU:

- a smoke epoch of every recipe (its `smoke` preset with device='cuda'), and AST's fp16 + GradScaler path;
- AST under fp16 autocast against fp32 on the same weights, and the AST recipe computing in the precision it asks for;
- released-layout PANNs / AST / PSLA files on CUDA (IEEE float32: TF32 off) against the CPU pins;
- the device-mode fbank (soundlab.streaming) on the GPU against the feature cache's fbanks;
- a 1-process NCCL torchrun run (DistributedDataParallel over one GPU, `SOUNDLAB_DDP=1`) against the plain run;
- the training DataLoader path: pinned batches and asynchronous (`non_blocking`) host-to-device copies.

Rehearsal without a GPU: `SOUNDLAB_CUDA_REHEARSAL=1 pytest -m cuda tests/test_cuda.py` runs them on the CPU (gloo for
the torchrun test), skipping only the asserts that need CUDA, so the tests themselves can be checked before GPU time is
spent (minutes of CPU; not part of `make test`).
"""
import json, math, os, re, sys, time
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from torch import nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'benchmarks'))
from bench_train import tf32  # TF32 on/off for matmuls and cuDNN (the new API where torch has it)

REHEARSAL = os.environ.get('SOUNDLAB_CUDA_REHEARSAL', '') == '1' and not torch.cuda.is_available()
DEV = 'cpu' if REHEARSAL else 'cuda'
pytestmark = pytest.mark.cuda


def cuda_only(what:str):
    "Skip the rest of a test in a CPU rehearsal (its asserts only mean something on CUDA)."
    if REHEARSAL: pytest.skip(f'CPU rehearsal: {what} needs CUDA')


def rel_l2(a, b) -> float:
    "||a - b|| / ||b|| in float64."
    a, b = torch.as_tensor(a).double().cpu(), torch.as_tensor(b).double().cpu()
    return float((a - b).norm() / b.norm())


@pytest.fixture
def gpu_memory():
    "Peak GPU memory allocated during the test, in MiB (a callable; NaN in a CPU rehearsal)."
    if REHEARSAL: yield lambda: float('nan'); return
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    yield lambda: torch.cuda.max_memory_allocated() / 2**20


# ---------------------------------------------------------------------------------------------------------------
# 1. a smoke epoch of every recipe on the GPU

def _losses(hist:pd.DataFrame) -> np.ndarray: return hist[[c for c in hist.columns if c.startswith('train_loss')]].to_numpy(float)

@pytest.mark.parametrize('recipe', ['respiratory', 'sed', 'fewshot', 'ast', 'ast-fp16', 'psla'])
def test_smoke_epoch(recipe, tmp_path, shared_data, monkeypatch, gpu_memory):
    "Each recipe's `smoke` preset trains and evaluates on the GPU: finite losses, scores in range, work done on the GPU."
    monkeypatch.setenv('SOUNDLAB_DATA', str(shared_data))
    kw, t0 = dict(device=DEV, out_dir=str(tmp_path / 'runs')), time.time()
    if recipe == 'respiratory':
        from soundlab.recipes.respiratory import respiratory_config, run_respiratory
        row, runs = run_respiratory(respiratory_config('smoke', method='sl', **kw), progress=False)
        hists, scores = [runs[0]['history']], [runs[0]['score']]
    elif recipe == 'sed':
        from soundlab.recipes.sed import sed_config, run_sed
        res = run_sed(sed_config('smoke', **kw), 'all', progress=False)
        hists, scores = [r['history'] for r in res], [r['test_bacc'] for r in res[1:]]
    elif recipe == 'fewshot':
        from soundlab.recipes.fewshot import fewshot_config, run_fewshot
        r = run_fewshot(fewshot_config('smoke', **kw))
        hists, scores = [r['history']], [r['acc']]
    elif recipe.startswith('ast'):
        from soundlab.recipes.ast import ast_config, run_ast
        r = run_ast(ast_config('smoke', 'esc50', folds=(1,), amp=recipe == 'ast-fp16', **kw), progress=False)  # amp: the seed's fp16
        hists, scores = [r['runs'][1]['history']], [r['mean_acc']]
    else:
        from soundlab.recipes.psla import psla_config, run_psla
        r = run_psla(psla_config('smoke', **kw), progress=False, verbose=False)
        df = r['results']['none']; hists = [r['runs'][0]['history']]
        scores = [100 * float(df[(df.model == 'wa') & (df.set == 'evaluation')].mAP.iloc[0])]
    losses = np.concatenate([_losses(h).ravel() for h in hists])
    print(f'{recipe} smoke on {DEV}: {time.time() - t0:.1f} s, losses {np.round(losses, 4).tolist()}, scores {np.round(scores, 2).tolist()}, '
          f'peak GPU memory {gpu_memory():.0f} MiB')
    assert len(losses) and np.isfinite(losses).all()
    assert all(0 <= s <= 100 for s in scores), scores
    cuda_only('GPU memory'); assert gpu_memory() > 1  # the models and batches lived on the GPU


# ---------------------------------------------------------------------------------------------------------------
# 2. AST: fp16 autocast (the seed's precision on CUDA) against fp32, same weights

U16 = 2. ** -11  # unit roundoff of fp16 (10-bit mantissa)

def test_ast_fp16_autocast_against_fp32():
    """AST base384 at ESC-50's 512 frames (strides 10), the same random weights and inputs, eval mode.

    Tolerance, from the computation: autocast rounds both operands of every matrix product to fp16 (relative error
    about sqrt(2) u each, u = 2^-11) and accumulates in fp32; a logit passes through n = 6 products per block x 12 blocks
    + patch embedding + head = 74 products whose rounding errors add up independently along the residual stream, so
    ||y16 - y32|| / ||y32|| ~ sqrt(2 n) u = 5.9e-3; asserted <= 4x that (2.4e-2) for the amplification by layer norm
    and softmax. fp32 itself (TF32 off) must be far closer to a float64 run than that: <= 1e-4."""
    from soundlab.models.ast import ASTModel
    torch.manual_seed(0)
    m = ASTModel(50, 10, 10, 128, 512, imagenet_pretrain=False, model_size='base384').eval().to(DEV)
    x = torch.randn(2, 512, 128, generator=torch.Generator().manual_seed(1)).to(DEV)
    with torch.no_grad(), tf32(False):
        y16 = m(x)  # cuda_fp16: the model's own fp16 autocast on CUDA, as the seed's @autocast()
        m.cuda_fp16 = False; y32 = m(x)
        y64 = m.double()(x.double()).float(); m.float()
    n = 6 * len(m.v.blocks) + 2; tol = 4 * math.sqrt(2 * n) * U16
    e16, e32 = rel_l2(y16, y32), rel_l2(y32, y64)
    print(f'AST base384 128x512: |fp16 - fp32| / |fp32| = {e16:.2e} (tolerance {tol:.1e}), |fp32 - fp64| / |fp64| = {e32:.2e}')
    assert y32.dtype == torch.float32 and e32 <= 1e-4 and torch.isfinite(y16).all()
    cuda_only('fp16 autocast')
    assert y16.dtype == torch.float16 and e16 <= tol
    assert e16 > 10 * e32  # fp16 was really on


@pytest.mark.parametrize('amp', [False, True])
def test_ast_recipe_computes_in_its_precision(amp):
    "The AST recipe's model in its Trainer: amp=False trains in fp32 on CUDA; amp=True in fp16 with loss scaling (the seed's)."
    from soundlab.recipes.ast import ast_config, build_model, make_optimizer, make_step
    from soundlab.train import Trainer, seed_precision
    cfg = ast_config('smoke', 'esc50', amp=amp, device=DEV)
    model = build_model(cfg, 50); opt, _ = make_optimizer(cfg, model)
    tr = Trainer(model, make_step(cfg, opt), opt, device=DEV, precision=seed_precision(cfg.amp, 'fp16'), progress=False)
    x = torch.randn(2, cfg.target_length, cfg.num_mel_bins, device=tr.device)
    with torch.no_grad(), tr.autocast(): y = tr.model(x)
    logs = tr.train_epoch([dict(x=x, y=F.one_hot(torch.tensor([0, 1]), 50).float())])
    assert math.isfinite(logs['train_loss'])
    if not amp: assert y.dtype == torch.float32 and tr.scaler is None
    cuda_only('fp16 autocast')
    if amp: assert y.dtype == torch.float16 and tr.scaler is not None


# ---------------------------------------------------------------------------------------------------------------
# 3. released-layout files on CUDA (IEEE float32, TF32 off) against the CPU pins

def notebook_values(nb:str, *names) -> dict:
    "The values of `names` from the cells of library notebook `nb` that define them (pinned reference numbers kept there)."
    cells = [''.join(c['source']) for c in json.loads((REPO / 'nbs' / nb).read_text())['cells'] if c['cell_type'] == 'code']
    ns = {'torch': torch}
    for name in names:
        src = next((s for s in cells if re.search(rf'^(def {name}\(|{name} = )', s, re.M)), None)
        if src is None: raise LookupError(f'nbs/{nb}: no cell defines {name} any more (the pinned reference values moved)')
        exec(src, ns)
    return {n: ns[n] for n in names}


def test_released_psla_on_cuda(tmp_path):
    """PSLA B2 / 4 heads / 527 classes in the released layout, 200 / 1056 / 3000 frames. Tolerance: the CPU pins' own,
    1e-4 on probabilities and pooled features (measured on the CPU: <= 1e-6). An IEEE-float32 GPU run differs from the
    CPU only in the order of float32 summations (cuDNN's algorithms), the same kind of difference as another CPU's
    kernels: relative errors of order sqrt(K) float32 ulps for reductions of length K <= 1408 x 9, far below 1e-4."""
    from test_psla_conformance import seeded_tensor, PINS, LENGTHS
    from soundlab.models.psla import psla_from_checkpoint
    shapes = json.loads((PINS / 'psla_b2_h4_released_keys.json').read_text())
    f = tmp_path / 'as_mdl_seeded.pth'; torch.save({k: seeded_tensor(k, tuple(s)) for k, s in shapes.items()}, f)
    m, rep = psla_from_checkpoint(f); m = m.to(DEV).eval(); ref = np.load(PINS / 'psla_b2_h4_reference.npz')
    for L in LENGTHS:
        x = torch.randn(2, L, 128, generator=torch.Generator().manual_seed(L)).to(DEV)
        with torch.no_grad(), tf32(False): feats = m.forward_features(x); probs = m.forward_head(feats)
        dp = np.abs(probs.float().cpu().numpy() - ref[f'probs_{L}']).max(); df = np.abs(feats.mean(1).float().cpu().numpy() - ref[f'feat_{L}']).max()
        print(f'PSLA 128x{L} on {DEV}: probs max|d| {dp:.2e}, features max|d| {df:.2e}')
        assert dp <= 1e-4 and df <= 1e-4


def test_released_ast_on_cuda(tmp_path):
    """AST tiny224 fine-tuned at 128x512 (strides 10, 50 classes) in the seed's DataParallel layout, through the
    constructor and `soundlab-tag`'s loader, fp32 (TF32 off; the model's fp16 autocast off). Tolerance: the CPU pin's,
    1e-4 on the logits (measured on the CPU: 1.1e-6), as for PSLA above."""
    from test_ast_conformance import seeded_tensor, PINS, X
    from soundlab.models.ast import ASTModel
    from soundlab.infer import load_tagger
    shapes = json.loads((PINS / 'ast_tiny_ft512_keys.json').read_text())
    f = tmp_path / 'esc50_fold1_seeded.pth'; torch.save({k: seeded_tensor(k, tuple(s)) for k, s in shapes.items()}, f)
    ref = np.load(PINS / 'ast_tiny_ft512_reference.npz')['logits_512']
    for m in (ASTModel(50, 10, 10, 128, 512, imagenet_pretrain=False, audioset_pretrain=f, model_size='tiny224'), load_tagger(f, 10, 10, input_tdim=512)):
        m = m.to(DEV).eval(); m.cuda_fp16 = False
        with torch.no_grad(), tf32(False): y = m(X().to(DEV))
        d = np.abs(y.float().cpu().numpy() - ref).max()
        print(f'AST tiny ft 128x512 on {DEV} ({type(m).__name__}): max|d| {d:.2e}')
        assert y.dtype == torch.float32 and d <= 1e-4


@pytest.mark.parametrize('name', ['Cnn6', 'Cnn10', 'Cnn14'])
def test_released_panns_on_cuda(name, tmp_path):
    """PANNs in the released layout ({'model': state dict}, strict) on the 7-s AudioSet fixture clip, against the pins of
    nbs/20_models.panns.ipynb (`REFERENCE`, made by the reference implementation with the weights of `seeded_state`).
    Tolerances: the notebook's, 1e-4 on the first three clipwise outputs and 1e-3 on the clipwise / embedding sums and
    the embedding norm. The front end runs on the GPU (cuFFT): its log-mel differs from the CPU's most at the -100 dB
    floor (1.6e-2 dB between two CPU STFTs), where batch norm and pooling leave the outputs far inside these bounds."""
    from soundlab.core import fixtures_dir
    from soundlab.audio import load_audio
    from soundlab.models.panns import Cnn6, Cnn10, Cnn14, load_panns_checkpoint
    clip_path = fixtures_dir() / 'panns' / 'R9_ZSCveAHg_7s.mp3'
    if not clip_path.exists(): pytest.skip(f'no fixture clip at {clip_path} (set SOUNDLAB_FIXTURES to the shared fixtures folder)')
    nbv = notebook_values('20_models.panns.ipynb', 'seeded_state', 'REFERENCE')
    make = lambda: dict(Cnn6=Cnn6, Cnn10=Cnn10, Cnn14=Cnn14)[name](32000, 1024, 320, 64, 50, 14000, 527)
    m = make(); f = tmp_path / f'{name}_seeded.pth'
    torch.save({'model': m.state_dict() | nbv['seeded_state'](m)}, f)  # PANNs' release: {'model': the full state dict}
    m = make(); load_panns_checkpoint(m, f); m = m.to(DEV).eval()
    clip, sr = load_audio(clip_path); assert sr == 32000
    x = (clip[None] if name != 'Cnn14' else clip[None, :32000 * 2]).to(DEV)
    with torch.no_grad(), tf32(False): o = m(x)
    c, e = o['clipwise_output'][0].double().cpu(), o['embedding'][0].double().cpu()
    ref = nbv['REFERENCE'][name]
    d3, ds = (c[:3] - torch.tensor(ref[0])).abs().max().item(), (torch.tensor([c.sum(), e.sum(), e.norm()]) - torch.tensor(ref[1:])).abs().max().item()
    print(f'PANNs {name} on {DEV}: first outputs max|d| {d3:.2e}, sums/norm max|d| {ds:.2e}')
    assert d3 <= 1e-4 and ds <= 1e-3


# ---------------------------------------------------------------------------------------------------------------
# 4. the device-mode fbank on the GPU against the feature cache

def test_device_fbank_equals_cache(tmp_path, shared_data, monkeypatch):
    """The AST ESC-50 smoke corpus: fbanks of the cache (torchaudio's Kaldi fbank on the CPU, stored) against
    features='device' (`BatchKaldiFbank` on the GPU, cuFFT), un-normalised, augmentation off, padding included.

    Tolerance per value, from the computation: a mel energy p (a sum of |X_k|^2 over the band) carries a float32 FFT
    error of about 2 u log2(N) sqrt(p E) (N = 512 points, u = 2^-24, E = the frame's energy, here the sum of its mel
    energies), so log p moves by 2 u log2(N) sqrt(E / p); asserted <= 1e-4 + 8x that (quiet bands of a loud frame get
    more room), and the median difference must stay <= 1e-4."""
    from soundlab.data.tagging import TaggingDataset
    from soundlab.recipes.ast import ast_config, task_splits
    from torch.utils.data import DataLoader
    monkeypatch.setenv('SOUNDLAB_DATA', str(shared_data))
    cfg = ast_config('smoke', 'esc50')
    recs = [r for k in range(1, 6) for r in task_splits(cfg)[f'fold{k}']][:12]
    kw = dict(records=recs, n_classes=50, target_length=cfg.target_length, train=False, norm=None)
    cache = TaggingDataset(**kw, features='cache', cache=tmp_path / 'cache'); cache.prepare(progress=False)
    dev = TaggingDataset(**kw, features='device')
    b = next(iter(DataLoader(dev, batch_size=len(recs))))
    xd = dev.device_frontend()({k: v.to(DEV) if torch.is_tensor(v) else v for k, v in b.items()})['x'].double().cpu()
    xc = torch.stack([cache[i]['x'] for i in range(len(recs))]).double()
    assert xd.shape == xc.shape
    p = xc.exp(); E = p.sum(-1, keepdim=True)
    bound = 1e-4 + 8 * 2 * 2. ** -24 * math.log2(512) * (E / p).sqrt()
    d = (xd - xc).abs(); worst = (d / bound).max().item()
    print(f'device fbank on {DEV} vs cache: max|d| {d.max():.2e}, median {d.median():.2e}, worst d / bound {worst:.2f}')
    assert (d <= bound).all() and d.median() <= 1e-4


# ---------------------------------------------------------------------------------------------------------------
# 5. one-process NCCL torchrun (DDP over one GPU) against the plain run

def train_tiny(cfg:dict) -> dict:
    "A small classifier trained through the Trainer on `cfg['device']` (the same under torchrun with SOUNDLAB_DDP=1)."
    from soundlab.train import Trainer
    from torch.utils.data import TensorDataset
    import torch.distributed as td
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1); y = torch.randint(0, 3, (96,), generator=g); x = torch.randn(96, 8, generator=g) + F.one_hot(y, 8)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    tr = Trainer(model, lambda m, b: {'loss': F.cross_entropy(m(b[0]), b[1])}, opt, device=cfg['device'], amp=False, seed=7,
                 progress=False)
    hist = tr.fit(tr.loader(TensorDataset(x, y), 16), 3)
    return dict(history=hist.train_loss.tolist(), state={k: v.detach().cpu().clone() for k, v in tr.module.state_dict().items()},
                ddp=tr.ddp is not None, backend=td.get_backend() if td.is_initialized() else None)


def test_one_process_nccl_equals_plain_run():
    """torchrun, one process, SOUNDLAB_DDP=1: the Trainer joins a process group of one (NCCL on a GPU) and wraps the
    model in DistributedDataParallel, whose gradient all-reduce over one rank is the identity. Tolerance: the same
    kernels in the same order give the same numbers; 1e-6 relative allows for a reduction order that changes."""
    from soundlab.dist import launch
    cfg = dict(device=DEV)
    plain = train_tiny(cfg)
    env = {'PYTHONPATH': os.pathsep.join([str(Path(__file__).parent), str(REPO), os.environ.get('PYTHONPATH', '')]),
           'SOUNDLAB_DDP': '1', 'OMP_NUM_THREADS': '1'}
    t0 = time.time(); run = launch('test_cuda:train_tiny', cfg, nproc=1, env=env, timeout=300, quiet=True)
    dl = max(abs(a - b) / abs(b) for a, b in zip(run['history'], plain['history']))
    dw = max(((run['state'][k] - plain['state'][k]).abs().max() / plain['state'][k].abs().max().clamp_min(1e-30)).item() for k in plain['state'])
    print(f'torchrun 1 process ({run["backend"]}, {time.time() - t0:.1f} s): max rel |loss diff| {dl:.1e}, |weight diff| {dw:.1e}')
    assert run['ddp'] and not plain['ddp'] and len(run['history']) == 3
    assert dl <= 1e-6 and dw <= 1e-6
    assert plain['history'][-1] < plain['history'][0]  # it learned
    assert run['backend'] == ('gloo' if REHEARSAL else 'nccl')


# ---------------------------------------------------------------------------------------------------------------
# 6. the training DataLoader: pinned batches, asynchronous copies

def test_loader_pins_batches_and_copies_without_blocking():
    """On CUDA `Trainer.loader` pins its batches (tensors, tuples and dicts; with and without workers) and `to_device`
    copies them with non_blocking=True: the profiler must see only pinned-to-device copies, the values arrive intact."""
    from soundlab.train import Trainer, to_device
    from torch.utils.data import TensorDataset, Dataset
    class Dicts(Dataset):
        def __len__(self): return 32
        def __getitem__(self, i): return dict(x=torch.full((4, 5), float(i)), y=i, id=f'c{i}')
    model = nn.Linear(5, 2)
    tr = Trainer(model, lambda m, b: {'loss': m(b['x']).mean()}, torch.optim.SGD(model.parameters(), lr=0.1), device=DEV, progress=False)
    tensors = TensorDataset(torch.randn(32, 3), torch.arange(32))
    for ds in (tensors, Dicts()):
        for nw in (0, 2):
            dl = tr.loader(ds, 8, num_workers=nw); b = next(iter(dl))
            flat = list(b.values()) if isinstance(b, dict) else list(b)
            on = to_device(b, tr.device); on_flat = list(on.values()) if isinstance(on, dict) else list(on)
            for t, u in zip(flat, on_flat):
                if torch.is_tensor(t): assert u.device.type == tr.device.type and torch.equal(u.cpu(), t)
            assert dl.pin_memory == (DEV == 'cuda')
            if DEV == 'cuda': assert all(t.is_pinned() for t in flat if torch.is_tensor(t)), (type(ds).__name__, nw)
    assert math.isfinite(tr.fit(tr.loader(Dicts(), 8, num_workers=2), 1).train_loss.iloc[0])  # an epoch through it
    cuda_only('pinned memory and the CUDA profiler')
    b = next(iter(tr.loader(Dicts(), 8)))
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        to_device(b, tr.device); torch.cuda.synchronize()
    copies = [e.name for e in prof.events() if 'Memcpy HtoD' in e.name]
    if not copies: pytest.skip('the profiler recorded no CUDA copies (no CUPTI here): the kind of copy is not checked')
    print('host-to-device copies:', sorted(set(copies)))
    assert all('Pinned' in n for n in copies), copies  # pageable memory would show 'Pageable -> Device' (a blocking copy)

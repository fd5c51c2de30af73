"""Training-step throughput of the respiratory recipe (seed 000) on this machine.

For CNN6 / CNN10 / CNN14 on 8-s cycles at batch 32 it times one optimisation step (forward + backward + Adam) in
these set-ups, all in one run so that the ratios compare like with like:

- `seed000-style`: what seed 000's loop does each step: log-mel computed from the waveform batch, SpecAugment,
  fp32, default memory layout (its `train_transform` runs the front end inside the training loop);
- `soundlab fp32`: log-mels read from the warm feature cache (in memory), SpecAugment, fp32;
- `soundlab fp32 fast`: cached log-mels, fp32, channels_last (oneDNN's blocked convolutions), fused Adam: the fp32
  path of the trainer (`Trainer(channels_last=True)`, the recipe's default);
- `... compiled` (with `--compile`): the same under `torch.compile`; its compile time is a column of its own and the
  steps it takes to pay for itself (`break_even_steps`);
- `soundlab default`: the trainer's defaults (channels_last, bf16 autocast), only where the CPU runs bf16 natively.

Every row also gives the step's multiply-accumulates (MACs: counted from the layer shapes by forward hooks on the
convolutions and linear layers, x3 for forward + the two backward products, less the input gradient of the first
layer) and the fraction of the machine's FMA peak it reaches: peak MAC/s = cores x clock x SIMD lanes x 2 FMA units
(lanes: 8 fp32 for AVX2, 16 for AVX-512; bf16 with AVX512-BF16 does 2 MACs per fp32 lane). The clock is the
`cpuinfo_max_freq` of cpufreq where the kernel exposes it, else `cpu MHz` of /proc/cpuinfo, or, where larger, the
clock implied by a compute-bound oneDNN convolution on one core if it ran at 100 % of peak (a VM reports its nominal
clock; the cores boost well above it; the implied clock is a lower bound, so the fraction is an upper bound);
`--clock-ghz` overrides it. The CSV names the CPU model, its flags,
the ISA in use, the thread count and each row's precision (`soundlab.core.machine_info`). On a shared machine the
wall-clock fraction drops with the load; `fraction_of_peak_cpu_time` divides by the process's CPU time instead (a
lower bound on the per-core efficiency, since OpenMP threads spin while they wait).

It also reports the share of step time spent outside the model (fetching the batch + SpecAugment) with a warm cache.
With `--accuracy` it trains the demo-sized CE recipe with and without mixed precision over a few seeds and prints
the ICBHI Scores side by side.

The second half of this file defines every recipe's training step at its seed's own batch size and input length, on
any device, soundlab's against a seed-style step, with their FLOPs, the GPUs' peaks, the timing and the data-loading
share with the recipes' real loaders: `tools/gpu_check.py` imports it, `--seed-steps` runs it from here (a GPU table:
benchmarks/results/bench_train_seed_steps.csv).

    .venv/bin/python benchmarks/bench_train.py [--backbones cnn6 cnn10 cnn14] [--steps 6] [--compile] [--accuracy [--skip-steps]]
    .venv/bin/python benchmarks/bench_train.py --seed-steps --device cuda [--recipes ast psla] [--precisions bf16 fp16]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/bench_train.py   # as on an AVX2-only CPU
"""
import argparse, contextlib, os, time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
import numpy as np, pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from soundlab.core import autocast_dtype, seed_everything, machine_info, cpu_has_bf16, _cpu_flags
from soundlab.features import RespiratoryMel
from soundlab.augment import SpecAugment
from soundlab.models.panns import create_backbone, RespiratoryNet


def step_macs(model, x) -> int:
    "Multiply-accumulates of one training step on batch `x`, from the layer shapes (forward hooks)."
    per_layer = []
    def hook(m, inp, out):
        k = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1] if isinstance(m, nn.Conv2d) else m.in_features
        per_layer.append(out.numel() * k)
    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad(): model.classify(model.embed(x))
    for h in hooks: h.remove()
    return 3 * sum(per_layer) - per_layer[0]   # forward, grad of inputs, grad of weights; no input grad for layer 1


def cpu_clock_ghz() -> tuple[float, str]:
    "(GHz, where it was read)."
    f = Path('/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq')
    if f.exists(): return int(f.read_text()) / 1e6, 'cpufreq cpuinfo_max_freq'
    mhz = [float(l.split(':')[1]) for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('cpu MHz')]
    return (max(mhz) / 1e3, '/proc/cpuinfo cpu MHz (nominal)') if mhz else (float('nan'), 'unknown')


def fp32_lanes() -> int:
    "fp32 lanes of the widest FMA the kernels may use: 16 (AVX-512) or 8 (AVX2)."
    lim = os.environ.get('ONEDNN_MAX_CPU_ISA', '').upper()
    avx512 = ('AVX512' in torch.backends.cpu.get_cpu_capability() and 'avx512f' in _cpu_flags()
              and not lim.startswith(('AVX2', 'AVX', 'SSE')))
    return 16 if avx512 else 8


def implied_clock_ghz() -> float:
    "The clock at which a compute-bound fp32 conv (256->256, 3x3, 32x32, batch 32, 1 thread) would run at 100 % of peak."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(32, 256, 32, 32).contiguous(memory_format=torch.channels_last)
    best = 0.
    with torch.no_grad():
        conv(x)
        for _ in range(4):
            c0 = time.process_time(); conv(x); best = max(best, 32 * 32 * 32 * 256 * 256 * 9 / (time.process_time() - c0))
    torch.set_num_threads(n)
    return best / (fp32_lanes() * 2) / 1e9


def fma_peak(precision:str, clock_ghz:float) -> float:
    "Peak MAC/s of the cores torch uses: cores x clock x SIMD lanes x 2 FMA units (bf16: x2 with AVX512-BF16)."
    cores = min(torch.get_num_threads(), os.cpu_count())
    lanes = fp32_lanes() * (2 if precision == 'bfloat16' and cpu_has_bf16() else 1)  # vdpbf16ps: 2 products per lane
    return cores * clock_ghz * 1e9 * lanes * 2


def step_timer(model, opt, batches, frontend, aug, amp_dtype, channels_last, cached, gen, fwd=None):
    "Mean seconds per step (model part and data part) over `batches` (list of (wave, spec, y))."
    t_data = t_model = cpu = 0.
    fwd = fwd or (lambda x: model.classify(model.embed(x)))
    for wave, spec, y in batches:
        t0, c0 = time.perf_counter(), time.process_time()
        x = spec if cached else frontend(wave)
        x = aug(x, generator=gen)
        if channels_last: x = x.contiguous(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        with torch.autocast('cpu', dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = F.cross_entropy(fwd(x).float(), y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        t2 = time.perf_counter()
        t_data += t1 - t0; t_model += t2 - t1; cpu += time.process_time() - c0
    n = len(batches)
    return t_data / n, t_model / n, cpu / n


def bench_steps(args):
    seed_everything(0)
    fe = RespiratoryMel()
    n = int(args.duration * 16000)
    waves = torch.randn(args.batch * (args.steps + args.warmup), n) * 0.1
    with torch.no_grad(): specs = torch.cat([fe(w) for w in waves.split(args.batch)])
    ys = torch.randint(0, 4, (len(waves),))
    # the warm cache: features already in memory, served by a DataLoader as in the recipe
    dl = DataLoader(TensorDataset(waves, specs, ys), batch_size=args.batch, shuffle=True, generator=torch.Generator().manual_seed(0))
    rows = []
    bf16 = autocast_dtype('cpu')
    clock, clock_src = (args.clock_ghz, '--clock-ghz') if args.clock_ghz else cpu_clock_ghz()
    if not args.clock_ghz:  # a VM's nominal clock can be far below the boost clock: take the larger, say which
        implied = implied_clock_ghz()
        if implied > clock: clock, clock_src = implied, f'implied by a compute-bound conv (nominal {clock:.2f} GHz, {clock_src})'
        print(f'clock {clock:.2f} GHz: {clock_src}')
    # name, cached features, autocast dtype, channels_last, fused Adam, torch.compile
    setups = [('seed000-style', False, None, False, False, False), ('soundlab fp32', True, None, False, False, False),
              ('soundlab fp32 fast', True, None, True, True, False)]
    if args.compile: setups.append(('soundlab fp32 fast compiled', True, None, True, True, True))
    if bf16 is not None: setups.append(('soundlab default', True, bf16, True, True, False))
    for bb in args.backbones:
        for name, cached, amp, cl, fused, comp in setups:
            seed_everything(0)
            model = RespiratoryNet(create_backbone(bb))
            if cl: model = model.to(memory_format=torch.channels_last)
            model.train()
            macs = step_macs(model, specs[:args.batch])
            opt = torch.optim.Adam(model.parameters(), lr=1e-4, **({'fused': True} if fused else {}))
            aug = SpecAugment(20, 40, 2, 2).train()
            gen = torch.Generator().manual_seed(0)
            fwd = torch.compile(lambda x: model.classify(model.embed(x))) if comp else None
            t_fetch = time.perf_counter(); batches = list(dl); t_fetch = (time.perf_counter() - t_fetch) / len(batches)
            t_c = time.perf_counter()
            step_timer(model, opt, batches[:args.warmup], fe, aug, amp, cl, cached, gen, fwd)
            t_warm = (time.perf_counter() - t_c) / args.warmup
            t_data, t_model, cpu = step_timer(model, opt, batches[args.warmup:], fe, aug, amp, cl, cached, gen, fwd)
            t_data += t_fetch
            step = t_data + t_model
            prec = str(amp).replace('torch.', '') if amp else 'fp32'
            peak = fma_peak(prec, clock)
            rows.append(dict(backbone=bb, setup=name, precision=prec, channels_last=cl, fused_adam=fused, compiled=comp,
                             clips_per_s=args.batch / step, step_s=step, outside_model_share=t_data / step,
                             gmacs_per_step=macs / 1e9, gmacs_per_s=macs / 1e9 / step,
                             fraction_of_peak=macs / step / peak, peak_gmacs_per_s=peak / 1e9, cpu_s_per_step=cpu,
                             fraction_of_peak_cpu_time=macs / cpu / (peak / min(torch.get_num_threads(), os.cpu_count())),
                             compile_s=(t_warm - step) * args.warmup if comp else 0.))
            print(f'{bb:6s} {name:27s} {args.batch / step:7.2f} clips/s  outside model {100 * t_data / step:5.1f} %  '
                  f"{macs / 1e9 / step:6.1f} GMAC/s = {100 * macs / step / peak:5.1f} % of peak "
                  f"({100 * macs / cpu / peak * min(torch.get_num_threads(), os.cpu_count()):4.1f} % per CPU second)", flush=True)
    print(f'peak = {min(torch.get_num_threads(), os.cpu_count())} cores x {clock:.2f} GHz ({clock_src}) x lanes x 2 FMA units')
    df = pd.DataFrame(rows)
    base = df[df.setup == 'seed000-style'].set_index('backbone').clips_per_s
    df['x_seed000_style'] = df.apply(lambda r: r.clips_per_s / base[r.backbone], axis=1)
    # steps after which the compiled setup has paid back its compile time
    fast = df[df.setup == 'soundlab fp32 fast'].set_index('backbone').step_s
    df['break_even_steps'] = df.apply(lambda r: (r.compile_s / (fast[r.backbone] - r.step_s) if fast[r.backbone] > r.step_s
                                                 else float('inf')) if r.compiled else 0., axis=1)  # inf: never
    return df.assign(clock_ghz=clock, clock_source=clock_src)


def bench_accuracy(args):
    "ICBHI Score of the demo CE recipe trained with and without mixed precision, over seeds."
    import os, tempfile
    os.environ.setdefault('SOUNDLAB_DATA', tempfile.mkdtemp())
    from soundlab.recipes.respiratory import respiratory_config, load_cycles, run_once
    rows = []
    for amp in (False, True):
        cfg = respiratory_config('demo', method='sl', amp=amp, epochs=args.acc_epochs, out_dir=tempfile.mkdtemp())
        data = load_cycles(cfg, progress=False)
        for s in range(args.acc_seeds):
            r = run_once(cfg, data, seed=s, progress=False)
            rows.append(dict(precision='bf16' if amp and autocast_dtype('cpu') else 'fp32', seed=s, score=r['score'], sp=r['sp'], se=r['se']))
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


# =====================================================================================================================
# Every recipe's training step at its seed's own batch size and input length, on any device (a GPU above all).
# `tools/gpu_check.py` imports these definitions; `--seed-steps` runs them from here.
#
# For each recipe two set-ups, at each precision the device runs natively, timed in one process:
# - `soundlab`: the recipe's own model, optimiser and step function inside `soundlab.train.Trainer` (its loop: to_device,
#   autocast, GradScaler for fp16, the per-step finiteness check and logged scalars), fed what its feature cache gives;
# - `seed-style`: what the seed's own loop does on the same network: its loss under autocast (GradScaler for fp16),
#   `loss.item()` logged every step, and a per-parameter optimiser (`foreach=False`, the seeds' PyTorch <= 1.12 stepped
#   parameter by parameter); per recipe also: seed 000 computes the log-mel from the waveform batch in the loop,
#   seed 003 runs timm's explicit (non-fused) attention, seed 002 its per-query CPL loop, seed 001 takes both views
#   ready-made from its DataLoader workers and runs the encoder once per view.
# Precisions: `fp32` = IEEE float32 everywhere (TF32 off), `tf32` = TF32 matmuls and convolutions, `bf16` / `fp16` =
# autocast (TF32 off for what stays float32). FLOPs per step are the network's forward + backward matrix products,
# convolutions and attention (torch.utils.flop_counter) counted on the meta device at the seed's size; front ends,
# augmentation, losses and the optimiser are not counted, so both set-ups of a recipe share the number.


STEP_RECIPES = ('respiratory', 'ast', 'psla', 'fewshot', 'sed')
STEP_PRECISIONS = ('fp32', 'tf32', 'bf16', 'fp16')
SEED_PRECISION = dict(respiratory='fp32', ast='fp16', psla='fp32', fewshot='fp32', sed='fp32')  # each seed's own
_TRAINER_PRECISION = dict(fp32='fp32', tf32='fp32', bf16='bf16', fp16='fp16')
_AMP = dict(fp32=None, tf32=None, bf16=torch.bfloat16, fp16=torch.float16)


@contextlib.contextmanager
def tf32(enabled:bool):
    "TF32 on (True) or off (IEEE float32) for cuBLAS matmuls and cuDNN convolutions and RNNs; the old settings come back after."
    if hasattr(torch.backends.cuda.matmul, 'fp32_precision'):  # torch >= 2.9: its own API (mixing it with allow_tf32 raises)
        mods = [m for m in (torch.backends.cuda.matmul, torch.backends.cudnn.conv, getattr(torch.backends.cudnn, 'rnn', None)) if m is not None]
        old = [m.fp32_precision for m in mods]
        for m in mods: m.fp32_precision = 'tf32' if enabled else 'ieee'
        try: yield
        finally:
            for m, o in zip(mods, old): m.fp32_precision = o
    else:
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
        try: yield
        finally: torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def precision_applies(precision:str, device) -> bool:
    "Whether `device` runs `precision` natively: TF32 and bf16 need an Ampere or newer GPU; a CPU runs fp32 (bf16 where native)."
    d = torch.device(device)
    if d.type == 'cuda': return precision in ('fp32', 'fp16') or torch.cuda.get_device_capability(d)[0] >= 8
    return precision == 'fp32' or (precision == 'bf16' and cpu_has_bf16())


def sync(device):
    if torch.device(device).type == 'cuda': torch.cuda.synchronize(device)


@dataclass
class StepCase:
    "One recipe's training step built on a device: `run(batches)` makes one optimisation step per batch, as its loop does."
    recipe:str
    setup:str # 'soundlab' or 'seed-style'
    precision:str
    items:int # examples per step (clips; for few-shot the clips of one episode)
    model:nn.Module
    run:Callable # run(list of batches) -> None
    batch:Callable # batch(seed) -> one batch on the device, ready for `run`


def seed_loop(model, opt, loss_fn, device, precision:str) -> Callable:
    "The seeds' loop: loss under autocast (fp16 with a GradScaler), zero_grad, backward, step, `loss.item()` logged."
    amp = _AMP[precision]; device = torch.device(device)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    def run(batches):
        model.train()
        for b in batches:
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None): loss = loss_fn(b)
            opt.zero_grad()
            if scaler: scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
            else: loss.backward(); opt.step()
            loss.item()
    return run


def _trainer(model, step, opt, device, precision, channels_last=False):
    from soundlab.train import Trainer
    return Trainer(model, step, opt, device=str(device), precision=_TRAINER_PRECISION[precision], channels_last=channels_last,
                   progress=False)


def _gen(seed): return torch.Generator().manual_seed(seed)

# ---- the five recipes: config at the seed's size (`small`: a tiny one for the CPU dry run), model, batch, step ------
# timing needs neither a real corpus nor a released weights file: the paper presets on the synthetic corpora, from random
# weights (the same networks and step; paper presets otherwise stop without data_root or without their weights file)
SYNTH = dict(allow_synthetic=True)

def respiratory_setup(small=False):
    "Seed 000: CNN6 on 8-s cycles (16 kHz), batch 128, cross-entropy (the `paper` preset with method='sl')."
    from soundlab.recipes.respiratory import respiratory_config
    return respiratory_config('paper', method='sl', scratch=True, lr=1e-4, **SYNTH, **(dict(bs=2, duration=1.) if small else {}))

def _respiratory(setup, device, precision, small):
    from soundlab.recipes.respiratory import build_model, make_step
    from soundlab.losses import class_weights
    cfg = respiratory_setup(small); B, n = cfg.bs, int(cfg.duration * cfg.samplerate)
    fe = RespiratoryMel(sample_rate=cfg.samplerate, f_max=cfg.f_max).to(device)  # the front end of the feature cache
    weights = class_weights(torch.tensor([0] * 4 + [1] * 2 + [2] + [3]), 4)
    def wave_batch(s):
        g = _gen(s); return ((torch.randn(B, n, generator=g) * 0.1).to(device), torch.randint(0, 4, (B,), generator=g).to(device),
                             torch.randint(0, 5, (B,), generator=g).to(device))
    if setup == 'soundlab':
        model = build_model(cfg, n_meta=5)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.wd)
        tr = _trainer(model, None, opt, device, precision, cfg.channels_last); tr.step = make_step(cfg, weights, tr.generator)
        def batch(s):
            w, y, m = wave_batch(s)
            with torch.no_grad(): return fe(w), y, m  # what the cache holds
        return StepCase('respiratory', setup, precision, B, tr.model, tr.train_epoch, batch)
    model = RespiratoryNet(create_backbone(cfg.backbone)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.wd, foreach=False)
    aug, g = SpecAugment(cfg.freqmask, cfg.timemask, cfg.freqstripes, cfg.timestripes, mask_value=-fe.mean / fe.std), _gen(1)
    def loss(b):  # the seed's step: front end and SpecAugment on the waveform batch, then the network
        w, y, _ = b
        with torch.no_grad(): x = aug(fe(w), generator=g)
        return F.cross_entropy(model.classify(model.embed(x)).float(), y, weight=weights.to(device))
    return StepCase('respiratory', setup, precision, B, model, seed_loop(model, opt, loss, device, precision), wave_batch)


def ast_setup(small=False):
    "Seed 003 on ESC-50: AST base384 (strides 10), 512 frames x 128 bins, 50 classes, batch 48 (the `paper` preset)."
    from soundlab.recipes.ast import ast_config
    kw = dict(model_size='tiny224', fstride=16, tstride=16, target_length=32, num_mel_bins=32, bs=2) if small else {}
    return ast_config('paper', 'esc50', imagenet_pretrain=False, audioset_pretrain=False, **SYNTH, **kw)

def _ast(setup, device, precision, small):
    from soundlab.recipes.ast import build_model, make_optimizer, make_step
    from soundlab.models.ast import ASTModel
    cfg, C = ast_setup(small), 50
    def batch(s):
        g = _gen(s)
        return dict(x=torch.randn(cfg.bs, cfg.target_length, cfg.num_mel_bins, generator=g).to(device),
                    y=F.one_hot(torch.randint(0, C, (cfg.bs,), generator=g), C).float().to(device))
    if setup == 'soundlab':
        model = build_model(cfg, C); opt, _ = make_optimizer(cfg, model)
        tr = _trainer(model, make_step(cfg, opt), opt, device, precision)
        return StepCase('ast', setup, precision, cfg.bs, tr.model, tr.train_epoch, batch)
    model = ASTModel(C, cfg.fstride, cfg.tstride, cfg.num_mel_bins, cfg.target_length, False, False, cfg.model_size,
                     fused_attn=False, cuda_fp16=False).to(device)  # timm 0.4.5's explicit attention; precision from the loop
    opt = torch.optim.Adam(model.parameters(), cfg.lr, betas=cfg.betas, weight_decay=cfg.wd, foreach=False)
    loss = lambda b: F.cross_entropy(model(b['x']).float(), b['y'].argmax(1))  # the seed's CrossEntropyLoss on argmax labels
    return StepCase('ast', setup, precision, cfg.bs, model, seed_loop(model, opt, loss, device, precision), batch)


def psla_setup(small=False):
    "Seed 004 on FSD50K: EfficientNet-B2 + 4 attention heads (reference mode), 3000 frames x 128 bins, 200 classes, batch 24."
    from soundlab.recipes.psla import psla_config
    return psla_config('paper', pretrain='', **SYNTH, **(dict(b=0, head_num=2, target_length=32, bs=2) if small else {}))

def _psla(setup, device, precision, small):
    from soundlab.recipes.psla import psla_step, bce
    from soundlab.models.psla import EffNetAttention
    cfg, C = psla_setup(small), 200
    def batch(s):
        g = _gen(s)
        return dict(x=torch.randn(cfg.bs, cfg.target_length, 128, generator=g).to(device),
                    y=(torch.rand(cfg.bs, C, generator=g) < 0.02).float().to(device))
    model = EffNetAttention(C, cfg.b, None, cfg.head_num, mode=cfg.model_mode)
    if setup == 'soundlab':
        opt = torch.optim.Adam(model.parameters(), cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas))
        tr = _trainer(model, psla_step(cfg, opt), opt, device, precision)
        return StepCase('psla', setup, precision, cfg.bs, tr.model, tr.train_epoch, batch)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas), foreach=False)
    loss = lambda b: bce(model(b['x']), b['y'])  # the seed's BCELoss on clamped probabilities
    return StepCase('psla', setup, precision, cfg.bs, model, seed_loop(model, opt, loss, device, precision), batch)


def fewshot_setup(small=False):
    "Seed 002: Hybrid (CNN + RNN) encoder, 4 SpecAugment views + attention, projection, CPL; one 5-way 5-shot 5-query episode of 128 x 157 spectrograms."
    from soundlab.recipes.fewshot import fewshot_config
    kw = dict(scenario='protonet+aug+contrastive', contrastive='cpl')  # the full method: views, attention, projection, CPL
    return fewshot_config('paper', **kw, **SYNTH, **(dict(n_way=2, n_shot=1, n_query=1, encoder_pool='adaptive') if small else {}))

def _fewshot_parts(small):
    from soundlab.recipes.fewshot import experiment
    from soundlab.models.fewshot import load_fewshot_config, create_fewshot_model
    cfg = fewshot_setup(small); exp = experiment(cfg)
    W, S, Q = (exp[f'{k}_train'] for k in ('n_way', 'n_shot', 'n_query'))
    shape = (32, 24) if small else (128, 157)  # MetaAudio's 5-s segments: 128 mel bins x 157 frames
    model = create_fewshot_model(exp, load_fewshot_config()[1], pool=cfg.encoder_pool, input_shape=shape)
    def batch_on(device):
        def batch(s):  # what collate_episode gives for one task
            g = _gen(s); b = dict(support=torch.randn(W * S, *shape, generator=g), query=torch.randn(W * Q, *shape, generator=g),
                                  support_y=torch.arange(W).repeat_interleave(S), query_y=torch.arange(W).repeat_interleave(Q),
                                  support_group=torch.arange(W * S), query_group=torch.arange(W * Q), classes=torch.arange(W))
            return {k: v.to(device) for k, v in b.items()}
        return batch
    return exp, model, W * (S + Q), batch_on

def _fewshot(setup, device, precision, small):
    from soundlab.recipes.fewshot import episode_step, run_episode
    from soundlab.losses import cpl_loss_loop
    exp, model, items, batch_on = _fewshot_parts(small)
    if setup == 'soundlab':
        opt = torch.optim.Adam(model.parameters(), lr=exp['lr'])
        tr = _trainer(model, None, opt, device, precision); tr.step = episode_step(exp, tr.generator)
        return StepCase('fewshot', setup, precision, items, tr.model, tr.train_epoch, batch_on(device))
    model = model.to(device); opt = torch.optim.Adam(model.parameters(), lr=exp['lr'], foreach=False)
    L, g = exp['loss']['cpl'], _gen(1)
    cpl = lambda p, q, y: cpl_loss_loop(p, q, y, L['t_param'], int(L['m_param']))  # the seed's loop over queries
    loss = lambda b: run_episode(model, b, exp, 'train', g, cpl)['loss']
    return StepCase('fewshot', setup, precision, items, model, seed_loop(model, opt, loss, device, precision), batch_on(device))


def sed_setup(small=False):
    "Seed 001: SimCLR pre-training of its ResNet-18 on FSDnoisy18k, batch 128, two 101 x 96 TF-patch views (the `paper` preset)."
    from soundlab.recipes.sed import sed_config
    return sed_config('paper', **SYNTH, **(dict(arch='vgglike', bs=3, proj_hidden=16, proj_dim=16) if small else {}))

def _sed_net(cfg):
    from soundlab.recipes.sed import SimCLRNet
    from soundlab.models.sed import create_sed_model
    from soundlab.models.panns import ProjectionHead
    enc = create_sed_model(cfg.arch, 20)
    return SimCLRNet(enc, ProjectionHead(enc.embed_dim, cfg.proj_dim, cfg.proj_hidden, bn=True))

def _sed(setup, device, precision, small):
    from soundlab.recipes.sed import make_views, pretrain_step
    from soundlab.losses import SupConLoss
    cfg = sed_setup(small); B, P, M = cfg.bs, cfg.patch_len, 96
    pool = [torch.randn(int(n), M, generator=_gen(1000 + i)) for i, n in enumerate(torch.randint(P, 4 * P, (256,), generator=_gen(2)))]
    views, net = make_views(cfg, (0., 1.)), _sed_net(cfg)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.wd, foreach=None if setup == 'soundlab' else False)
    if setup == 'soundlab':
        tr = _trainer(net, None, opt, device, precision, cfg.channels_last)
        tr.step = pretrain_step(cfg, views, tr.generator, backgrounds=pool)  # views made on the device, mix-back from the pool
        def batch(s):
            idx = torch.randint(0, len(pool), (B,), generator=_gen(s))
            return dict(x=[pool[i].to(device) for i in idx], y=torch.zeros(B, dtype=torch.long, device=device), id=[str(int(i)) for i in idx],
                        index=idx.to(device))
        return StepCase('sed', setup, precision, B, tr.model, tr.train_epoch, batch)
    net = net.to(device); ntxent = SupConLoss(cfg.tau); g = _gen(3)
    def batch(s):  # both views ready-made, as the seed's DataLoader workers deliver them
        idx = torch.randint(0, len(pool), (B,), generator=_gen(s))
        v1, v2 = views([pool[i] for i in idx], g)
        return v1.to(device), v2.to(device)
    loss = lambda b: ntxent(torch.stack([net(b[0][:, None]).float(), net(b[1][:, None]).float()], 1))  # one encoder pass per view
    return StepCase('sed', setup, precision, B, net, seed_loop(net, opt, loss, device, precision), batch)


_BUILDERS = dict(respiratory=_respiratory, ast=_ast, psla=_psla, fewshot=_fewshot, sed=_sed)
SETUPS = dict(respiratory=respiratory_setup, ast=ast_setup, psla=psla_setup, fewshot=fewshot_setup, sed=sed_setup)


def step_case(recipe:str, setup:str, device, precision:str='fp32', small:bool=False) -> StepCase:
    "The `setup` ('soundlab' or 'seed-style') training step of `recipe` at its seed's size (`small`: tiny), on `device`."
    if recipe not in _BUILDERS: raise ValueError(f'unknown recipe {recipe!r}; choose from {STEP_RECIPES}')
    if setup not in ('soundlab', 'seed-style'): raise ValueError(f"setup must be 'soundlab' or 'seed-style', got {setup!r}")
    if precision not in STEP_PRECISIONS: raise ValueError(f'precision must be one of {STEP_PRECISIONS}, got {precision!r}')
    seed_everything(0)
    return _BUILDERS[recipe](setup, torch.device(device), precision, small)


def describe(recipe:str, small:bool=False) -> str:
    "One line: what the seed-size step of `recipe` is."
    return SETUPS[recipe].__doc__ if not small else f'{recipe}, tiny sizes (dry run)'


# ---- FLOPs: the network at the seed's size on the meta device ---------------------------------------------------

def _model_loss(recipe:str, small:bool, device):
    "(model, batch, loss_fn) of `recipe`'s network at the seed's size, built on `device` (meta: no memory, no arithmetic)."
    with torch.device(device):
        if recipe == 'respiratory':
            cfg = respiratory_setup(small)
            with torch.device('cpu'): frames = RespiratoryMel(sample_rate=cfg.samplerate)(torch.zeros(1, int(cfg.duration * cfg.samplerate))).shape[-1]
            m = RespiratoryNet(create_backbone(cfg.backbone)); b = (torch.randn(cfg.bs, 1, 64, frames), torch.randint(0, 4, (cfg.bs,)))
            return m, b, lambda b: F.cross_entropy(m.classify(m.embed(b[0])), b[1])
        if recipe == 'ast':
            from soundlab.models.ast import ASTModel
            cfg = ast_setup(small)
            m = ASTModel(50, cfg.fstride, cfg.tstride, cfg.num_mel_bins, cfg.target_length, False, False, cfg.model_size, cuda_fp16=False)
            b = (torch.randn(cfg.bs, cfg.target_length, cfg.num_mel_bins), torch.randint(0, 50, (cfg.bs,)))
            return m, b, lambda b: F.cross_entropy(m(b[0]), b[1])
        if recipe == 'psla':
            from soundlab.models.psla import EffNetAttention
            cfg = psla_setup(small); m = EffNetAttention(200, cfg.b, None, cfg.head_num, mode=cfg.model_mode)
            b = (torch.randn(cfg.bs, cfg.target_length, 128), torch.zeros(cfg.bs, 200))
            return m, b, lambda b: F.binary_cross_entropy(m(b[0]).clamp(1e-7, 1 - 1e-7), b[1])  # the recipe's `bce` (its autocast guard fails on meta)
        if recipe == 'sed':  # NT-Xent's (2B)^2 x D similarities stand in as one product: < 0.1 % of the step
            cfg = sed_setup(small); m = _sed_net(cfg)
            b = (torch.randn(cfg.bs, 1, cfg.patch_len, 96), torch.randn(cfg.bs, 1, cfg.patch_len, 96))
            return m, b, lambda b: (lambda z: (z @ z.T).logsumexp(1).mean())(torch.cat([m(b[0]), m(b[1])]))
        # few-shot: the episode's encoder work (every view of every clip), attention and projection; `run_episode` reads
        # the task's shape from label values, which the meta device cannot (prototypes, distances and CPL: < 0.1 %)
        exp, m, _, batch_on = _fewshot_parts(small); b = batch_on(device)(0)
        return m, b, lambda b: m.projection(m.fuse(m.embed(b['query']))).sum() + m.fuse(m.embed(b['support'])).sum()


def step_flops(recipe:str, small:bool=False) -> int:
    "FLOPs of one forward + backward of `recipe`'s network at its seed's size (matmuls, convolutions, attention)."
    from torch.utils.flop_counter import FlopCounterMode
    seed_everything(0)
    model, b, loss = _model_loss(recipe, small, 'meta')
    model.train()
    with FlopCounterMode(display=False) as fc: loss(b).backward()
    return int(fc.get_total_flops())


# ---- timing ------------------------------------------------------------------------------------------------------

def time_case(case:StepCase, warmup:int=2, steps:int=5) -> dict:
    "Seconds per step (after `warmup` steps), examples/s and peak GPU memory of `case` (two batches, taken in turn)."
    device = next(case.model.parameters()).device
    with tf32(case.precision == 'tf32'):
        batches = [case.batch(0), case.batch(1)]
        case.run([batches[i % 2] for i in range(warmup)]); sync(device)
        if device.type == 'cuda': torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter(); case.run([batches[i % 2] for i in range(steps)]); sync(device); dt = (time.perf_counter() - t0) / steps
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == 'cuda' else float('nan')
    return dict(batch=case.items, step_s=dt, samples_per_s=case.items / dt, peak_mem_gib=mem)


# ---- the data-loading share with the recipes' real datasets and loaders --------------------------------------------

class TimedLoader:
    "Wraps a loader: records when each `next()` started and ended (the time the training loop waits for its data)."
    def __init__(self, loader): self.loader, self.marks = loader, []
    def __len__(self): return len(self.loader)
    def __iter__(self):
        it = iter(self.loader)
        while True:
            t0 = time.perf_counter()
            try: b = next(it)
            except StopIteration: self.marks.append((t0, None)); return
            self.marks.append((t0, time.perf_counter())); yield b
    def share(self, skip:int) -> tuple:
        "(share of wall time spent waiting for data, seconds per step), over the steps after the first `skip`."
        m = self.marks[skip:]
        if len(m) < 2: return float('nan'), float('nan')
        wait = sum(b - a for a, b in m if b is not None); wall = m[-1][0] - m[0][0]
        return wait / wall, wall / (len(m) - 1)


def _with_replacement(tr, ds, bs, n, **kw):
    "The trainer's loader over `ds`, `n` batches of `bs` drawn with replacement (a small corpus fills the seed's batches)."
    return tr.loader(ds, bs, weights=torch.ones(len(ds)), num_samples=bs * n, **kw)


def real_loader(recipe:str, device, precision:str='fp32', n_batches:int=6, num_workers:int|None=None, small:bool=False):
    "(trainer, loader, examples per batch) of `recipe` on a small synthetic corpus in its dataset's layout, at the seed's batch and input length."
    from contextlib import ExitStack
    from soundlab.data.core import BadFiles
    device = torch.device(device); stack = ExitStack()
    nw = lambda cfg: cfg.num_workers if num_workers is None and hasattr(cfg, 'num_workers') else (num_workers or 0)
    if recipe == 'respiratory':
        from soundlab.recipes.respiratory import load_cycles, build_model, make_step
        from soundlab.losses import class_weights
        from torch.utils.data import TensorDataset
        cfg = replace_cfg(respiratory_setup(small), synth=dict(n_patients=3 if small else 6))  # cycles padded to the seed's length
        d = load_cycles(cfg, progress=False)['train']
        model = build_model(cfg, n_meta=int(d['meta'].max()) + 1); opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.wd)
        tr = _trainer(model, None, opt, device, precision, cfg.channels_last); tr.step = make_step(cfg, class_weights(d['y'], 4), tr.generator)
        return tr, _with_replacement(tr, TensorDataset(d['x'], d['y'], d['meta']), cfg.bs, n_batches, num_workers=nw(cfg)), cfg.bs
    if recipe == 'ast':
        from soundlab.recipes.ast import task_splits, fbank_norm, datasets, build_model, make_optimizer, make_step, class_names
        from soundlab.features import FeatureCache
        from soundlab.streaming import with_frontend
        from soundlab.core import data_dir
        cfg = replace_cfg(ast_setup(small), synth=dict(categories=[0, 10], clips_per_class=5, duration=1. if small else 5., sample_rate=16000))
        bad = BadFiles('raise'); sp = task_splits(cfg, bad); recs = [r for k in range(1, 6) for r in sp[f'fold{k}']]
        cache = stack.enter_context(FeatureCache(data_dir()/'cache'/'esc50'))
        norm = fbank_norm(cfg, recs, cache, bad); C = len(class_names(cfg))
        ds, _ = datasets(cfg, recs, {}, C, norm, cache, bad); ds.prepare(progress=False)
        model = build_model(cfg, C); opt, _ = make_optimizer(cfg, model)
        tr = _trainer(model, None, opt, device, precision); tr.step = with_frontend(make_step(cfg, opt), ds.device_frontend())
        tr._keep = stack  # the feature cache stays open while the loader reads it
        return tr, _with_replacement(tr, ds, cfg.bs, n_batches, num_workers=nw(cfg)), cfg.bs
    if recipe == 'psla':
        from soundlab.recipes.psla import load_data, make_dataset, psla_step
        from soundlab.models.psla import EffNetAttention
        from soundlab.streaming import with_frontend
        cfg = replace_cfg(psla_setup(small), label_enhance='none',
                          synth=dict(n_dev=24, n_eval=8, durations=(1., 2.) if small else (10., 30.)))  # FSD50K clips: 0.3-30 s
        data = load_data(cfg, progress=False)
        ds = make_dataset(cfg, data['files']['train'], data['files']['label_csv'], True, data['norm'], bad=data['bad'])
        model = EffNetAttention(data['n_classes'], cfg.b, None, cfg.head_num, mode=cfg.model_mode)
        opt = torch.optim.Adam(model.parameters(), cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas))
        tr = _trainer(model, None, opt, device, precision); tr.step = with_frontend(psla_step(cfg, opt), ds.device_frontend())
        return tr, _with_replacement(tr, ds, cfg.bs, n_batches, drop_last=True, num_workers=nw(cfg)), cfg.bs
    if recipe == 'sed':
        from soundlab.recipes.sed import load_clips, make_views, pretrain_step, _Clips
        from soundlab.data.fsdnoisy18k import collate_clips
        cfg = replace_cfg(sed_setup(small), synth=dict(n_per_class=2, n_test_per_class=1, durations=(1., 1.5) if small else (1., 4.)))
        data = load_clips(cfg, progress=False)
        net = _sed_net(cfg); opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.wd)
        tr = _trainer(net, None, opt, device, precision, cfg.channels_last)
        tr.step = pretrain_step(cfg, make_views(cfg, data['norm']), tr.generator, backgrounds=data['pretrain']['x'])
        return tr, _with_replacement(tr, _Clips(data['pretrain']), cfg.bs, n_batches, collate_fn=collate_clips, num_workers=nw(cfg)), cfg.bs
    if recipe == 'fewshot':
        from soundlab.recipes.fewshot import experiment, load_splits, episode_step
        from soundlab.models.fewshot import load_fewshot_config, create_fewshot_model
        from soundlab.data.metaaudio import EpisodicSampler, collate_episode
        cfg = replace_cfg(fewshot_setup(small), synth=dict(  # the seed's FSD2018 segments: 5 s, 128 mel bins x 157 frames
            datasets=('FSD2018',), n_classes=10 if small else 14, samples_per_class=(10, 11), segment=1. if small else 5.,
            n_mels=32 if small else 128, hop_length=512, max_segments=2))
        exp = experiment(cfg); data = load_splits(cfg, exp)
        shape = data['train']._array(0).shape[-2:]
        model = create_fewshot_model(exp, load_fewshot_config()[1], pool=cfg.encoder_pool, input_shape=shape)
        tr = _trainer(model, None, torch.optim.Adam(model.parameters(), lr=exp['lr']), device, precision); tr.step = episode_step(exp, tr.generator)
        W, S, Q = (exp[f'{k}_train'] for k in ('n_way', 'n_shot', 'n_query'))
        sampler = EpisodicSampler(data['train'].labels, W, S, Q, n_batches, seed=0)
        return tr, tr.loader(data['train'], batch_sampler=sampler, collate_fn=collate_episode(W, S, Q), num_workers=num_workers or 0), W * (S + Q)
    raise ValueError(f'unknown recipe {recipe!r}; choose from {STEP_RECIPES}')


def replace_cfg(cfg, **kw):
    import dataclasses
    return dataclasses.replace(cfg, **kw)


def loading_share(recipe:str, device, precision:str='fp32', n_batches:int=6, warmup:int=2, num_workers:int|None=None,
                  small:bool=False) -> dict:
    "Share of the training loop's wall time spent waiting for the next batch, with the recipe's real dataset and loader."
    tr, loader, items = real_loader(recipe, device, precision, n_batches + warmup, num_workers, small)
    timed = TimedLoader(loader)
    with tf32(True) if precision == 'tf32' else contextlib.nullcontext(): tr.train_epoch(timed)  # fp32: PyTorch's default TF32 settings, as a run
    share, step = timed.share(warmup)
    return dict(recipe=recipe, precision=precision, num_workers=loader.num_workers, batch=items, batches=len(timed.marks) - 1 - warmup,
                s_per_step_with_data=step, samples_per_s_with_data=items / step, data_wait_share=share)


# ---- the card's peak: datasheet (dense) and the measured matrix-product ceiling --------------------------------

# Dense (no 2:4 sparsity) peak TFLOP/s of NVIDIA data-centre GPUs from their datasheets (the datasheets print the sparse
# tensor-core rates; these are half of them): `fp32` is the CUDA cores' float32 rate (no tensor cores), `tf32`, `bf16`
# and `fp16` the tensor cores' (bf16 / fp16 with float32 accumulation). The first pattern that matches
# torch.cuda.get_device_name() wins ('NVIDIA H100 80GB HBM3' is the SXM5 card).
GPU_PEAKS = [  # (regular expression, model, {precision: dense TFLOP/s})
    (r'H100 NVL', 'H100 NVL', dict(fp32=60.0, tf32=417.5, bf16=835.5, fp16=835.5)),
    (r'H100 PCIe', 'H100 PCIe', dict(fp32=51.0, tf32=378.0, bf16=756.5, fp16=756.5)),
    (r'H200 NVL', 'H200 NVL', dict(fp32=60.0, tf32=417.5, bf16=835.5, fp16=835.5)),
    (r'GH200|H200|H100', 'H100 / H200 SXM', dict(fp32=67.0, tf32=494.5, bf16=989.5, fp16=989.5)),
    (r'B200', 'B200 (HGX)', dict(fp32=75.0, tf32=1125.0, bf16=2250.0, fp16=2250.0)),
    (r'A100', 'A100', dict(fp32=19.5, tf32=156.0, bf16=312.0, fp16=312.0)),
    (r'L40S', 'L40S', dict(fp32=91.6, tf32=183.0, bf16=362.0, fp16=362.0)),
    (r'\bL4\b', 'L4', dict(fp32=30.3, tf32=60.0, bf16=121.0, fp16=121.0)),
    (r'\bA10\b', 'A10', dict(fp32=31.2, tf32=62.5, bf16=125.0, fp16=125.0)),
    (r'V100', 'V100 SXM2', dict(fp32=15.7, fp16=125.0)),
    (r'\bT4\b', 'T4', dict(fp32=8.1, fp16=65.0)),
]


def gpu_peak(name:str, precision:str) -> tuple:
    "(dense peak TFLOP/s, which peak in words) of the GPU called `name` at `precision`; NaN where the table has none."
    import re
    for pat, model, peaks in GPU_PEAKS:
        if re.search(pat, name or ''):
            if precision not in peaks: return float('nan'), f'{model}: no {precision} rate'
            unit = 'CUDA cores (no tensor cores)' if precision == 'fp32' else 'tensor cores'
            return peaks[precision], f'{model} dense {precision} {peaks[precision]:g} TFLOP/s ({unit}, datasheet)'
    return float('nan'), f'{name or "this device"}: not in GPU_PEAKS'


def matmul_ceiling(device, precision:str, n:int=8192, reps:int=5) -> float:
    "Measured TFLOP/s of an n x n x n matrix product at `precision` on `device` (random data; the median of `reps`)."
    dt = dict(fp32=torch.float32, tf32=torch.float32, bf16=torch.bfloat16, fp16=torch.float16)[precision]
    g = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(n, n, device=device, dtype=dt, generator=g) for _ in range(2))
    times = []
    with tf32(precision == 'tf32'):
        for i in range(reps + 2):
            sync(device); t0 = time.perf_counter(); a @ b; sync(device)
            if i >= 2: times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / float(np.median(times)) / 1e12


def seed_step_table(device='cuda', recipes=STEP_RECIPES, precisions=STEP_PRECISIONS, small:bool=False, warmup:int=2,
                    steps:int=5, deadline:float|None=None, # time.time() after which the remaining rows are skipped
                    ceilings:dict|None=None, # {precision: measured TFLOP/s} (matmul_ceiling), for a second fraction
                    log=print) -> pd.DataFrame:
    "One row per recipe x precision x set-up: step time, examples/s, FLOPs, fraction of the card's peak, peak memory."
    device = torch.device(device); gpu = torch.cuda.get_device_name(device) if device.type == 'cuda' else ''
    flops = {}
    for r in recipes:
        try: flops[r] = step_flops(r, small)
        except Exception as e: flops[r] = float('nan'); log(f'  {r}: FLOPs not counted ({type(e).__name__}: {e})')
    # each recipe at its seed's precision first, then bf16, tf32, the rest: rows past the deadline are the least wanted
    order = lambda p, r: (0 if p == SEED_PRECISION[r] else 1 + ('bf16', 'tf32', 'fp16', 'fp32').index(p))
    todo = sorted(((r, p) for r in recipes for p in precisions if precision_applies(p, device)), key=lambda rp: (order(rp[1], rp[0]), recipes.index(rp[0])))
    rows = []
    for recipe, precision in todo:
        for setup in ('seed-style', 'soundlab'):
            row = dict(recipe=recipe, setup=setup, precision=precision, seed_precision=precision == SEED_PRECISION[recipe],
                       what=describe(recipe, small), tflop_per_step=flops[recipe] / 1e12)
            if deadline is not None and time.time() > deadline:
                rows.append(row | dict(status='skipped: over the time budget')); continue
            t0 = time.time()
            try:
                case = step_case(recipe, setup, device, precision, small)
                r = time_case(case, warmup, steps); del case
                peak, which = gpu_peak(gpu, precision) if gpu else (float('nan'), 'CPU: see the FMA peak of bench_steps')
                achieved = flops[recipe] / r['step_s'] / 1e12
                row |= dict(**r, achieved_tflops=achieved, peak_tflops=peak, peak=which, fraction_of_peak=achieved / peak,
                            fraction_of_matmul_ceiling=achieved / ceilings[precision] if ceilings and precision in ceilings else float('nan'),
                            status='ok')
            except Exception as e:  # one failing row must not hide the others: reported, and counted as a failure
                row |= dict(status=f'FAILED: {type(e).__name__}: {e}'[:300])
            finally:
                if device.type == 'cuda': torch.cuda.empty_cache()
            row['seconds'] = time.time() - t0; rows.append(row)
            log(f"  {recipe:11s} {setup:10s} {precision:4s} " + (f"{row['samples_per_s']:9.1f} /s  {row['step_s'] * 1e3:8.1f} ms/step  "
                f"{100 * row['fraction_of_peak']:5.1f} % of peak  {row['peak_mem_gib']:6.2f} GiB" if row['status'] == 'ok' else row['status'])
                + f"  ({row['seconds']:.1f} s)")
    df = pd.DataFrame(rows)
    if len(df):  # back in table order: recipe, then precision
        df = df.assign(_r=df.recipe.map(list(recipes).index), _p=df.precision.map(list(STEP_PRECISIONS).index))
        df = df.sort_values(['_r', '_p'], kind='stable').drop(columns=['_r', '_p']).reset_index(drop=True)
    if len(df) and 'step_s' in df:
        base = df[df.setup == 'seed-style'].set_index(['recipe', 'precision']).step_s
        df['x_seed_style'] = [base.get((r.recipe, r.precision), float('nan')) / r.step_s for r in df.itertuples()]
    return df


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--backbones', nargs='+', default=['cnn6', 'cnn10', 'cnn14'])
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--duration', type=float, default=8.)
    p.add_argument('--steps', type=int, default=6)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--accuracy', action='store_true', help='also compare bf16 and fp32 training accuracy')
    p.add_argument('--skip-steps', action='store_true', help='skip the step-throughput table (with --accuracy)')
    p.add_argument('--acc-seeds', type=int, default=3)
    p.add_argument('--acc-epochs', type=int, default=8)
    p.add_argument('--compile', action='store_true', help='also time the fp32 fast setup under torch.compile')
    p.add_argument('--clock-ghz', type=float, default=None, help='core clock for the peak estimate (default: read)')
    p.add_argument('--out', default='benchmarks/results/bench_train.csv')
    p.add_argument('--seed-steps', action='store_true', help="every recipe's step at its seed's size (tools/gpu_check.py runs it on a GPU)")
    p.add_argument('--device', default='auto', help='--seed-steps: the device')
    p.add_argument('--recipes', nargs='+', default=list(STEP_RECIPES)); p.add_argument('--precisions', nargs='+', default=list(STEP_PRECISIONS))
    p.add_argument('--small', action='store_true', help='--seed-steps: tiny sizes (a check of the harness)')
    args = p.parse_args()
    print(machine_info(), f'CPU mixed precision: {autocast_dtype("cpu")}')
    if args.seed_steps:
        from soundlab.core import get_device
        df = seed_step_table(get_device(args.device), args.recipes, args.precisions, args.small, args.warmup, args.steps)
        print(df.drop(columns=['what', 'peak'], errors='ignore').to_markdown(index=False, floatfmt='.3g'))
        out = Path(args.out).with_name('bench_train_seed_steps.csv'); out.parent.mkdir(parents=True, exist_ok=True)
        df.assign(**machine_info()).to_csv(out, index=False); print(f'wrote {out}')
        raise SystemExit(0 if (df.status == 'ok').all() else 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if not args.skip_steps:
        df = bench_steps(args)
        print(df.to_markdown(index=False, floatfmt='.3f'))
        df.assign(**machine_info()).to_csv(args.out, index=False)
    if args.accuracy:
        acc = bench_accuracy(args)
        print(acc.to_markdown(index=False, floatfmt='.2f'))
        summary = acc.groupby('precision').score.agg(['mean', 'std', 'count'])
        print(summary.to_markdown(floatfmt='.2f'))
        acc.assign(**machine_info()).to_csv(Path(args.out).with_name('bench_train_accuracy.csv'), index=False)

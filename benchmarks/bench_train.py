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

    .venv/bin/python benchmarks/bench_train.py [--backbones cnn6 cnn10 cnn14] [--steps 6] [--compile] [--accuracy [--skip-steps]]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/bench_train.py   # as on an AVX2-only CPU
"""
import argparse, os, time
from pathlib import Path
import pandas as pd
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
    args = p.parse_args()
    print(machine_info(), f'CPU mixed precision: {autocast_dtype("cpu")}')
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

"""Training-step throughput of the respiratory recipe (seed 000) on this machine.

For CNN6 / CNN10 / CNN14 on 8-s cycles at batch 32 it times one optimisation step (forward + backward + Adam) in
three set-ups, all in one run so that the ratios compare like with like:

- `seed000-style`: what seed 000's loop does each step: log-mel computed from the waveform batch, SpecAugment,
  fp32, default memory layout (its `train_transform` runs the front end inside the training loop);
- `soundlab fp32`: log-mels read from the warm feature cache (in memory), SpecAugment, fp32;
- `soundlab default`: as above with the trainer's defaults (channels_last, bf16 autocast where the device runs it).

It also reports the share of step time spent outside the model (fetching the batch + SpecAugment) with a warm cache.
With `--accuracy` it trains the demo-sized CE recipe with and without mixed precision over a few seeds and prints
the ICBHI Scores side by side.

    .venv/bin/python benchmarks/bench_train.py [--backbones cnn6 cnn10 cnn14] [--steps 6] [--accuracy [--skip-steps]]
"""
import argparse, time, platform
from pathlib import Path
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from soundlab.core import autocast_dtype, seed_everything
from soundlab.features import RespiratoryMel
from soundlab.augment import SpecAugment
from soundlab.models.panns import create_backbone, RespiratoryNet


def step_timer(model, opt, batches, frontend, aug, amp_dtype, channels_last, cached, gen):
    "Mean seconds per step (model part and data part) over `batches` (list of (wave, spec, y))."
    t_data = t_model = 0.
    for wave, spec, y in batches:
        t0 = time.perf_counter()
        x = spec if cached else frontend(wave)
        x = aug(x, generator=gen)
        if channels_last: x = x.contiguous(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        with torch.autocast('cpu', dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = F.cross_entropy(model.classify(model.embed(x)).float(), y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        t2 = time.perf_counter()
        t_data += t1 - t0; t_model += t2 - t1
    n = len(batches)
    return t_data / n, t_model / n


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
    setups = [('seed000-style', False, None, False), ('soundlab fp32', True, None, False),
              ('soundlab default', True, bf16, True)]
    for bb in args.backbones:
        for name, cached, amp, cl in setups:
            seed_everything(0)
            model = RespiratoryNet(create_backbone(bb))
            if cl: model = model.to(memory_format=torch.channels_last)
            model.train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            aug = SpecAugment(20, 40, 2, 2).train()
            gen = torch.Generator().manual_seed(0)
            t_fetch = time.perf_counter(); batches = list(dl); t_fetch = (time.perf_counter() - t_fetch) / len(batches)
            step_timer(model, opt, batches[:args.warmup], fe, aug, amp, cl, cached, gen)
            t_data, t_model = step_timer(model, opt, batches[args.warmup:], fe, aug, amp, cl, cached, gen)
            t_data += t_fetch
            step = t_data + t_model
            rows.append(dict(backbone=bb, setup=name, amp=str(amp).replace('torch.', '') if amp else 'fp32',
                             channels_last=cl, clips_per_s=args.batch / step, step_s=step,
                             outside_model_share=t_data / step))
            print(f'{bb:6s} {name:17s} {args.batch / step:7.2f} clips/s  outside model {100 * t_data / step:5.1f} %', flush=True)
    df = pd.DataFrame(rows)
    base = df[df.setup == 'seed000-style'].set_index('backbone').clips_per_s
    df['x_seed000_style'] = df.apply(lambda r: r.clips_per_s / base[r.backbone], axis=1)
    return df


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
            rows.append(dict(amp='bf16' if amp and autocast_dtype('cpu') else 'fp32', seed=s, score=r['score'], sp=r['sp'], se=r['se']))
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
    p.add_argument('--out', default='benchmarks/results/bench_train.csv')
    args = p.parse_args()
    print(f'{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, '
          f'CPU mixed precision: {autocast_dtype("cpu")}')
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if not args.skip_steps:
        df = bench_steps(args)
        print(df.to_markdown(index=False, floatfmt='.3f'))
        df.to_csv(args.out, index=False)
    if args.accuracy:
        acc = bench_accuracy(args)
        print(acc.to_markdown(index=False, floatfmt='.2f'))
        summary = acc.groupby('amp').score.agg(['mean', 'std', 'count'])
        print(summary.to_markdown(floatfmt='.2f'))
        acc.to_csv(Path(args.out).with_name('bench_train_accuracy.csv'), index=False)

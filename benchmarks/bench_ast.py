"""Training-step throughput of the Audio Spectrogram Transformer (seed 003) on this machine.

One optimisation step (forward + backward + Adam) of `soundlab.models.ast.ASTModel` at two sizes, each with the two
attention paths of timm's blocks, all in one run so that the ratios compare like with like:

- seed size: `base384`, strides 10, 128 x 1024 fbank (1212 patches + 2 tokens), 527 classes (AudioSet);
- demo size: `tiny224`, strides 16, 128 x 128 fbank (64 patches + 2 tokens), the demo presets' model;
- `fused`: PyTorch's `scaled_dot_product_attention` (what soundlab uses); `explicit`: timm's non-fused path
  (`softmax(q k^T / sqrt(d)) v` materialised, what the seed's timm 0.4.5 ran).

The two paths are timed alternately `--repeats` times and the best time of each is kept (the machine is shared).
The seed size is slow on a CPU (about half a minute per step at batch 2 on one core): its batch, step count and
repeats are small by default; a GPU makes them cheap.

    .venv/bin/python benchmarks/bench_ast.py [--sizes seed demo] [--seed-batch 2 --seed-steps 1] [--demo-batch 16 --demo-steps 5] [--repeats 3] [--device auto] [--amp]
"""
import argparse, time
from pathlib import Path
import pandas as pd
import torch
import torch.nn.functional as F
import timm
from soundlab.core import get_device, autocast_dtype, seed_everything, machine_info
from soundlab.models.ast import ASTModel

SIZES = {'seed': dict(model_size='base384', fstride=10, tstride=10, input_tdim=1024, label_dim=527),
         'demo': dict(model_size='tiny224', fstride=16, tstride=16, input_tdim=128, label_dim=10)}


def time_steps(model, batch, steps, warmup, device, amp_dtype):
    "Mean seconds per optimisation step and peak GPU memory (MiB, CUDA only)."
    opt = torch.optim.Adam(model.parameters(), 1e-5)
    x = torch.randn(batch, model.input_tdim, model.input_fdim, device=device)
    y = torch.randint(0, model.label_dim, (batch,), device=device)
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == 'cuda': torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    if device.type == 'cuda': torch.cuda.synchronize()
    mem = torch.cuda.max_memory_allocated() / 2**20 if device.type == 'cuda' else float('nan')
    return (time.perf_counter() - t0) / steps, mem


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sizes', nargs='+', default=['seed', 'demo'], choices=list(SIZES))
    p.add_argument('--seed-batch', type=int, default=2); p.add_argument('--seed-steps', type=int, default=1)
    p.add_argument('--demo-batch', type=int, default=16); p.add_argument('--demo-steps', type=int, default=5)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--repeats', type=int, default=3, help='alternate the two paths this many times (seed size: once)')
    p.add_argument('--device', default='auto'); p.add_argument('--amp', action='store_true', help='bf16/fp16 autocast where supported')
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'bench_ast.csv'))
    args = p.parse_args(argv)
    device = get_device(args.device); amp_dtype = autocast_dtype(device) if args.amp else None
    rows = []
    for name in args.sizes:
        kw = SIZES[name]
        batch, steps = (args.seed_batch, args.seed_steps) if name == 'seed' else (args.demo_batch, args.demo_steps)
        seed_everything(0)
        model = ASTModel(imagenet_pretrain=False, **kw).to(device).train()
        n_tok = model.f_dim * model.t_dim + 2
        best = {}
        for _ in range(1 if name == 'seed' and device.type == 'cpu' else args.repeats):
            for attn in ('explicit', 'fused'):
                model.set_fused_attn(attn == 'fused')
                sec, mem = time_steps(model, batch, steps, args.warmup, device, amp_dtype)
                best[attn] = min(best.get(attn, (sec, mem)), (sec, mem))
        for attn, (sec, mem) in best.items():
            rows.append(dict(size=name, model=kw['model_size'], strides=f"{kw['fstride']}/{kw['tstride']}", frames=kw['input_tdim'],
                             tokens=n_tok, batch=batch, steps=steps, attention=attn, s_per_step=round(sec, 4),
                             clips_per_s=round(batch / sec, 4), peak_mem_mib=round(mem, 1)))
            print(rows[-1], flush=True)
        del model
    df = pd.DataFrame(rows)
    t = df.pivot(index='size', columns='attention', values='s_per_step')
    ratio = t['explicit'] / t['fused']  # throughput of fused over explicit attention
    df['fused_speedup'] = df['size'].map(ratio).round(3)
    env = machine_info(str(amp_dtype).replace('torch.', '') if amp_dtype else 'fp32') | {'timm': timm.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True); df.assign(**env).to_csv(args.out, index=False)
    print(env); print(df.to_markdown(index=False))
    print('fused / explicit throughput: ' + ', '.join(f'{k} x{v:.2f}' for k, v in ratio.items()))


if __name__ == '__main__':
    main()

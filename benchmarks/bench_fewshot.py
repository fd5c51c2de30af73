#!/usr/bin/env python
"""Contrastive prototype loss (CPL): soundlab's vectorised `cpl_loss` vs the per-query loop `cpl_loss_loop`.

Seed 002's setting: a 5-way 5-shot 5-query episode (25 queries), 256-d projections, M = 5 negatives per other class,
temperature 9.2361 (the seed's experiment_config.json). Times, per episode, the forward pass and forward + backward
(gradients w.r.t. the queries and prototypes) of both implementations with `--threads` torch threads on the CPU, and
checks that they agree (M equals the class size, so nothing is sampled). Also times a larger episode
(`--ways`-way, `--queries` queries per class) to show how the two scale. Every timing is the median of `--repeats`
runs of `--number` calls. Prints a table and writes it as CSV to `--out`. Issue target: >= 20x over the loop.

    .venv/bin/python benchmarks/bench_fewshot.py
"""
import argparse, csv, os, time
from pathlib import Path
import numpy as np
import torch
from soundlab.core import machine_info
from soundlab.losses import cpl_loss, cpl_loss_loop

T_PARAM, M_PARAM = 9.2361, 5  # the seed's experiment_config.json


def episode(n_way, n_query, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(n_way, dim, generator=g).requires_grad_()
    queries = torch.randn(n_way * n_query, dim, generator=g).requires_grad_()
    return protos, queries, torch.arange(n_way).repeat_interleave(n_query)


def per_call(fn, number, repeats):
    "Median seconds per call over `repeats` runs of `number` calls (after a warm-up)."
    for _ in range(max(1, number // 10)): fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number): fn()
        times.append((time.perf_counter() - t0) / number)
    return float(np.median(times))


def bench(n_way, n_query, dim, number, repeats):
    p, q, y = episode(n_way, n_query, dim)
    impls = {'loop': lambda: cpl_loss_loop(p, q, y, T_PARAM, M_PARAM), 'vectorised': lambda: cpl_loss(p, q, y, T_PARAM, M_PARAM)}
    a, b = impls['vectorised'](), impls['loop']()
    ga, gb = torch.autograd.grad(a, (p, q)), torch.autograd.grad(b, (p, q))
    agree = abs(a.item() - b.item()) < 1e-6 and all(torch.allclose(u, v, atol=1e-6) for u, v in zip(ga, gb))
    rows = []
    for mode in ('forward', 'forward+backward'):
        t = {}
        for name, f in impls.items():
            if mode == 'forward':
                def run(f=f):
                    with torch.no_grad(): f()
            else:
                def run(f=f): torch.autograd.grad(f(), (p, q))
            t[name] = per_call(run, number if name == 'vectorised' else max(number // 20, 5), repeats)
        rows.append(dict(episode=f'{n_way}-way, {n_query} queries/class', mode=mode, loop_ms=1e3 * t['loop'],
                         vectorised_ms=1e3 * t['vectorised'], speedup=t['loop'] / t['vectorised'], agree=agree))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=int(os.environ.get('OMP_NUM_THREADS', 1)))
    ap.add_argument('--dim', type=int, default=256, help='projection size (the seed: 256)')
    ap.add_argument('--ways', type=int, default=20); ap.add_argument('--queries', type=int, default=15)
    ap.add_argument('--number', type=int, default=400); ap.add_argument('--repeats', type=int, default=7)
    ap.add_argument('--out', default=str(Path(__file__).parent/'results'/'bench_fewshot.csv'))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = bench(5, 5, a.dim, a.number, a.repeats) + bench(a.ways, a.queries, a.dim, max(a.number // 8, 20), a.repeats)
    meta = machine_info('fp32')
    print(f"{'episode':28s} {'mode':17s} {'loop ms':>9s} {'vectorised ms':>14s} {'speed-up':>9s}  agree")
    for r in rows:
        print(f"{r['episode']:28s} {r['mode']:17s} {r['loop_ms']:9.3f} {r['vectorised_ms']:14.3f} {r['speedup']:8.1f}x  {r['agree']}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, 'w', newline='') as f:
        w = csv.DictWriter(f, list(rows[0]) + list(meta)); w.writeheader()
        for r in rows: w.writerow(r | meta)
    print(f'wrote {a.out}')


if __name__ == '__main__':
    main()

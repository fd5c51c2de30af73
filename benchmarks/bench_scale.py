#!/usr/bin/env python
"""AudioSet scale: the PSLA recipe's data path per feature mode, and AudioSet-sized datafiles.

Three parts, each measured in a fresh subprocess (peak RSS = that process's ru_maxrss; workers: RUSAGE_CHILDREN):
  * `datafile`: a synthetic AST/PSLA datafile of `--datafile-n` items (paths + 1-4 of AudioSet's 527 labels, no
    audio) read into a `soundlab.streaming.DatafileIndex` + the balanced-sampling weights (`index_weights`); and,
    for comparison, the list-of-`Record`s path (`records_from_datafile(probe=False)` + `sample_weights`) on
    `--legacy-n` items. Issue target: 2 M items in < 60 s and < 3 GB.
  * `epoch`: one training epoch of the PSLA data path (TaggingDataset with PSLA's augmentation: mixup 0.5,
    SpecAugment, balanced sampling; `Trainer.loader` with `--workers` workers; no model) on synthetic corpora of
    `--sizes` clips of `--duration` s, per feature mode: 'cache' (precompute pass in `--workers` processes + one warm
    epoch), 'stream',
    'device' (the batched fbank run in the main process on `--device`), and 'device-io' (device mode's CPU side alone:
    decode, mixup and padding in the workers, the fbank left to a GPU). Per-clip cost should stay flat as the corpus
    grows and peak RSS should not grow beyond the index.
  * `throughput`: clips/s of 10-s 16 kHz clips at 1024 frames, no augmentation, `--workers` workers: stream vs warm
    cache vs device.
Prints a table and writes it as CSV (with the CPU model and flags) to `--out`.

    python benchmarks/bench_scale.py --sizes 200 800 3200 --duration 1 --target-length 100   # this 2-core machine
    python benchmarks/bench_scale.py --sizes 1000 5000 20000 --duration 10 --target-length 1024  # the issue's sizes
"""
import argparse, csv, gc, json, os, platform, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    "`soundlab.core.machine_info` (CPU model, key flags, ISA in use, threads, torch) + core count and Python."
    from soundlab.core import machine_info
    return machine_info() | dict(cores=os.cpu_count(), python=platform.python_version())


def rss_mb(who=resource.RUSAGE_SELF) -> float: return resource.getrusage(who).ru_maxrss / 1024


def cpu_s() -> float:
    "CPU seconds of this process and its finished children (the machine may be shared: wall time alone misleads)."
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def write_label_csv(path: Path, n: int = 527) -> list:
    from soundlab.data.tagging import write_label_csv as w
    mids = [f'/m/as{i:04d}' for i in range(n)]
    w(path, [f'class {i}' for i in range(n)], mids)
    return mids


def write_datafile(path: Path, wavs: list, mids: list, seed: int = 0):
    "An AST/PSLA datafile: each wav with 1-4 random labels (Zipf-like class frequencies, as AudioSet's)."
    rng = np.random.default_rng(seed); p = 1 / np.arange(1, len(mids) + 1); p /= p.sum()
    with open(path, 'w') as f:
        f.write('{"data": [\n')
        n = len(wavs); k = rng.integers(1, 5, n); labs = rng.choice(len(mids), size=int(k.sum()), p=p); o = 0
        for i, w in enumerate(wavs):
            f.write(json.dumps({'wav': w, 'labels': ','.join(mids[j] for j in labs[o:o + k[i]])}) + (',\n' if i < n - 1 else '\n'))
            o += k[i]
        f.write(']}\n')


def write_clips(root: Path, n: int, duration: float, sr: int = 16000, seed: int = 0) -> list:
    "`n` 16-bit wav clips (noise + a tone); only the first few distinct ones are synthesised, the rest are copies."
    import soundfile as sf
    rng, t = np.random.default_rng(seed), np.arange(int(duration * sr)) / sr
    root.mkdir(parents=True, exist_ok=True); out = []
    for i in range(n):
        p = root / f'clip_{i:06d}.wav'
        if not p.exists():
            if i < 32:
                x = 0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t)
                sf.write(p, (x / np.abs(x).max() * 0.9).astype(np.float32), sr, subtype='PCM_16')
            else: shutil.copyfile(root / f'clip_{i % 32:06d}.wav', p)
        out.append(str(p))
    return out


# ---- children (one measurement each, printed as one JSON line) ----

def child_datafile(a):
    from soundlab.streaming import read_datafile_index, index_weights
    c0 = cpu_s(); t0 = time.perf_counter(); idx = read_datafile_index(a.datafile, a.label_csv); t1 = time.perf_counter()
    w = index_weights(idx, 527); t2 = time.perf_counter()
    assert len(w) == len(idx) and np.isfinite(w).all()
    return dict(n=len(idx), read_s=t1 - t0, weights_s=t2 - t1, total_s=t2 - t0, cpu_s=cpu_s() - c0, rss_mb=rss_mb(), index_mb=idx.nbytes / 2**20)


def child_legacy(a):
    from soundlab.data.tagging import records_from_datafile, sample_weights
    c0 = cpu_s(); t0 = time.perf_counter(); recs = records_from_datafile(a.datafile, a.label_csv, probe=False); t1 = time.perf_counter()
    w = sample_weights([r.labels for r in recs], 527); t2 = time.perf_counter()
    return dict(n=len(recs), read_s=t1 - t0, weights_s=t2 - t1, total_s=t2 - t0, cpu_s=cpu_s() - c0, rss_mb=rss_mb())


def _dataset(a, mode: str, augment: bool):
    from soundlab.streaming import read_datafile_index
    from soundlab.data.tagging import TaggingDataset
    from soundlab.models.psla import PSLA_NORM
    idx = read_datafile_index(a.datafile, a.label_csv)
    kw = dict(freqm=48, timem=max(a.target_length // 5, 1), mixup=0.5) if augment else {}
    ds = TaggingDataset(idx, 527, target_length=a.target_length, norm=PSLA_NORM, train=augment,
                        features=mode, cache=a.cache_dir, **kw)
    return idx, ds


def child_epoch(a):
    import torch
    from torch import nn
    from soundlab.train import Trainer
    from soundlab.streaming import index_weights
    torch.set_num_threads(1)
    idx, ds = _dataset(a, 'device' if a.mode == 'device-io' else a.mode, augment=not a.plain)
    fill = 0.
    if a.mode == 'cache':
        t0 = time.perf_counter(); ds.prepare(progress=False, num_workers=a.workers); ds.cache.flush(); fill = time.perf_counter() - t0
    tr = Trainer(nn.Linear(1, 1), None, torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1), device=a.device, progress=False)
    dl = tr.loader(ds, a.bs, weights=None if a.plain else index_weights(idx, 527), num_workers=a.workers)
    fe, n = (None if a.mode == 'device-io' else ds.device_frontend()), 0  # device-io: what the CPU does when a GPU runs the fbank
    c0 = cpu_s(); t0 = time.perf_counter()  # worker start-up included (once per run with persistent workers)
    for b in dl:
        if fe is not None: b = fe({k: v.to(a.device) if torch.is_tensor(v) else v for k, v in b.items()})
        n += len(b['x'] if 'x' in b else b['wav'])
    if a.device.startswith('cuda'): torch.cuda.synchronize()
    sec = time.perf_counter() - t0
    del dl; gc.collect()  # the workers exit (and are reaped): only now do their CPU time and peak RSS count
    return dict(n=n, fill_s=fill, epoch_s=sec, cpu_s=cpu_s() - c0, ms_per_clip=1000 * sec / n, clips_per_s=n / sec, rss_mb=rss_mb(),
                worker_rss_mb=rss_mb(resource.RUSAGE_CHILDREN), index_mb=idx.nbytes / 2**20)


def run_child(kind: str, **kw) -> dict:
    args = [sys.executable, __file__, '--child', kind] + [x for k, v in kw.items() for x in (f'--{k.replace("_", "-")}', str(v))]
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    res = subprocess.run(args, capture_output=True, text=True, env=env)
    if res.returncode: raise RuntimeError(f'{kind} {kw} failed:\n{res.stderr[-3000:]}')
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--sizes', type=int, nargs='+', default=[200, 800, 3200])
    ap.add_argument('--duration', type=float, default=1.)
    ap.add_argument('--target-length', type=int, default=100)
    ap.add_argument('--modes', nargs='+', default=['cache', 'stream', 'device', 'device-io'])
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--bs', type=int, default=32)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--datafile-n', type=int, default=2_000_000)
    ap.add_argument('--legacy-n', type=int, default=200_000)
    ap.add_argument('--throughput-n', type=int, default=160)
    ap.add_argument('--parts', nargs='+', default=['datafile', 'epoch', 'throughput'])
    ap.add_argument('--work', default='', help='scratch folder (default: a temporary one, removed)')
    ap.add_argument('--out', default=str(HERE / 'results' / 'bench_scale.csv'))
    # child-only
    ap.add_argument('--child', default=''); ap.add_argument('--datafile', default=''); ap.add_argument('--label-csv', default='')
    ap.add_argument('--mode', default='stream'); ap.add_argument('--cache-dir', default=''); ap.add_argument('--plain', type=int, default=0)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(dict(datafile=child_datafile, legacy=child_legacy, epoch=child_epoch)[a.child](a))); return

    work = Path(a.work or tempfile.mkdtemp(prefix='bench_scale_')); work.mkdir(parents=True, exist_ok=True)
    mids = write_label_csv(work / 'labels.csv'); lab = str(work / 'labels.csv')
    rows, m = [], machine()
    try:
        if 'datafile' in a.parts:
            for kind, n in (('datafile', a.datafile_n), ('legacy', a.legacy_n)):
                df = work / f'datafile_{n}.json'
                if not df.exists(): write_datafile(df, [f'audioset/train/Y{i:011d}.wav' for i in range(n)], mids)
                r = run_child(kind, datafile=df, label_csv=lab)
                rows.append(dict(part='datafile', mode='index' if kind == 'datafile' else 'records', clips=r['n'],
                                 seconds=round(r['total_s'], 2), cpu_s=round(r['cpu_s'], 2), peak_rss_mb=round(r['rss_mb']), note=f"read {r['read_s']:.1f}s + weights {r['weights_s']:.1f}s"
                                 + (f", index {r['index_mb']:.0f} MiB" if 'index_mb' in r else '')))
                print(rows[-1], flush=True)
        if 'epoch' in a.parts:
            wavs = write_clips(work / f'clips_{a.duration}', max(a.sizes), a.duration)
            for n in a.sizes:
                df = work / f'corpus_{a.duration}_{n}.json'; write_datafile(df, wavs[:n], mids)
                for mode in a.modes:
                    cache = work / f'cache_{a.duration}_{n}'; shutil.rmtree(cache, ignore_errors=True)
                    r = run_child('epoch', datafile=df, label_csv=lab, mode=mode, cache_dir=cache, workers=a.workers, bs=a.bs,
                                  device=a.device, target_length=a.target_length)
                    disk = sum(p.stat().st_size for p in cache.glob('*.h5')) / 2**20 if cache.exists() else 0.
                    rows.append(dict(part='epoch', mode=mode, clips=n, seconds=round(r['epoch_s'], 2), cpu_s=round(r['cpu_s'], 2),
                                     cpu_ms_per_clip=round(1000 * r['cpu_s'] / r['n'], 2), ms_per_clip=round(r['ms_per_clip'], 2),
                                     clips_per_s=round(r['clips_per_s'], 1), fill_s=round(r['fill_s'], 2), peak_rss_mb=round(r['rss_mb']),
                                     worker_rss_mb=round(r['worker_rss_mb']), cache_mb=round(disk, 1),
                                     note=f'{a.duration:g}-s clips, {a.target_length} frames, mixup 0.5 + SpecAugment + balanced sampling'))
                    print(rows[-1], flush=True)
        if 'throughput' in a.parts:
            wavs = write_clips(work / 'clips_10', a.throughput_n, 10.)
            df = work / 'corpus_10.json'; write_datafile(df, wavs, mids); cache = work / 'cache_10'
            for mode in ('cache', 'stream', 'device', 'device-io'):
                if mode == 'cache':  # warm: fill first (in the child's precompute), then time a second child reading it
                    run_child('epoch', datafile=df, label_csv=lab, mode='cache', cache_dir=cache, workers=a.workers, bs=a.bs,
                              device=a.device, target_length=1024, plain=1)
                r = run_child('epoch', datafile=df, label_csv=lab, mode=mode, cache_dir=cache, workers=a.workers, bs=a.bs,
                              device=a.device, target_length=1024, plain=1)
                rows.append(dict(part='throughput', mode=mode + (' (warm)' if mode == 'cache' else ''), clips=r['n'],
                                 seconds=round(r['epoch_s'], 2), cpu_s=round(r['cpu_s'], 2),
                                     cpu_ms_per_clip=round(1000 * r['cpu_s'] / r['n'], 2), ms_per_clip=round(r['ms_per_clip'], 2), clips_per_s=round(r['clips_per_s'], 1),
                                 peak_rss_mb=round(r['rss_mb']), worker_rss_mb=round(r['worker_rss_mb']),
                                 note=f'10-s 16 kHz clips, 1024 frames, {a.workers} workers, no augmentation'))
                print(rows[-1], flush=True)
    finally:
        if not a.work: shutil.rmtree(work, ignore_errors=True)
    import pandas as pd
    table = pd.DataFrame(rows)
    print(table.drop(columns=['note']).to_markdown(index=False))
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    table.assign(**m, workers=a.workers, device=a.device).to_csv(out, index=False)
    print(f"\n{m['cpu']} ({m['cores']} cores; {m['cpu_flags']}), torch {m['torch']} -> {out}")


if __name__ == '__main__':
    main()

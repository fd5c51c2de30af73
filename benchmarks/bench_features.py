#!/usr/bin/env python
"""Log-mel throughput: librosa per clip vs soundlab's batched frontends, and a FeatureCache epoch cold vs warm.

Writes `--n-clips` synthetic clips of `--duration` s at `--sr` Hz as 16-bit wav files into a temporary folder, then
  * times the log-mel of every clip with librosa, one clip at a time (what a user would write:
    `librosa.feature.melspectrogram` + `librosa.power_to_db`, 64 mels, RespiratoryMel's n_fft/hop/fmin/fmax), on
    decoded arrays and again including `librosa.load` of each file;
  * times soundlab's frontends on batches of `--batch-size` clips with torch using `--threads` threads
    (RespiratoryMel; PannsLogmel with the same STFT settings, on its FFT path and on its conv path; KaldiFbank)
    on `--device` (cpu by default; host-to-device copies are included);
  * times one "epoch" over the files through a FeatureCache: cold (decode + RespiratoryMel + store) and warm (a new
    FeatureCache on the same folder reading every entry back).
Prints a table (clips/s and ratio to librosa) and writes it as CSV to `--out`. Every timing is the best of `--repeats`.
Issue target: a soundlab frontend >= 10x librosa per clip.

    python benchmarks/bench_features.py --n-clips 300 --duration 8 --sr 16000
"""
import argparse, csv, os, shutil, tempfile, time
from pathlib import Path
import numpy as np
import soundfile as sf
import torch
import librosa
from soundlab.audio import load_audio
from soundlab.core import machine_info
from soundlab.features import RespiratoryMel, PannsLogmel, KaldiFbank, FeatureCache, feature_key

N_FFT, HOP, N_MELS, FMIN, FMAX = 1024, 512, 64, 50., 2000.  # RespiratoryMel's defaults


def make_clips(root: Path, n: int, duration: float, sr: int, seed: int = 0) -> list:
    "Write `n` clips (noise + a few tones, like breath sounds with wheezes) as 16-bit wav files."
    rng, t = np.random.default_rng(seed), np.arange(int(duration * sr)) / sr
    paths = []
    for i in range(n):
        x = 0.05 * rng.standard_normal(t.size)
        for f in rng.uniform(100, 1500, size=3): x += 0.1 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        p = root / f'clip_{i:05d}.wav'
        sf.write(p, (x / np.abs(x).max() * 0.9).astype(np.float32), sr, subtype='PCM_16')
        paths.append(p)
    return paths


def best_time(fn, repeats: int) -> float:
    "Best wall time of `repeats` calls of `fn` (after one untimed warm-up call)."
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return min(times)


def librosa_per_clip(waves: np.ndarray, sr: int):
    for y in waves:
        librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS,
                                                           fmin=FMIN, fmax=FMAX))


def librosa_load_per_clip(paths: list, sr: int):
    for p in paths:
        y, _ = librosa.load(p, sr=sr)
        librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS,
                                                           fmin=FMIN, fmax=FMAX))


def batched(frontend, waves: torch.Tensor, batch_size: int, device: torch.device):
    "Frontend over CPU waveforms in batches (host-to-device copies included in the time)."
    with torch.inference_mode():
        for b in waves.split(batch_size): frontend(b.to(device))
    if device.type == 'cuda': torch.cuda.synchronize(device)


def cache_epoch(cache_dir: Path, paths: list, frontend, sr: int, batch_size: int, warm: bool,
                device: torch.device = torch.device('cpu')) -> int:
    "One pass over the files through a FeatureCache; returns how many features it served."
    cfg, n = dict(frontend.config(), sr=sr), 0
    with FeatureCache(cache_dir) as cache, torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            chunk = paths[i:i + batch_size]
            keys = [feature_key(p, None, None, cfg) for p in chunk]
            if warm:
                n += sum(cache.get(k) is not None for k in keys); continue
            feats = frontend(torch.stack([load_audio(p, sr=sr)[0] for p in chunk]).to(device))
            for k, f in zip(keys, feats): cache.put(k, f); n += 1
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n-clips', type=int, default=300)
    ap.add_argument('--duration', type=float, default=8.)
    ap.add_argument('--sr', type=int, default=16000)
    ap.add_argument('--batch-size', type=int, default=32)
    ap.add_argument('--threads', type=int, default=os.cpu_count(), help='torch threads (default: all cores)')
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--device', default='cpu', help="device of soundlab's frontends (e.g. cuda); librosa is CPU")
    ap.add_argument('--out', default='benchmarks/results/bench_features.csv')
    ap.add_argument('--keep', action='store_true', help='keep the temporary clips and cache')
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix='bench_features_'))
    try:
        print(f'writing {args.n_clips} clips of {args.duration:g} s at {args.sr} Hz to {tmp} ...', flush=True)
        (tmp / 'clips').mkdir()
        paths = make_clips(tmp / 'clips', args.n_clips, args.duration, args.sr)
        waves = torch.stack([load_audio(p)[0] for p in paths])
        rows, n = [], len(paths)

        def add(name, seconds, **kw):
            rows.append(dict(name=name, clips=n, seconds=round(seconds, 4), clips_per_s=round(n / seconds, 1), **kw))
            print(f'  {name:<44s} {n / seconds:9.1f} clips/s', flush=True)

        add('librosa per clip', best_time(lambda: librosa_per_clip(waves.numpy(), args.sr), args.repeats))
        add('librosa per clip incl. librosa.load', best_time(lambda: librosa_load_per_clip(paths, args.sr), args.repeats))
        resp = RespiratoryMel(args.sr, N_FFT, HOP, N_MELS, FMIN, FMAX).to(dev)
        add(f'RespiratoryMel batch {args.batch_size}', best_time(lambda: batched(resp, waves, args.batch_size, dev), args.repeats))
        panns = PannsLogmel(args.sr, N_FFT, HOP, N_MELS, FMIN, FMAX).to(dev)
        add(f'PannsLogmel batch {args.batch_size} (FFT path)', best_time(lambda: batched(panns, waves, args.batch_size, dev), args.repeats))
        conv = PannsLogmel(args.sr, N_FFT, HOP, N_MELS, FMIN, FMAX).to(dev)
        with torch.no_grad(): conv.spectrogram_extractor.stft.conv_real.weight.mul_(1 + 1e-4)  # not the DFT: conv path
        assert not conv.spectrogram_extractor.stft._weights_are_dft()
        add(f'PannsLogmel batch {args.batch_size} (conv path)', best_time(lambda: batched(conv, waves, args.batch_size, dev), args.repeats))
        fbank = KaldiFbank(args.sr).to(dev)
        add(f'KaldiFbank batch {args.batch_size}', best_time(lambda: batched(fbank, waves, args.batch_size, dev), args.repeats))

        cache_dir = tmp / 'cache'
        t0 = time.perf_counter(); stored = cache_epoch(cache_dir, paths, resp, args.sr, args.batch_size, warm=False, device=dev)
        add('FeatureCache epoch cold (decode+mel+store)', time.perf_counter() - t0, served=stored)
        warm = best_time(lambda: cache_epoch(cache_dir, paths, resp, args.sr, args.batch_size, warm=True), args.repeats)
        served = cache_epoch(cache_dir, paths, resp, args.sr, args.batch_size, warm=True)
        assert served == n, f'warm epoch served {served} of {n} clips'
        add('FeatureCache epoch warm (read from cache)', warm, served=served)
    finally:
        if not args.keep: shutil.rmtree(tmp, ignore_errors=True)

    base = rows[0]['clips_per_s']
    env = dict(device=args.device, batch_size=args.batch_size, duration=args.duration, sr=args.sr,
               librosa=librosa.__version__, cores=os.cpu_count(), **machine_info('fp32'))
    for r in rows: r.update(ratio_vs_librosa=round(r['clips_per_s'] / base, 2), **env)
    print(f"\n{'frontend':<44s} {'clips/s':>9s} {'x librosa':>9s}")
    for r in rows: print(f"{r['name']:<44s} {r['clips_per_s']:9.1f} {r['ratio_vs_librosa']:9.2f}")
    best = max(r['ratio_vs_librosa'] for r in rows if r['name'].startswith(('RespiratoryMel', 'PannsLogmel')))
    print(f"target >= 10x librosa: {'met' if best >= 10 else 'NOT met'} ({best:.1f}x, "
          f"{n} clips, {args.threads} threads)")
    out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
    fields = ['name', 'clips', 'seconds', 'clips_per_s', 'ratio_vs_librosa', 'served', *env]
    with open(out, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=fields); w.writeheader(); w.writerows(rows)
    print(f'wrote {out}')
    return rows


if __name__ == '__main__':
    main()

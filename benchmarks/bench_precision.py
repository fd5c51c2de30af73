"""fp32 vs mixed precision (bf16 autocast on this CPU): accuracy parity and speed of every recipe's demo preset.

Each (recipe, precision, seed) run trains the recipe's `demo` preset from scratch in a fresh run folder (no resume),
with only the precision switched (`amp=False` -> fp32; `amp=True` -> `autocast_dtype(device)`, bf16 on CPUs with
AVX512-BF16/AMX), and records the recipe's own headline metric and the wall time. Every finished run is appended at
once to `benchmarks/results/bench_precision_runs.csv`, so a long table can be filled over several invocations (and
machines: the CPU model and its bf16 flags are in every row). The summary table -- mean ± std per recipe and precision,
the difference, a Welch t statistic, the speed ratio fp32 time / bf16 time, and a verdict -- is printed and written
to `benchmarks/results/bench_precision.csv` and `.md`.

On a CPU without native bf16 (AVX2 only: no AVX512-BF16, no AMX) torch's own bf16 convolutions and matrix products
take slow reference paths (30-100x fp32 here), so `--emulate-bf16` (the default on such a CPU) measures the ACCURACY
of bf16 autocast only: the recipe runs exactly as on a bf16 CPU (`amp=True` -> bf16 autocast, the Trainer's
`mixed_precision` policy), except that every bf16 convolution and matrix product (forward and backward) is computed
as the bf16 units compute it -- bf16 operands, exact products, fp32 sums, the result rounded to bf16 -- by fp32
kernels (`Bf16ViaFp32`, a `TorchDispatchMode`). `tests/test_bench_precision.py` checks that this is what bf16
units compute: the float64 result rounded to bf16, to one bf16 ulp (torch's own slow AVX2 convolution backward is not:
it rounds its column buffers to bf16 before summing them). Flash attention is emulated in fp32 as a whole (bf16
kernels also round its softmax probabilities: within 2^-7 of P @ |V|, tested). Its rows say `bf16=emulated` and the
speed column says 'emulated, not measured'. Each bf16 series (CPU kind, native or emulated bf16, the Trainer's
autocast policy) is compared with the fp32 runs of the same CPU kind and epochs, which depend on neither.

Verdict: `parity` when both precisions have >= 3 seeds and |Δ| <= 2 x its standard error (no detectable difference);
`bf16 worse` / `bf16 better` otherwise; `incomplete` with fewer seeds; `not run` without rows. `paired Δ ± SE` is
shown beside it: the mean and standard error of the per-seed differences (a seed draws the same initial weights and
batches in both precisions), which detects smaller consistent shifts than the Welch rule. A recipe whose demo
preset already defaults to fp32 says so in `default`.

    .venv/bin/python benchmarks/bench_precision.py [--recipes resp-ce resp-mscl sed fewshot ast-vocalsound ast-esc50 psla]
        [--precisions fp32 bf16] [--seeds 0 1 2] [--epochs N] [--summary-only] [--emulate-bf16 | --no-emulate-bf16]
    .venv/bin/python benchmarks/bench_precision.py --cross-eval DIR   # after a run with --runs-dir DIR

`--cross-eval` separates training precision from evaluation precision for the resp-ce runs kept under DIR: every
run's `best.pt` is re-evaluated on the test split with fp32 and with bf16 autocast (same weights), printing both
Scores, the share of test cycles whose predicted class flips, and the largest logit difference
(`benchmarks/results/bench_precision_cross_eval.csv`).
"""
import argparse, contextlib, io, json, math, os, platform, sys, tempfile, time
from dataclasses import replace
from pathlib import Path

RECIPES = ('resp-ce', 'resp-mscl', 'sed', 'fewshot', 'ast-vocalsound', 'ast-esc50', 'psla')
RESULTS = Path(__file__).resolve().parent/'results'
# the Trainer's autocast policy the runs trained under (bump when `soundlab.train.mixed_precision` changes):
# v1 = plain torch autocast (BatchNorm, softmax in bf16 on the CPU); v2 = BatchNorm, norms, softmax and losses in fp32
POLICY = 'v2'


def bf16_via_fp32():
    "A TorchDispatchMode: bf16 convolutions / matrix products computed as bf16 units do (bf16 in, fp32 sums, bf16 out)."
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    aten = torch.ops.aten
    heavy = {aten.convolution.default, aten.convolution_backward.default, aten.mm.default, aten.addmm.default,
             aten.bmm.default, aten.baddbmm.default, aten._scaled_dot_product_flash_attention_for_cpu.default,
             aten._scaled_dot_product_flash_attention_for_cpu_backward.default}
    bf16 = lambda a: isinstance(a, torch.Tensor) and a.dtype == torch.bfloat16
    up = lambda a: a.float() if bf16(a) else a
    down = lambda o: o.to(torch.bfloat16) if isinstance(o, torch.Tensor) and o.dtype == torch.float32 else o

    class Bf16ViaFp32(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func not in heavy or not any(bf16(a) for a in args): return func(*args, **kwargs)
            with torch.autocast('cpu', enabled=False):  # products of bf16 values are exact in fp32; sums in fp32
                out = func(*[up(a) for a in args], **{k: up(v) for k, v in kwargs.items()})
            return type(out)(down(o) for o in out) if isinstance(out, (tuple, list)) else down(out)
    return Bf16ViaFp32()


def emulate_bf16():
    "Make soundlab's `amp=True` pick bf16 autocast on this CPU (as on a CPU with native bf16): this process only."
    import soundlab.core
    soundlab.core.cpu_has_bf16 = lambda: True  # autocast_dtype('cpu') looks it up at call time


def cpu_info() -> dict:
    "CPU model and the flags that decide CPU mixed precision."
    try: text = Path('/proc/cpuinfo').read_text()
    except OSError: text = ''
    model = next((l.split(':', 1)[1].strip() for l in text.splitlines() if l.startswith('model name')), platform.processor())
    flags = set(next((l.split(':', 1)[1].split() for l in text.splitlines() if l.startswith('flags')), []))
    keep = [f for f in ('avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile', 'avx512_fp16', 'avx2', 'fma') if f in flags]
    return dict(cpu=model, cpu_flags=' '.join(keep))


# every runner: (precision amp flag, seed, epochs|None, out_dir) -> (metric value, metric name, default amp of the preset)
def _resp(method):
    def run(amp, seed, epochs, out):
        from soundlab.recipes.respiratory import respiratory_config, load_cycles, run_once
        cfg = respiratory_config('demo', method=method, amp=amp, epochs=epochs, out_dir=out)
        r = run_once(cfg, load_cycles(cfg, progress=False), seed=seed, progress=False)
        return r['score'], 'ICBHI Score (best epoch)', respiratory_config('demo').amp, float(r['history'].seconds.sum())
    return run

def _sed(amp, seed, epochs, out):
    from soundlab.recipes.sed import sed_config, run_sed
    cfg = sed_config('demo', amp=amp, seed=seed, epochs=epochs, out_dir=out)
    r = run_sed(cfg, 'all', progress=False)
    return r[-1]['test_bacc'], 'fine-tuned balanced acc %', sed_config('demo').amp

def _fewshot(amp, seed, epochs, out):
    from soundlab.recipes.fewshot import fewshot_config, run_fewshot
    cfg = fewshot_config('demo', amp=amp, seed=seed, num_epochs=epochs, out_dir=out, progress=False)
    return run_fewshot(cfg)['acc'], 'test accuracy %', fewshot_config('demo').amp

def _ast(task):
    def run(amp, seed, epochs, out):
        from soundlab.recipes.ast import ast_config, run_ast
        r = run_ast(ast_config('demo', task, amp=amp, seed=seed, epochs=epochs, out_dir=out), progress=False)
        value, metric = (r['test_acc'], 'test accuracy %') if task == 'vocalsound' else (r['mean_acc'], 'ESC-10 5-fold accuracy %')
        return value, metric, ast_config('demo', task).amp
    return run

def _psla(amp, seed, epochs, out):
    from soundlab.recipes.psla import psla_config, run_psla
    cfg = psla_config('demo', amp=amp, seed=seed, out_dir=out)
    if epochs: cfg = replace(cfg, epochs=epochs, wa_end=min(cfg.wa_end, epochs), wa_start=min(cfg.wa_start, epochs))
    df = run_psla(cfg, progress=False, verbose=False)['results']['none']
    row = df[(df.model == 'best_single') & (df.set == 'evaluation')].iloc[0]
    return 100 * row.mAP, 'eval mAP % (best single)', psla_config('demo').amp

def preset_default(recipe) -> str:
    "The precision the recipe's demo preset trains at on this CPU ('bf16' if its amp is on and the CPU runs bf16)."
    from soundlab.core import autocast_dtype
    if recipe.startswith('resp'): from soundlab.recipes.respiratory import respiratory_config as f; amp = f('demo').amp
    elif recipe == 'sed': from soundlab.recipes.sed import sed_config as f; amp = f('demo').amp
    elif recipe == 'fewshot': from soundlab.recipes.fewshot import fewshot_config as f; amp = f('demo').amp
    elif recipe == 'psla': from soundlab.recipes.psla import psla_config as f; amp = f('demo').amp
    else: from soundlab.recipes.ast import ast_config as f; amp = f('demo', recipe.split('-')[1]).amp
    return 'bf16' if amp and autocast_dtype('cpu') is not None else 'fp32'

RUNNERS = {'resp-ce': _resp('sl'), 'resp-mscl': _resp('mscl'), 'sed': _sed, 'fewshot': _fewshot,
           'ast-vocalsound': _ast('vocalsound'), 'ast-esc50': _ast('esc50'), 'psla': _psla}


def run_one(recipe, precision, seed, epochs, runs_csv, info, runs_dir=None, emulated=False):
    import pandas as pd, torch
    from soundlab.core import autocast_dtype
    amp = precision != 'fp32'
    if amp and autocast_dtype('cpu') is None:
        raise SystemExit('this CPU has no native bf16: CPU mixed precision is off; --emulate-bf16 measures its accuracy')
    mode = bf16_via_fp32() if amp and emulated else contextlib.nullcontext()
    series = f"{info['cpu']} [{info['cpu_flags']}], bf16 {'emulated' if emulated else 'native'}, policy {POLICY}"
    with (contextlib.nullcontext(str(Path(runs_dir)/recipe/precision/f'seed{seed}')) if runs_dir
          else tempfile.TemporaryDirectory(prefix='bench_precision_')) as out:
        t0, c0 = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()), mode: value, metric, default_amp, *sec = RUNNERS[recipe](amp, seed, epochs, out)
        sec = sec[0] if sec else time.perf_counter() - t0  # the training loop's own epoch times where the recipe gives them
    row = dict(recipe=recipe, precision=precision, seed=seed, epochs=epochs or 'preset', metric=metric, value=float(value),
               seconds=sec, cpu_seconds=time.process_time() - c0, default='bf16' if default_amp else 'fp32',
               threads=torch.get_num_threads(), torch=torch.__version__, **info,
               bf16='emulated' if emulated else 'native', policy=POLICY, series=series)
    print(json.dumps(row), flush=True)
    head = pd.read_csv(runs_csv, nrows=0).columns.tolist() if runs_csv.exists() else None
    if head is None or head == list(row):  # one line: appends do not clash
        pd.DataFrame([row]).to_csv(runs_csv, mode='a', header=head is None, index=False)
    else:  # new columns: the file is rewritten with all of them (older rows leave them empty)
        from soundlab.core import atomic_write
        with atomic_write(runs_csv, suffix='.csv') as tmp: pd.concat([pd.read_csv(runs_csv), pd.DataFrame([row])]).to_csv(tmp, index=False)
    return row


def summarize(runs_csv, recipes) -> 'pd.DataFrame':
    import pandas as pd
    df = pd.read_csv(runs_csv) if runs_csv.exists() else pd.DataFrame(columns=['recipe', 'precision', 'seed', 'epochs', 'metric', 'value', 'seconds', 'cpu', 'cpu_flags', 'series'])
    df['machine'] = df.cpu.astype(str) + ' [' + df.cpu_flags.fillna('').astype(str) + ']'
    rows = []
    for rec in recipes:
        d = df[df.recipe == rec]
        # fp32 rows do not depend on how bf16 ran (native or emulated) nor on the autocast policy: every bf16 series of a
        # machine and epoch count is compared with that machine's fp32 runs
        b = d[d.precision == 'bf16']
        groups = sorted(set(zip(b.epochs.astype(str), b.machine, b.series)))
        lone = set(zip(d.epochs.astype(str), d.machine)) - {g[:2] for g in groups}  # fp32 runs with no bf16 run yet
        groups += sorted((ep, m, f'{m}, fp32 only') for ep, m in lone)
        for ep, mach, ser in (groups or [('-', '', '')]):
            e = d[(d.epochs.astype(str) == ep) & (d.machine == mach) & ((d.precision == 'fp32') | (d.series == ser))]
            s = {p: e[e.precision == p].drop_duplicates('seed', keep='last') for p in ('fp32', 'bf16')}
            n = {p: len(s[p]) for p in s}
            m = {p: s[p].value.mean() if n[p] else math.nan for p in s}
            sd = {p: s[p].value.std(ddof=1) if n[p] > 1 else math.nan for p in s}
            fmt = lambda p: f'{m[p]:.2f} ± {sd[p]:.2f} (n={n[p]})' if n[p] > 1 else (f'{m[p]:.2f} (n=1)' if n[p] else '-')
            delta = m['bf16'] - m['fp32']
            se = math.sqrt(sd['fp32'] ** 2 / max(n['fp32'], 1) + sd['bf16'] ** 2 / max(n['bf16'], 1)) if min(n.values()) > 1 else math.nan
            if not len(e): verdict = 'not run'
            elif min(n.values()) < 3: verdict = 'incomplete'
            elif abs(delta) <= 2 * se: verdict = 'parity'
            else: verdict = 'bf16 worse' if delta < 0 else 'bf16 better'
            common = set(s['fp32'].seed) & set(s['bf16'].seed)  # speed on the same seeds only
            t = {p: s[p][s[p].seed.isin(common)].seconds.mean() for p in s}
            speed = ('emulated, not measured' if 'emulated' in ser else round(t['fp32'] / t['bf16'], 2)) if common else ''
            # the same seed draws the same initial weights and batches in both precisions: the paired differences
            diff = (s['bf16'].set_index('seed').value - s['fp32'].set_index('seed').value).dropna()
            paired = f'{round(diff.mean(), 2) + 0.:+.2f} ± {diff.std(ddof=1) / math.sqrt(len(diff)):.2f} (n={len(diff)})' if len(diff) > 1 else ''
            rows.append({'recipe': rec, 'series': ser, 'metric': e.metric.iloc[0] if len(e) else '', 'epochs': ep,
                         'default': preset_default(rec), 'fp32': fmt('fp32'), 'bf16': fmt('bf16'),
                         'Δ bf16-fp32': round(delta, 2) if not math.isnan(delta) else '', 't (Welch)': round(delta / se, 2) if se and not math.isnan(se) else '',
                         'paired Δ ± SE': paired,
                         'speed bf16/fp32': speed, 'verdict': verdict})
    return pd.DataFrame(rows)


# which recipes' rows decide each demo preset's precision (one preset can serve two rows: the respiratory methods)
PRESET_ROWS = {'respiratory': ('resp-ce', 'resp-mscl'), 'sed': ('sed',), 'fewshot': ('fewshot',),
               'ast-vocalsound': ('ast-vocalsound',), 'ast-esc50': ('ast-esc50',), 'psla': ('psla',)}

def verdicts(table) -> dict:
    """Each recipe's verdict under the newest autocast policy it was measured with (the Trainer's current one where
    measured), over that policy's bf16 series: the worst of them ('bf16 worse' < 'incomplete' < 'parity' < 'bf16 better')."""
    order = ['bf16 worse', 'incomplete', 'parity', 'bf16 better']
    out = {}
    for rec, d in table[~table.series.str.contains('fp32 only') & (table.verdict != 'not run')].groupby('recipe'):
        pol = d.series.str.extract(r'policy (v\d+)')[0]
        out[rec] = min(d[pol == pol.max()].verdict, key=order.index)
    return out

def bf16_defaults(table) -> dict:
    "Demo preset -> whether bf16 (amp) should be its default: no loss shown (parity or better) on every row it serves."
    v = verdicts(table)
    return {preset: all(v.get(r) in ('parity', 'bf16 better') for r in rows) for preset, rows in PRESET_ROWS.items()}


def cross_eval(runs_dir) -> 'pd.DataFrame':
    "Each kept respiratory run's best.pt evaluated in fp32 and in bf16 autocast: does evaluation precision move the Score?"
    import pandas as pd, torch
    from soundlab.recipes.respiratory import respiratory_config, load_cycles, build_model, model_input
    from soundlab.metrics import icbhi_scores
    from soundlab.train import load_checkpoint
    rows = []
    for rec, method in (('resp-ce', 'sl'),):  # supervised runs: best.pt holds the whole classifier
        cks = sorted(Path(runs_dir).glob(f'{rec}/*/seed*/*/seed*/stage1/best.pt'))
        if not cks: continue
        cfg = respiratory_config('demo', method=method); data = load_cycles(cfg, progress=False); te = data['test']
        model = build_model(cfg, n_meta=int(torch.cat([data['train']['meta'], te['meta']]).max()) + 1, n_classes=4)
        prep = model_input(cfg)
        for ck in cks:
            model.load_state_dict(load_checkpoint(ck)['model']); model.eval()
            out = {}
            for prec, ctx in (('fp32', torch.autocast('cpu', enabled=False)), ('bf16', torch.autocast('cpu', dtype=torch.bfloat16))):
                with torch.no_grad(), ctx:
                    out[prec] = torch.cat([model.classify(model.embed(prep(xb))).float() for xb in te['x'].split(32)])
            rows.append(dict(recipe=rec, trained=ck.relative_to(runs_dir).parts[1], seed=ck.relative_to(runs_dir).parts[2],
                             score_eval_fp32=icbhi_scores(te['y'], out['fp32'].argmax(1))['score'],
                             score_eval_bf16=icbhi_scores(te['y'], out['bf16'].argmax(1))['score'],
                             flips_pct=100 * (out['fp32'].argmax(1) != out['bf16'].argmax(1)).float().mean().item(),
                             max_abs_dlogit=(out['fp32'] - out['bf16']).abs().max().item()))
    return pd.DataFrame(rows)


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--recipes', nargs='+', default=list(RECIPES), choices=RECIPES)
    p.add_argument('--precisions', nargs='+', default=['fp32', 'bf16'], choices=['fp32', 'bf16'])
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--epochs', type=int, default=None, help="training epochs (default: the demo preset's)")
    p.add_argument('--runs-dir', default=None, help='keep run folders here (RECIPE/PRECISION/seedN): an interrupted run resumes')
    p.add_argument('--summary-only', action='store_true', help='only rebuild the table from the runs CSV')
    p.add_argument('--cross-eval', default=None, metavar='RUNS_DIR', help="re-evaluate the kept resp-ce runs' best.pt in fp32 and bf16")
    p.add_argument('--emulate-bf16', action=argparse.BooleanOptionalAction, default=None,
                   help='bf16 autocast computed by fp32 kernels (accuracy only); default: on where the CPU lacks native bf16')
    p.add_argument('--policy', choices=['v1', 'v2'], default=POLICY,
                   help="v1: plain torch autocast (BatchNorm, softmax in bf16), to measure what the Trainer's fp32 policy changes")
    p.add_argument('--runs-csv', default=str(RESULTS/'bench_precision_runs.csv'))
    p.add_argument('--out', default=str(RESULTS/'bench_precision.csv'))
    args = p.parse_args()
    os.environ.setdefault('SOUNDLAB_DATA', str(Path(tempfile.gettempdir())/'soundlab_bench_data'))  # synthetic corpora, reused
    import torch
    from soundlab.core import autocast_dtype
    info = cpu_info(); runs_csv = Path(args.runs_csv); runs_csv.parent.mkdir(parents=True, exist_ok=True)
    emulated = autocast_dtype('cpu') is None if args.emulate_bf16 is None else args.emulate_bf16
    if emulated: emulate_bf16()
    if args.policy != POLICY:
        import soundlab.train; soundlab.train._FP32_OPS.clear(); POLICY = args.policy  # mixed_precision = torch.autocast alone
    print(f"{info['cpu']} [{info['cpu_flags']}], {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"CPU mixed precision: {autocast_dtype('cpu')}", flush=True)
    if args.cross_eval:
        ce = cross_eval(args.cross_eval); print(ce.round(3).to_markdown(index=False))
        ce.to_csv(RESULTS/'bench_precision_cross_eval.csv', index=False); raise SystemExit
    if not args.summary_only:
        for rec in args.recipes:
            for seed in args.seeds:
                for prec in args.precisions: run_one(rec, prec, seed, args.epochs, runs_csv, info, args.runs_dir, emulated)
    table = summarize(runs_csv, RECIPES)
    md = table.to_markdown(index=False)
    md += '\n\nbf16 by default (demo presets; parity or better on every row a preset serves, newest policy): ' + ', '.join(
        f'{k} {"yes" if v else "no"}' for k, v in bf16_defaults(table).items())
    print(md)
    table.to_csv(args.out, index=False)
    Path(args.out).with_suffix('.md').write_text(f"{info['cpu']} [{info['cpu_flags']}], torch {torch.__version__}\n\n{md}\n")

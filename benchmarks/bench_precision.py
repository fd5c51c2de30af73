"""fp32 vs mixed precision (bf16 autocast on this CPU): accuracy parity and speed of every recipe's demo preset.

Each (recipe, precision, seed) run trains the recipe's `demo` preset from scratch in a fresh run folder (no resume),
with only the precision switched (`amp=False` -> fp32; `amp=True` -> `autocast_dtype(device)`, bf16 on CPUs with
AVX512-BF16/AMX), and records the recipe's own headline metric and the wall time. Every finished run is appended at
once to `benchmarks/results/bench_precision_runs.csv`, so a long table can be filled over several invocations (and
machines: the CPU model and its bf16 flags are in every row). The summary table -- mean ± std per recipe and precision,
the difference, a Welch t statistic, the speed ratio fp32 time / bf16 time, and a verdict -- is printed and written
to `benchmarks/results/bench_precision.csv` and `.md`.

Verdict: `parity` when both precisions have >= 3 seeds and |Δ| <= 2 x its standard error (no detectable difference);
`bf16 worse` / `bf16 better` otherwise; `incomplete` with fewer seeds; `not run` without rows. A recipe whose demo
preset already defaults to fp32 says so in `default`.

    .venv/bin/python benchmarks/bench_precision.py [--recipes resp-ce resp-mscl sed fewshot ast-vocalsound ast-esc50 psla]
        [--precisions fp32 bf16] [--seeds 0 1 2] [--epochs N] [--summary-only]
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


def run_one(recipe, precision, seed, epochs, runs_csv, info, runs_dir=None):
    import pandas as pd, torch
    from soundlab.core import autocast_dtype
    amp = precision != 'fp32'
    if amp and autocast_dtype('cpu') is None: raise SystemExit('this CPU has no native bf16: CPU mixed precision is off, nothing to compare')
    with (contextlib.nullcontext(str(Path(runs_dir)/recipe/precision/f'seed{seed}')) if runs_dir
          else tempfile.TemporaryDirectory(prefix='bench_precision_')) as out:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()): value, metric, default_amp, *sec = RUNNERS[recipe](amp, seed, epochs, out)
        sec = sec[0] if sec else time.perf_counter() - t0  # the training loop's own epoch times where the recipe gives them
    row = dict(recipe=recipe, precision=precision, seed=seed, epochs=epochs or 'preset', metric=metric, value=float(value),
               seconds=sec, default='bf16' if default_amp else 'fp32', threads=torch.get_num_threads(), torch=torch.__version__, **info)
    print(json.dumps(row), flush=True)
    pd.DataFrame([row]).to_csv(runs_csv, mode='a', header=not runs_csv.exists(), index=False)  # one line: appends do not clash
    return row


def summarize(runs_csv, recipes) -> 'pd.DataFrame':
    import pandas as pd
    df = pd.read_csv(runs_csv) if runs_csv.exists() else pd.DataFrame(columns=['recipe', 'precision', 'seed', 'epochs', 'value', 'seconds'])
    rows = []
    for rec in recipes:
        d = df[df.recipe == rec]
        for ep in (sorted(d.epochs.astype(str).unique()) or ['-']):
            e = d[d.epochs.astype(str) == ep]
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
            rows.append({'recipe': rec, 'metric': e.metric.iloc[0] if len(e) else '', 'epochs': ep,
                         'default': preset_default(rec), 'fp32': fmt('fp32'), 'bf16': fmt('bf16'),
                         'Δ bf16-fp32': round(delta, 2) if not math.isnan(delta) else '', 't (Welch)': round(delta / se, 2) if se and not math.isnan(se) else '',
                         'speed bf16/fp32': round(t['fp32'] / t['bf16'], 2) if common else '', 'verdict': verdict})
    return pd.DataFrame(rows)


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
    p.add_argument('--runs-csv', default=str(RESULTS/'bench_precision_runs.csv'))
    p.add_argument('--out', default=str(RESULTS/'bench_precision.csv'))
    args = p.parse_args()
    os.environ.setdefault('SOUNDLAB_DATA', str(Path(tempfile.gettempdir())/'soundlab_bench_data'))  # synthetic corpora, reused
    import torch
    from soundlab.core import autocast_dtype
    info = cpu_info(); runs_csv = Path(args.runs_csv); runs_csv.parent.mkdir(parents=True, exist_ok=True)
    print(f"{info['cpu']} [{info['cpu_flags']}], {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"CPU mixed precision: {autocast_dtype('cpu')}", flush=True)
    if args.cross_eval:
        ce = cross_eval(args.cross_eval); print(ce.round(3).to_markdown(index=False))
        ce.to_csv(RESULTS/'bench_precision_cross_eval.csv', index=False); raise SystemExit
    if not args.summary_only:
        for rec in args.recipes:
            for seed in args.seeds:
                for prec in args.precisions: run_one(rec, prec, seed, args.epochs, runs_csv, info, args.runs_dir)
    table = summarize(runs_csv, RECIPES)
    md = table.to_markdown(index=False)
    print(md)
    table.to_csv(args.out, index=False)
    Path(args.out).with_suffix('.md').write_text(f"{info['cpu']} [{info['cpu_flags']}], torch {torch.__version__}\n\n{md}\n")

#!/usr/bin/env python
"""One prepared GPU check: every CUDA path of soundlab tested, and every recipe's training step timed, in a few minutes.

    python tools/gpu_check.py             # on a machine with CUDA (`make gpu-check`): under 8 minutes on one H100
    python tools/gpu_check.py --dry-run   # on the CPU (`make gpu-check-dry`, and CI through tests/test_gpu_check.py)
    bash tools/gpu_check.sh               # on a machine you cannot install on: finds a Python with torch + CUDA

Steps, each with a time budget (the elapsed time is printed after each):

1. environment: GPU model, driver, CUDA, cuDNN, NCCL, torch, and soundlab's machine info (`soundlab.core.machine_info`);
2. configs: every recipe's `smoke` preset with device='cuda' and the seed-size timing configs are built and checked
   against the seeds' sizes (CNN6 8-s cycles batch 128; AST base384 ESC-50 batch 48 at 512 frames; EfficientNet-B2
   PSLA batch 24 at 3000 frames; the few-shot Hybrid 5-way 5-shot 5-query episode; SimCLR ResNet-18 batch 128);
3. models: each seed-size network built on the meta device; its FLOPs per training step (torch.utils.flop_counter);
4. tests: `pytest -m cuda` over the test files that hold `cuda`-marked tests (tests/test_cuda.py: smoke epochs,
   AST fp16 vs fp32, released files vs the CPU pins, device fbank vs cache, 1-process NCCL torchrun, pinned loaders);
5. ceilings: the card's measured matrix-product TFLOP/s at fp32 / tf32 / bf16 / fp16;
6. timing: one training step per recipe at the seed's batch and input length, soundlab's step and a seed-style step
   (benchmarks/bench_train.py: `seed_step_table`), at every precision the card runs natively: examples/s, FLOPs, the
   fraction of the card's dense peak (GPU_PEAKS: datasheet, named in each row) and of the measured ceiling, peak memory;
7. data loading: the share of the training loop's wall time spent waiting for the next batch, with each recipe's real
   dataset and loader (synthetic corpora in the datasets' layouts, the seed's batch and input length);
8. results: gpu_check.csv (timing rows, with the environment in every row), gpu_check_tests.csv (every check and its
   outcome), gpu_check.md (the tables) and gpu_check.log, in benchmarks/results/ (dry run: a temporary folder).

With --dry-run (no CUDA needed) steps 1-3 run as on a GPU, step 4 collects the tests and lists them as skipped, step 5
is listed as skipped, steps 6-7 run the same harness at tiny sizes on the CPU in fp32; every step's results are
checked. The exit status is 1 if any check failed.
"""
import argparse, json, os, platform, shutil, subprocess, sys, tempfile, time, traceback
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / 'benchmarks')]

# seconds per step on one H100 (the whole check: 8 minutes); a step past its budget is reported, timing rows past the
# end of theirs are skipped (and listed), the tests' subprocess is stopped at 1.5x its budget
BUDGET = dict(environment=10, configs=15, models=35, tests=210, ceilings=15, timing=140, loading=50, results=5)
DRY_BUDGET = dict(environment=10, configs=60, models=60, tests=90, ceilings=1, timing=90, loading=90, results=5)  # a loaded 2-core CPU


class Check:
    "Collects what was checked (passed / failed / skipped), prints as it goes and keeps a log."
    def __init__(self, log_path:Path|None=None):
        self.t0, self.rows, self.log_lines = time.time(), [], []
    def say(self, msg:str=''):
        line = f'[{time.time() - self.t0:6.1f} s] {msg}'; print(line, flush=True); self.log_lines.append(line)
    def add(self, step:str, check:str, status:str, detail:str='', seconds:float=float('nan')):
        self.rows.append(dict(step=step, check=check, status=status, detail=str(detail)[:500], seconds=round(seconds, 2)))
        if status == 'failed': self.say(f'  FAILED {check}: {detail}')
    def expect(self, step:str, check:str, ok:bool, detail:str=''):
        self.add(step, check, 'passed' if ok else 'failed', detail)
        return ok
    @property
    def failed(self) -> list: return [r for r in self.rows if r['status'] == 'failed']


def environment(dev) -> dict:
    "Where the numbers were measured: soundlab's machine info + GPU model, driver, CUDA, cuDNN, NCCL."
    import torch
    from soundlab.core import machine_info
    info = dict(machine_info()) | dict(python=platform.python_version(), cuda_runtime=torch.version.cuda or '',
                                       cudnn=str(torch.backends.cudnn.version() or ''), soundlab_commit=_git_commit())
    if dev.type == 'cuda':
        p = torch.cuda.get_device_properties(dev)
        info |= dict(gpu=p.name, gpu_capability=f'{p.major}.{p.minor}', gpu_sms=p.multi_processor_count,
                     gpu_memory_gib=round(p.total_memory / 2**30, 1), driver=_driver(), gpu_count=torch.cuda.device_count(),
                     nccl='.'.join(map(str, torch.cuda.nccl.version())) if hasattr(torch.cuda, 'nccl') else '')
    else: info |= dict(gpu='none (dry run on the CPU)', driver='', gpu_count=0)
    return info


def _driver() -> str:
    try: return subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'], capture_output=True,
                               text=True, timeout=20).stdout.split('\n')[0].strip() or 'unknown'
    except Exception: pass
    try:
        import pynvml; pynvml.nvmlInit(); v = pynvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else v
    except Exception: return 'unknown'


def _git_commit() -> str:
    try: return subprocess.run(['git', '-C', str(REPO), 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception: return ''


# ---- the steps -------------------------------------------------------------------------------------------------

SEED_SIZES = {  # what each timing config must hold: the seeds' own batch sizes and input lengths
    'respiratory': dict(backbone='cnn6', bs=128, duration=8.0),
    'ast': dict(model_size='base384', fstride=10, tstride=10, target_length=512, num_mel_bins=128, bs=48, task='esc50'),
    'psla': dict(b=2, head_num=4, target_length=3000, bs=24, model_mode='reference'),
    'fewshot': dict(encoder_name='Hybrid', n_way_train=5, n_shot_train=5, n_query_train=5, use_attention=True),
    'sed': dict(arch='resnet18', bs=128, patch_len=101, view_passes=2),
}

def step_configs(ck:Check, dev, dry:bool):
    "Every recipe's smoke preset on CUDA and the seed-size timing configs build; the timing configs hold the seeds' sizes."
    import bench_train as bt
    from soundlab.recipes.respiratory import respiratory_config
    from soundlab.recipes.sed import sed_config
    from soundlab.recipes.fewshot import fewshot_config, experiment
    from soundlab.recipes.ast import ast_config
    from soundlab.recipes.psla import psla_config
    smoke = dict(respiratory=lambda: respiratory_config('smoke', method='sl', device='cuda'), sed=lambda: sed_config('smoke', device='cuda'),
                 fewshot=lambda: fewshot_config('smoke', device='cuda'), ast=lambda: ast_config('smoke', 'esc50', device='cuda'),
                 psla=lambda: psla_config('smoke', device='cuda'))
    for name, make in smoke.items():
        try: cfg = make(); ck.expect('configs', f'{name} smoke preset, device=cuda', cfg.device == 'cuda', repr(cfg)[:200])
        except Exception as e: ck.add('configs', f'{name} smoke preset, device=cuda', 'failed', f'{type(e).__name__}: {e}')
    for recipe, want in SEED_SIZES.items():
        try:
            cfg = bt.SETUPS[recipe](False)
            have = experiment(cfg) if recipe == 'fewshot' else vars(cfg)
            off = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
            ck.expect('configs', f'{recipe} timing config at the seed size', not off, f'differs (have, want): {off}' if off else bt.describe(recipe))
        except Exception as e: ck.add('configs', f'{recipe} timing config at the seed size', 'failed', f'{type(e).__name__}: {e}')


def step_models(ck:Check, dev, dry:bool) -> dict:
    "Each seed-size network on the meta device: FLOPs per training step (forward + backward)."
    import bench_train as bt
    flops = {}
    for recipe in bt.STEP_RECIPES:
        t0 = time.time()
        try:
            flops[recipe] = bt.step_flops(recipe)
            ok = flops[recipe] > 1e10  # every seed-size step is at least tens of GFLOPs
            ck.add('models', f'{recipe} network at the seed size on the meta device', 'passed' if ok else 'failed',
                   f'{flops[recipe] / 1e12:.3f} TFLOP per step', time.time() - t0)
            ck.say(f'  {recipe:11s} {flops[recipe] / 1e12:8.3f} TFLOP per training step ({time.time() - t0:.1f} s)')
        except Exception as e: ck.add('models', f'{recipe} network at the seed size on the meta device', 'failed', f'{type(e).__name__}: {e}')
    return flops


def cuda_test_files() -> list:
    "The test files holding `cuda`-marked tests."
    return sorted(str(p.relative_to(REPO)) for p in (REPO / 'tests').glob('test_*.py')
                  if 'mark.cuda' in (t := p.read_text()) or 'pytest.mark.cuda' in t)


def step_tests(ck:Check, dev, dry:bool, out:Path, budget:float, extra:list):
    "pytest -m cuda over the files with cuda-marked tests; one check per test (dry run: each listed as skipped)."
    files = cuda_test_files(); xml = out / 'gpu_check_pytest.xml'
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]), 'PYTHONUNBUFFERED': '1'}
    env.pop('SOUNDLAB_CUDA_REHEARSAL', None)
    with tempfile.TemporaryDirectory(prefix='gpu-check-tests-') as tmp:
        env['TMPDIR'] = tmp
        cmd = [sys.executable, '-m', 'pytest', '-m', 'cuda', '-q', '-rA', '-s', '-p', 'no:cacheprovider', f'--junitxml={xml}', *extra, *files]
        ck.say('  ' + ' '.join(cmd[2:]))
        t0 = time.time()
        try:
            p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1.5 * budget)
            rc, output = p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            rc, output = 'timeout', (e.stdout or b'').decode(errors='replace') if isinstance(e.stdout, bytes) else (e.stdout or '')
    (out / 'gpu_check_pytest.log').write_text(output)
    lines = output.strip().splitlines()
    for line in lines[-1:] + [l for l in lines[:-1] if any(w in l for w in (' on cuda', ' on cpu', 'smoke', 'max|d|', 'fp16', 'torchrun', 'copies', 'PASSED', 'FAILED', 'ERROR'))]:
        ck.say('    ' + line[:200])
    cases = _junit(xml) if xml.exists() else []
    xml.unlink(missing_ok=True)
    for c in cases:
        if dry and c['status'] != 'skipped': c = c | dict(status='failed', detail=f"ran without CUDA ({c['status']}): {c['detail']}")
        ck.add('tests', c['name'], c['status'], c['detail'], c['seconds'])
    ck.expect('tests', f'pytest -m cuda {" ".join(files)}', rc in (0, 5) if dry else rc == 0 and len(cases) > 0,
              f'exit status {rc}, {len(cases)} tests, {time.time() - t0:.0f} s (log: gpu_check_pytest.log)')
    if not any('test_cuda.py' in c['name'] for c in cases): ck.add('tests', 'tests/test_cuda.py collected', 'failed', 'no test of it ran or was collected')


def _junit(path:Path) -> list:
    out = []
    for tc in ET.parse(path).getroot().iter('testcase'):
        name = f"{tc.get('classname', '').replace('.', '/')}.py::{tc.get('name')}"
        status, detail = 'passed', ''
        for kind in ('failure', 'error', 'skipped'):
            el = tc.find(kind)
            if el is not None:
                status = 'skipped' if kind == 'skipped' else 'failed'; detail = (el.get('message') or el.text or '')[:400]; break
        out.append(dict(name=name, status=status, detail=detail, seconds=float(tc.get('time') or 0)))
    return out


def step_ceilings(ck:Check, dev, dry:bool) -> dict:
    "Measured matmul TFLOP/s at each precision the card runs natively (8192^3, random data, median of 5)."
    import bench_train as bt
    if dry:
        ck.add('ceilings', 'matmul ceilings (fp32, tf32, bf16, fp16)', 'skipped', 'needs CUDA'); return {}
    out = {}
    for p in bt.STEP_PRECISIONS:
        if not bt.precision_applies(p, dev): continue
        try:
            out[p] = bt.matmul_ceiling(dev, p); peak, which = bt.gpu_peak(environment_gpu(dev), p)
            ck.add('ceilings', f'{p} matmul 8192^3', 'passed', f'{out[p]:.0f} TFLOP/s = {100 * out[p] / peak:.0f} % of {which}')
            ck.say(f'  {p:4s} matmul {out[p]:7.1f} TFLOP/s ({100 * out[p] / peak:.0f} % of {which})')
        except Exception as e: ck.add('ceilings', f'{p} matmul 8192^3', 'failed', f'{type(e).__name__}: {e}')
    return out


def environment_gpu(dev) -> str:
    import torch
    return torch.cuda.get_device_name(dev) if dev.type == 'cuda' else ''


def step_timing(ck:Check, dev, dry:bool, budget:float, recipes, precisions, ceilings:dict):
    "bench_train.seed_step_table: one row per recipe x precision x set-up (dry run: tiny sizes, fp32, on the CPU)."
    import bench_train as bt
    warmup, steps = (1, 1) if dry else (2, 5)
    df = bt.seed_step_table(dev, recipes, ['fp32'] if dry else precisions, small=dry, warmup=warmup, steps=steps,
                            deadline=time.time() + budget, ceilings=ceilings, log=ck.say)
    for r in df.itertuples():
        name = f'step timing: {r.recipe} {r.setup} {r.precision}'
        if r.status == 'ok':
            good = r.step_s > 0 and r.samples_per_s > 0 and (dry or r.peak_mem_gib > 0)
            ck.add('timing', name, 'passed' if good else 'failed', f'{r.samples_per_s:.1f} examples/s, {r.step_s * 1e3:.1f} ms/step', r.seconds)
        else: ck.add('timing', name, 'skipped' if r.status.startswith('skipped') else 'failed', r.status, getattr(r, 'seconds', float('nan')))
    return df


def step_loading(ck:Check, dev, dry:bool, budget:float, recipes, workers:list) -> list:
    "bench_train.loading_share for each recipe (its own precision on CUDA; dry run: tiny, fp32, on the CPU)."
    import bench_train as bt
    rows, end = [], time.time() + budget
    for recipe in recipes:
        for nw in workers:
            name = f'data loading: {recipe}, {nw} workers'
            if time.time() > end: ck.add('loading', name, 'skipped', 'over the time budget'); continue
            t0 = time.time(); prec = 'fp32' if dry else bt.SEED_PRECISION[recipe]
            try:
                r = bt.loading_share(recipe, dev, prec, n_batches=2 if dry else 6, warmup=1 if dry else 2, num_workers=nw, small=dry)
                rows.append(r | dict(seconds=time.time() - t0))
                ok = 0 <= r['data_wait_share'] <= 1 and r['batches'] >= 1
                ck.add('loading', name, 'passed' if ok else 'failed', f"waiting for data {100 * r['data_wait_share']:.1f} % of "
                       f"{r['s_per_step_with_data'] * 1e3:.0f} ms/step ({r['samples_per_s_with_data']:.1f} examples/s)", time.time() - t0)
                ck.say(f"  {recipe:11s} {nw} workers: waiting for data {100 * r['data_wait_share']:5.1f} % of the loop, "
                       f"{r['samples_per_s_with_data']:8.1f} examples/s with data ({time.time() - t0:.1f} s)")
            except Exception as e:
                ck.add('loading', name, 'failed', f'{type(e).__name__}: {e}', time.time() - t0); ck.say(traceback.format_exc(limit=3))
    return rows


def write_results(ck:Check, out:Path, env:dict, timing, loading:list, flops:dict, dry:bool) -> list:
    "gpu_check.csv (timing + environment), gpu_check_tests.csv, gpu_check.md; returns the files written."
    import pandas as pd
    import bench_train as bt
    out.mkdir(parents=True, exist_ok=True)
    t = timing.copy() if timing is not None else pd.DataFrame()
    ld = pd.DataFrame(loading)
    if len(t) and len(ld):  # the loading share joins the soundlab row at the precision it was measured in (first worker count)
        first = ld.drop_duplicates('recipe').set_index('recipe')
        for col in ('data_wait_share', 'samples_per_s_with_data', 'num_workers'):
            t[col] = [first[col].get(r.recipe) if r.setup == 'soundlab' and r.precision == first['precision'].get(r.recipe) else None
                      for r in t.itertuples()]
    files = [out / 'gpu_check.csv', out / 'gpu_check_tests.csv', out / 'gpu_check.md']
    t.assign(**{k: str(v) for k, v in env.items()}, dry_run=dry).to_csv(files[0], index=False)
    tests = pd.DataFrame(ck.rows); tests.to_csv(files[1], index=False)
    md = [f"# soundlab GPU check{' (DRY RUN on the CPU: tiny sizes, no CUDA)' if dry else ''}", '',
          ' | '.join(f'{k}: {env.get(k, "")}' for k in ('gpu', 'driver', 'cuda_runtime', 'cudnn', 'nccl', 'torch', 'cpu', 'soundlab_commit') if k in env), '',
          f"{(tests.status == 'passed').sum()} checks passed, {(tests.status == 'failed').sum()} failed, {(tests.status == 'skipped').sum()} skipped "
          f"(gpu_check_tests.csv lists each); {time.time() - ck.t0:.0f} s in all.", '']
    if len(t) and 'step_s' in t:
        cols = [c for c in ('recipe', 'setup', 'precision', 'batch', 'samples_per_s', 'step_s', 'x_seed_style', 'tflop_per_step',
                            'achieved_tflops', 'fraction_of_peak', 'fraction_of_matmul_ceiling', 'peak_mem_gib', 'status') if c in t]
        md += ['## One training step at the seed\'s batch and input length', '',
               t[cols].to_markdown(index=False, floatfmt='.3g'), '',
               'Steps: ' + '; '.join(f'**{r}**: {bt.describe(r, dry)}' for r in t.recipe.unique()), '',
               'Peaks (`fraction_of_peak`): ' + '; '.join(sorted({str(p) for p in t.get('peak', pd.Series(dtype=str)).dropna()})) +
               '. `fraction_of_matmul_ceiling`: of the 8192^3 matrix product measured on this card at the same precision. FLOPs: '
               'the network\'s forward + backward products, convolutions and attention (torch.utils.flop_counter, meta device).', '']
    if len(ld):
        md += ['## Data loading with the recipes\' real datasets and loaders', '',
               ld[[c for c in ('recipe', 'precision', 'num_workers', 'batch', 'batches', 's_per_step_with_data', 'samples_per_s_with_data',
                               'data_wait_share') if c in ld]].to_markdown(index=False, floatfmt='.3g'), '',
               '`data_wait_share`: the share of the training loop\'s wall time spent in `next()` on the loader (the Trainer waits '
               'for each step to finish, so the rest is the step itself).', '']
    failed = tests[tests.status == 'failed']
    if len(failed): md += ['## Failed', '', failed.to_markdown(index=False), '']
    files[2].write_text('\n'.join(md) + '\n')
    return files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument('--dry-run', action='store_true', help='on the CPU: every step that needs no CUDA, the rest listed as skipped')
    ap.add_argument('--out', default=None, help='results folder (default: benchmarks/results; dry run: a new temporary folder)')
    ap.add_argument('--copy-to', default=None, help='also copy the result files there (e.g. the folder a remote runner sends back)')
    ap.add_argument('--only', nargs='+', default=None, choices=list(BUDGET), help='run only these steps (environment always runs)')
    ap.add_argument('--recipes', nargs='+', default=None, help='timing / loading: these recipes (default: all five)')
    ap.add_argument('--precisions', nargs='+', default=None, help='timing: these precisions (default: fp32 tf32 bf16 fp16)')
    ap.add_argument('--loader-workers', nargs='+', type=int, default=[0], help='loading: DataLoader workers to try (default: 0, the recipes\')')
    ap.add_argument('--budget-scale', type=float, default=1., help='multiply every step budget (a slower card)')
    ap.add_argument('--pytest-args', nargs=argparse.REMAINDER, default=[], help='more pytest arguments (last on the line)')
    a = ap.parse_args(argv)
    import torch
    dry = a.dry_run
    if not dry and not torch.cuda.is_available():
        print('gpu_check: no CUDA device here (torch', torch.__version__, 'built for CUDA', torch.version.cuda, '); run with --dry-run on a CPU',
              file=sys.stderr); return 2
    import bench_train as bt
    out = Path(a.out) if a.out else (Path(tempfile.mkdtemp(prefix='gpu-check-dry-')) if dry else REPO / 'benchmarks' / 'results')
    out.mkdir(parents=True, exist_ok=True)
    budget = {k: v * a.budget_scale for k, v in (DRY_BUDGET if dry else BUDGET).items()}
    dev = torch.device('cpu' if dry else 'cuda')
    recipes, precisions = a.recipes or list(bt.STEP_RECIPES), a.precisions or list(bt.STEP_PRECISIONS)
    ck = Check(); timing, loading, flops, env, ceilings = None, [], {}, {}, {}
    data = tempfile.mkdtemp(prefix='gpu-check-data-')  # the synthetic corpora and caches of the loading step
    os.environ['SOUNDLAB_DATA'] = data
    want = lambda s: a.only is None or s in a.only or s in ('environment', 'results')
    try:
        for name in BUDGET:
            if not want(name): ck.add(name, f'step {name}', 'skipped', 'not asked for (--only)'); continue
            ck.say(f'{name} (budget {budget[name]:.0f} s){" [dry run]" if dry else ""}')
            t0 = time.time()
            try:
                if name == 'environment':
                    env = environment(dev); ck.say('  ' + json.dumps(env))
                elif name == 'configs': step_configs(ck, dev, dry)
                elif name == 'models': flops = step_models(ck, dev, dry)
                elif name == 'tests': step_tests(ck, dev, dry, out, budget['tests'], a.pytest_args)
                elif name == 'ceilings': ceilings = step_ceilings(ck, dev, dry)
                elif name == 'timing': timing = step_timing(ck, dev, dry, budget['timing'], recipes, precisions, ceilings)
                elif name == 'loading': loading = step_loading(ck, dev, dry, budget['loading'], recipes, a.loader_workers)
                elif name == 'results':
                    files = write_results(ck, out, env, timing, loading, flops, dry)
                    ck.expect('results', 'result files written', all(f.stat().st_size > 0 for f in files), ', '.join(f.name for f in files))
            except Exception as e:
                ck.add(name, f'step {name}', 'failed', f'{type(e).__name__}: {e}'); ck.say(traceback.format_exc())
            dt = time.time() - t0
            over = f' -- OVER its budget of {budget[name]:.0f} s' if dt > budget[name] else ''
            ck.say(f'{name}: {dt:.1f} s{over}')
    finally:
        shutil.rmtree(data, ignore_errors=True)
    skipped = [r for r in ck.rows if r['status'] == 'skipped']
    ck.say(f"done in {time.time() - ck.t0:.0f} s: {sum(r['status'] == 'passed' for r in ck.rows)} passed, {len(ck.failed)} failed, "
           f'{len(skipped)} skipped; results in {out}')
    for r in skipped: ck.say(f"  skipped: {r['check']} ({r['detail']})")
    for r in ck.failed: ck.say(f"  FAILED: {r['step']}: {r['check']}: {r['detail']}")
    (out / 'gpu_check.log').write_text('\n'.join(ck.log_lines) + '\n')
    if a.copy_to:
        Path(a.copy_to).mkdir(parents=True, exist_ok=True)
        for f in ('gpu_check.csv', 'gpu_check_tests.csv', 'gpu_check.md', 'gpu_check.log', 'gpu_check_pytest.log'):
            if (out / f).exists(): shutil.copy2(out / f, Path(a.copy_to) / f)
    return 1 if ck.failed else 0


if __name__ == '__main__':
    sys.exit(main())

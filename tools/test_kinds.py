"""The equality tests under every CPU kernel family this machine can reach: max |difference|, tolerance and margin.

`make test-kinds` (not part of `make test`: CI runs the native kernels only) runs the tests that compare soundlab with
pinned reference numbers or with another computation of the same thing (`EQUALITY_TESTS`) once per setting:

- native (nothing set);
- `ATEN_CPU_CAPABILITY=default | avx2 | avx512`: ATen's own vector kernels (elementwise ops, reductions, softmax, ...);
- `ONEDNN_MAX_CPU_ISA=AVX2 | AVX512_CORE | <native>`: oneDNN's convolutions and matmuls (AMX / AVX512-BF16 or not);
- `MKL_CBWR=COMPATIBLE | AVX2 | AVX512`: MKL's code branch (FFT, sgemm), which differs between Intel and AMD CPUs.

Each test measures its differences through `tests/conftest.py::check_close`, which appends them to the file named by
`SOUNDLAB_TEST_DELTAS`. Before running a setting, a probe in a subprocess records which kernels actually ran: ATen's
capability (`torch.backends.cpu.get_cpu_capability()`), oneDNN's ISA (the `isa:` line of `ONEDNN_VERBOSE=1`) and MKL's
branch (the `CNR:` field of `MKL_VERBOSE=1`). A setting this CPU cannot honour is not run and the table says so:
ATen reports `AVX512` when asked for it even on a CPU without AVX-512 (its kernels then die with SIGILL), oneDNN
and MKL fall back silently to what the CPU has. A setting whose kernels are those of an earlier one is not rerun.

Writes `benchmarks/results/test_kinds.csv` (one row per setting x test x quantity) and `test_kinds.md` (the CPU
model and flags, what each setting ran, and per quantity its tolerance and the max |difference| / margin under
each setting), and prints the Markdown.

    .venv/bin/python tools/test_kinds.py [--settings native mkl-compatible ...] [--tests PYTEST_ARGS...] [--list]
"""
import argparse, json, os, re, subprocess, sys, tempfile, time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO/'benchmarks'/'results'

EQUALITY_TESTS = [  # every test that checks an equality against pins or another computation (see README, Conformance)
    'tests/test_conformance_respiratory.py', 'tests/test_conformance_sed.py', 'tests/test_conformance_fewshot.py',
    'tests/test_psla_conformance.py', 'tests/test_ast_conformance.py',
    'tests/test_ddp.py::test_ddp_matches_single_process', 'tests/test_resume.py::test_sigkill_mid_epoch_then_resume',
    'tests/test_resume.py::test_corrupt_cache_shard_is_rebuilt', 'tests/test_determinism.py',
    'tests/test_run_ast.py::test_esc50_feature_modes_train_alike']
DESELECT = ['tests/test_conformance_respiratory.py::test_run_icbhi_keeps_past_end_cycle_and_selects_on_val']  # a notebook run

# (name, environment); 'onednn-native' gets the ISA oneDNN picks natively (filled in by `settings`)
SETTINGS = [('native', {}),
            ('aten-default', {'ATEN_CPU_CAPABILITY': 'default'}), ('aten-avx2', {'ATEN_CPU_CAPABILITY': 'avx2'}),
            ('aten-avx512', {'ATEN_CPU_CAPABILITY': 'avx512'}),
            ('onednn-avx2', {'ONEDNN_MAX_CPU_ISA': 'AVX2'}), ('onednn-avx512_core', {'ONEDNN_MAX_CPU_ISA': 'AVX512_CORE'}),
            ('onednn-native', {'ONEDNN_MAX_CPU_ISA': None}),
            ('mkl-compatible', {'MKL_CBWR': 'COMPATIBLE'}), ('mkl-avx2', {'MKL_CBWR': 'AVX2'}), ('mkl-avx512', {'MKL_CBWR': 'AVX512'})]
KERNEL_ENV = ('ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA', 'MKL_CBWR', 'MKL_ENABLE_INSTRUCTIONS', 'DNNL_MAX_CPU_ISA')

# oneDNN's `isa:` description -> the ONEDNN_MAX_CPU_ISA value that selects it
ONEDNN_ISA = [('AMX', 'AVX512_CORE_AMX'), ('bfloat16', 'AVX512_CORE_BF16'), ('DL Boost', 'AVX512_CORE_VNNI'),
              ('AVX-512', 'AVX512_CORE'), ('AVX2', 'AVX2'), ('AVX', 'AVX'), ('SSE', 'SSE41')]
ATEN_NEEDS = {'avx2': {'avx2', 'fma'}, 'avx512': {'avx512f', 'avx512bw', 'avx512vl', 'avx512dq'}}

PROBE = r'''
import torch
x = torch.randn(2, 3, 16, 16); w = torch.randn(4, 3, 3, 3)
torch.nn.functional.conv2d(x, w)                      # oneDNN
a = torch.randn(64, 64); a @ a                        # MKL sgemm
torch.fft.rfft(torch.randn(1024))                     # MKL DFT
print('ATEN=' + torch.backends.cpu.get_cpu_capability())
'''


def cpu() -> tuple[str, set]:
    text = Path('/proc/cpuinfo').read_text() if Path('/proc/cpuinfo').exists() else ''
    model = next((l.split(':', 1)[1].strip() for l in text.splitlines() if l.startswith('model name')), 'unknown CPU')
    flags = set(next((l.split(':', 1)[1].split() for l in text.splitlines() if l.startswith('flags')), []))
    return model, flags


def clean_env(extra:dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_ENV}
    return env | {k: v for k, v in extra.items() if v is not None}


def probe(extra:dict) -> dict:
    "Which kernels ran under `extra`: ATen capability, oneDNN ISA, MKL branch (or the signal that killed the probe)."
    env = clean_env(extra) | {'ONEDNN_VERBOSE': '1', 'MKL_VERBOSE': '1', 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-c', PROBE], env=env, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    aten = re.search(r'ATEN=(\S+)', out); isa = re.search(r'onednn_verbose,.*,info,cpu,isa:([^\n]+)', out)
    cnr = re.search(r'CNR:(\w+)', out)
    return dict(aten=aten.group(1) if aten else f'died (exit {r.returncode})', onednn=isa.group(1).strip() if isa else '?',
                mkl=cnr.group(1) if cnr else '?')


def settings(flags:set) -> list[dict]:
    "Every setting with what it asked for, what ran, and whether it is run ('run', or why not)."
    native = probe({})
    onednn_native = next((v for k, v in ONEDNN_ISA if k in native['onednn']), 'ALL')
    rows, seen = [], {}
    for name, extra in SETTINGS:
        extra = {k: (onednn_native if name == 'onednn-native' else v) for k, v in extra.items()}
        asked = ' '.join(f'{k}={v}' for k, v in extra.items()) or '(nothing set)'
        cap = extra.get('ATEN_CPU_CAPABILITY')
        missing = sorted(ATEN_NEEDS.get(cap, set()) - flags) if cap else []
        if missing:  # torch believes the variable and would die with SIGILL in the first vector kernel
            rows.append(dict(setting=name, env=extra, asked=asked, ran='-', status=f'not reachable: the CPU lacks {" ".join(missing)}'))
            continue
        ran = probe(extra); key = (ran['aten'], ran['onednn'], ran['mkl'])
        ran_s = f"ATen {ran['aten']}; oneDNN {ran['onednn']}; MKL CNR {ran['mkl']}"
        if key in seen:
            why = 'same kernels as native' if seen[key] == 'native' else f'same kernels as {seen[key]}'
            status = f'not rerun: {why}'
            if name.startswith('onednn-') and extra['ONEDNN_MAX_CPU_ISA'].upper() not in native['onednn'].upper().replace('-', '').replace(' ', '_') \
               and name != 'onednn-native' and ran['onednn'] == native['onednn'] and extra['ONEDNN_MAX_CPU_ISA'] != onednn_native:
                status = f"not reachable: oneDNN ran {ran['onednn']} (the CPU's widest)"
            if name.startswith('mkl-') and ran['mkl'] != extra['MKL_CBWR']:
                status += f" (MKL ran branch {ran['mkl']}: {extra['MKL_CBWR']} is not available on this CPU)"
        else:
            seen[key] = name; status = 'run'
            if name.startswith('mkl-') and ran['mkl'] != extra['MKL_CBWR']:
                status = f"run (MKL ran branch {ran['mkl']}: {extra['MKL_CBWR']} is not available on this CPU)"
        rows.append(dict(setting=name, env=extra, asked=asked, ran=ran_s, status=status))
    return rows


def run_tests(setting:dict, tests:list, work:Path) -> tuple[list, dict, float]:
    "pytest under the setting: the recorded differences, each test's outcome, and the CPU seconds it took."
    deltas, junit = work/f"{setting['setting']}.jsonl", work/f"{setting['setting']}.xml"
    env = clean_env(setting['env']) | {'SOUNDLAB_TEST_DELTAS': str(deltas), 'PYTHONPATH': str(REPO)}
    cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', f'--junitxml={junit}', *tests,
           *[f'--deselect={d}' for d in DESELECT]]
    t0 = os.times()
    r = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    t1 = os.times(); cpu_s = (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)
    print(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-2000:], flush=True)
    rows = [json.loads(l) for l in deltas.read_text().splitlines()] if deltas.exists() else []
    outcome = {}
    if junit.exists():
        for tc in ET.parse(junit).getroot().iter('testcase'):
            name = f"{tc.get('classname', '').replace('.', '/')}.py::{tc.get('name')}"
            outcome[name] = 'failed' if tc.find('failure') is not None or tc.find('error') is not None else \
                            'skipped' if tc.find('skipped') is not None else 'passed'
    return rows, outcome, cpu_s


def table(model:str, flags:set, sets:list, results:dict) -> tuple['pd.DataFrame', str]:
    import pandas as pd
    rows = []
    for name, (deltas, outcome, cpu_s) in results.items():
        for d in deltas:
            rows.append(dict(setting=name, test=d['test'], quantity=d['what'], max_abs=d['max_abs'], tol=d['tol'],
                             atol=d['atol'], rtol=d['rtol'], margin=(1 / d['share']) if d['share'] else float('inf'),
                             passed=d['share'] <= 1))
    df = pd.DataFrame(rows)
    keep = ('avx', 'fma', 'amx', 'bf16', 'fp16', 'vnni')
    head = [f"# Equality tests across CPU kernel families ({time.strftime('%Y-%m-%d')})", '',
            f"CPU: {model}; flags: {' '.join(sorted(f for f in flags if any(k in f for k in keep)))}", '',
            '| setting | asked | kernels that ran | status | tests passed / failed | CPU s |', '|---|---|---|---|---|---|']
    for s in sets:
        r = results.get(s['setting'])
        pf = f"{sum(v == 'passed' for v in r[1].values())} / {sum(v == 'failed' for v in r[1].values())}" if r else '-'
        head.append(f"| {s['setting']} | `{s['asked']}` | {s['ran']} | {s['status']} | {pf} | {r[2]:.0f} |" if r else
                    f"| {s['setting']} | `{s['asked']}` | {s['ran']} | {s['status']} | - | - |")
    if df.empty: return df, '\n'.join(head + ['', 'no differences were recorded']) + '\n'
    cols = [s['setting'] for s in sets if s['setting'] in results]
    lines = ['', f"Max |difference| and margin (tolerance / difference at the worst element) per setting; the smallest margin "
             f"seen: {df.margin.min():.3g}x ({df.loc[df.margin.idxmin(), 'test']}, {df.loc[df.margin.idxmin(), 'quantity']}).", '',
             '| test | quantity | tolerance (native, worst element) | ' + ' | '.join(cols) + ' |', '|---|---|---|' + '---|' * len(cols)]
    for (test, q), g in df.groupby(['test', 'quantity'], sort=False):
        g = g.groupby('setting').agg(max_abs=('max_abs', 'max'), margin=('margin', 'min'), tol=('tol', 'first'))
        tol = g.tol.get('native', g.tol.iloc[0])
        cell = lambda c: (f"{g.max_abs[c]:.2g} ({g.margin[c]:.3g}x)" if g.margin[c] != float('inf') else f"{g.max_abs[c]:.2g} (exact)") if c in g.index else '-'
        lines.append(f"| `{test.split('::', 1)[-1]}` | {q} | {tol:.2g} | " + ' | '.join(cell(c) for c in cols) + ' |')
    return df, '\n'.join(head + lines) + '\n'


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--settings', nargs='+', default=None, help=f"a subset of {[n for n, _ in SETTINGS]}")
    p.add_argument('--tests', nargs='+', default=EQUALITY_TESTS, help='pytest node ids (default: EQUALITY_TESTS)')
    p.add_argument('--list', action='store_true', help='only probe the settings and print what each would run')
    p.add_argument('--out', default=str(RESULTS/'test_kinds'), help='CSV and Markdown path without suffix')
    args = p.parse_args()
    model, flags = cpu()
    sets = settings(flags)
    for s in sets: print(f"{s['setting']:20s} {s['asked']:40s} -> {s['ran']}: {s['status']}", flush=True)
    if args.list: raise SystemExit
    results = {}
    with tempfile.TemporaryDirectory(prefix='test_kinds_') as work:
        for s in sets:
            if not s['status'].startswith('run') or (args.settings and s['setting'] not in args.settings): continue
            print(f"== {s['setting']}: {s['asked']}", flush=True)
            results[s['setting']] = run_tests(s, args.tests, Path(work))
    if args.settings: sets = [s for s in sets if s['setting'] in args.settings or not s['status'].startswith('run')]
    df, md = table(model, flags, sets, results)
    out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
    df.assign(cpu=model).to_csv(out.with_suffix('.csv'), index=False); out.with_suffix('.md').write_text(md)
    print(md)
    bad = df[~df.passed] if len(df) else df
    failed = {n: [t for t, o in r[1].items() if o == 'failed'] for n, r in results.items()}
    if len(bad) or any(failed.values()):
        print('FAILED:', {n: f for n, f in failed.items() if f}); raise SystemExit(1)

"""`make figures`: rerun every result notebook's demo preset into figures/ (tables, figures, executed notebook copies).

The runs are independent papermill jobs, run through `soundlab.sweep` on a local process pool (`--workers`, default:
the number of CPU cores; each run gets OMP_NUM_THREADS=1). Each writes its tables and figures to figures/ and its
executed copy to figures/<notebook>_<tag>.ipynb (what the documentation site renders). Checkpoints of a finished
configuration are reused (data/runs/), so a rerun on the same machine writes the same tables.

    python tools/make_figures.py [--workers N] [--only run_esc50 ...] [--dry-run] [--preset smoke --fig-dir DIR]
"""
from __future__ import annotations
import argparse, os, shutil, sys, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# (notebook, demo parameters, tag of its executed copy): longest first, so that a pool finishes early
RUNS = [('run_icbhi', dict(method='mscl', preset='demo'), 'mscl'),
        ('run_psla', dict(preset='demo'), 'demo'),
        ('run_fsdnoisy18k', dict(preset='demo'), 'demo'),
        ('run_esc50', dict(preset='demo'), 'demo'),
        ('run_fewshot', dict(preset='demo'), 'demo'),
        ('run_speechcommands', dict(preset='demo'), 'demo'),
        ('run_vocalsound', dict(preset='demo'), 'demo'),
        ('run_cross', dict(preset='demo'), 'demo'),
        ('run_probe', dict(preset='demo'), 'demo')]

def figure_jobs(fig_dir=REPO / 'figures', state_dir=REPO / '_proc' / 'figures', only=None, preset='demo') -> list:
    "`soundlab.sweep.run_job` jobs, one per result notebook; outputs into `fig_dir`, logs under `state_dir`/runs/."
    missing = {p.stem for p in (REPO / 'nbs').glob('run_*.ipynb')} - {n for n, _, _ in RUNS}
    if missing: raise SystemExit(f'make_figures: no demo parameters for {sorted(missing)}: add them to RUNS in {__file__}')
    fig_dir, state_dir = Path(fig_dir).resolve(), Path(state_dir).resolve()
    out = []
    for nb, params, tag in RUNS:
        if only and nb not in only: continue
        d = state_dir / 'runs' / nb
        # the notebooks write to <repo>/figures by default: no machine-specific path in the committed copies
        where = {} if fig_dir == (REPO / 'figures').resolve() else {'out_dir': str(fig_dir)}
        output = fig_dir / f'{nb}_{tag if preset == "demo" else preset}.ipynb'
        output = output.relative_to(REPO) if output.is_relative_to(REPO) else output  # papermill runs in the repo
        out.append(dict(name=nb, notebook=f'nbs/{nb}.ipynb', params={**params, 'preset': preset, **where}, dir=str(d),
                        output=str(output)))
    return out

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--workers', type=int, default=os.cpu_count() or 1)
    ap.add_argument('--only', nargs='*', help='notebook names, e.g. run_esc50')
    ap.add_argument('--dry-run', action='store_true', help='print the jobs and stop')
    ap.add_argument('--preset', default='demo', help="'demo' (the figures), or 'smoke' (a quick check of the command)")
    ap.add_argument('--fig-dir', default=str(REPO / 'figures'))
    ap.add_argument('--state-dir', default=str(REPO / '_proc' / 'figures'), help='per-run logs')
    a = ap.parse_args(argv)
    jobs = figure_jobs(a.fig_dir, a.state_dir, a.only, a.preset)
    if a.dry_run:
        for j in jobs: print(j['notebook'], j['params'], '->', j['output'])
        return
    from soundlab.sweep import run_local
    for j in jobs: shutil.rmtree(j['dir'], ignore_errors=True)  # every run is redone (sweep skips folders marked done)
    t0 = time.time()
    status = run_local(jobs, workers=a.workers, first_alone=False, cwd=REPO)
    print(status[['name', 'status', 'seconds']].to_string(index=False))
    print(f'make figures: {len(jobs)} notebooks in {(time.time() - t0) / 60:.1f} min with {a.workers} worker(s)')
    failed = status[status.returncode != 0]
    for _, r in failed.iterrows():
        print(f"--- {r['name']} failed (log: {Path(a.state_dir) / 'runs' / r['name'] / 'log.txt'}):\n{r['error']}")
    sys.exit(1 if len(failed) else 0)

if __name__ == '__main__':
    main()

"""A smoke run's TensorBoard scalars page as a PNG, made by `make docs-check` and shown on the docs site's `train` page.

Trains the respiratory recipe's smoke preset (CE on the synthetic ICBHI corpus, 2 seeds, 6 epochs) into a temporary
runs folder unless --logdir is given, serves that folder with tensorboard on a free localhost port, waits until
tensorboard lists the run's scalars, and screenshots the scalars page with headless Chromium (--virtual-time-budget
lets the page's JavaScript fetch and draw the curves before the picture is taken).

    python tools/board_screenshot.py [--logdir DIR] [--out figures/tensorboard_scalars.png] [--chromium chromium]
"""
from __future__ import annotations
import argparse, json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request
from urllib.parse import quote
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TAGS = r'step/loss|epoch/(train_loss|test_loss|test_score|lr)$'  # the curves worth a look: per-step loss, epoch losses, Score, lr
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                  '--disable-sync', '--no-first-run', '--hide-scrollbars']

def smoke_runs(out:Path) -> Path:
    "Two seeds of the respiratory smoke preset (CE, 6 epochs) with their event files under `out`."
    sys.path.insert(0, str(REPO))
    from soundlab.recipes.respiratory import respiratory_config, run_respiratory
    run_respiratory(respiratory_config('smoke', method='sl', epochs=6, t_max=6, n_runs=2, out_dir=str(out)), progress=False)
    return out

def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def wait_for_scalars(url:str, runs:int, timeout:float=180.) -> dict:
    "tensorboard's {run: [tags]} once it lists `runs` runs with scalars; TimeoutError naming the URL otherwise."
    t0, tags = time.time(), {}
    while time.time() - t0 < timeout:
        try:
            with urllib.request.urlopen(f'{url}/data/plugin/scalars/tags', timeout=5) as r: tags = json.load(r)
            if len([r for r, t in tags.items() if t]) >= runs: return tags
        except OSError: pass
        time.sleep(1)
    raise TimeoutError(f'tensorboard at {url} listed {len(tags)} run(s) with scalars after {timeout:.0f} s, not {runs}')

def screenshot(logdir:Path, out:Path, chromium:str='chromium', size:str='1400,1180', budget_ms:int=30000) -> Path:
    "Serve `logdir` with tensorboard on 127.0.0.1 and write its scalars page (the `TAGS` curves, no smoothing) to `out`."
    exe = shutil.which(chromium)
    if exe is None: raise SystemExit(f'no {chromium}: run make docs-chromium (as root)')
    n_runs = len({p.parent for p in Path(logdir).rglob('*tfevents*')})
    if n_runs == 0: raise SystemExit(f'no TensorBoard event files under {logdir}')
    port = free_port(); url = f'http://127.0.0.1:{port}'
    tb = subprocess.Popen([sys.executable, '-m', 'tensorboard.main', '--logdir', str(logdir), '--host', '127.0.0.1', '--port', str(port),
                           '--reload_interval', '2'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_scalars(url, n_runs)
        out.parent.mkdir(parents=True, exist_ok=True)
        page = f'{url}/?darkMode=false#scalars&tagFilter={quote(TAGS)}&_smoothingWeight=0'
        with tempfile.TemporaryDirectory() as prof:  # a fresh browser profile: nothing remembered from earlier runs
            subprocess.run([exe, *CHROMIUM_FLAGS, f'--user-data-dir={prof}', f'--window-size={size}', f'--virtual-time-budget={budget_ms}',
                            f'--screenshot={out}', page], check=True, timeout=300, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        tb.terminate()
        try: tb.wait(10)
        except subprocess.TimeoutExpired: tb.kill()
    return out

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--logdir', default=None, help='event files to show (default: a fresh smoke run in a temporary folder)')
    ap.add_argument('--out', default=str(REPO / 'figures' / 'tensorboard_scalars.png'))
    ap.add_argument('--chromium', default=os.environ.get('CHROMIUM', 'chromium'))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logdir = Path(a.logdir) if a.logdir else smoke_runs(Path(tmp) / 'runs')
        print(screenshot(logdir, Path(a.out), a.chromium))

import os, sys, subprocess
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault('SOUNDLAB_OFFLINE', '1')  # no test touches the internet (tests/test_hub.py downloads from its own local server)
NBS = REPO / 'nbs'

def run_notebook(nb: str, work_dir: Path, data_dir: Path, /, **params):
    "Execute a result notebook with papermill in a subprocess (the way a user runs it); return the completed process."
    args = [sys.executable, '-m', 'papermill', str(NBS / nb), str(work_dir / f'out_{nb}'), '--cwd', str(REPO),
            '-k', 'python3', '--no-progress-bar']
    for k, v in params.items(): args += ['-p', k, str(v)] if not isinstance(v, bool) else ['-y', f'{k}: {str(v).lower()}']
    env = {**os.environ, 'SOUNDLAB_DATA': str(data_dir), 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '2')}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=1500)

@pytest.fixture(scope='session')
def shared_data(tmp_path_factory):
    "One SOUNDLAB_DATA folder for the session: synthetic corpora and feature caches are built once."
    return tmp_path_factory.mktemp('soundlab_data')


def pytest_configure(config):
    config.addinivalue_line('markers', 'cuda: needs a CUDA GPU; skipped without one (`make gpu-check` runs them: tools/gpu_check.py)')

def pytest_collection_modifyitems(config, items):
    "Tests marked `cuda` skip on a machine without CUDA (SOUNDLAB_CUDA_REHEARSAL=1: run them on the CPU, see tests/test_cuda.py)."
    import torch
    if torch.cuda.is_available() or os.environ.get('SOUNDLAB_CUDA_REHEARSAL', '') == '1': return
    skip = pytest.mark.skip(reason='needs CUDA (make gpu-check runs it on a GPU)')
    for item in items:
        if 'cuda' in item.keywords: item.add_marker(skip)

# ---------------------------------------------------------------------------------------------------------------
# equality tests: every tolerance is checked (and, for tools/test_kinds.py, recorded) through `check_close`

def _f64(a):
    import numpy as np, torch
    if isinstance(a, torch.Tensor): a = a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)

def check_close(what:str, # what is compared, one line (goes into the test-kinds table)
                actual, expected, # arrays / tensors / numbers of one shape
                atol=0., rtol=0., # |actual - expected| <= atol + rtol * |expected|, elementwise (numbers or arrays); 0, 0: exact
               ) -> float:
    """Assert `actual` equals `expected` within the tolerance; return max |actual - expected|. Where the environment
    names a file in SOUNDLAB_TEST_DELTAS (tools/test_kinds.py sets it), append one JSON line to it: the test, `what`, the
    max |difference|, the tolerance at the worst element and the worst element's share of its bound (1 / margin)."""
    import json, numpy as np
    a, e = _f64(actual), _f64(expected)
    assert a.shape == e.shape, f'{what}: shape {a.shape} != expected {e.shape}'
    d = np.where(np.isnan(a) & np.isnan(e), 0., np.abs(a - e)); bound = atol + rtol * np.abs(e)
    share = np.where(d == 0, 0., np.divide(d, bound, out=np.full_like(d, np.inf), where=bound > 0))
    i = int(np.nanargmax(np.where(np.isnan(share), np.inf, share))) if share.size else 0
    worst = float(share.reshape(-1)[i]) if share.size else 0.
    if np.isnan(d).any(): worst = np.inf  # a NaN on one side only
    max_abs = float(np.max(d)) if d.size else 0.
    tol = float(bound.reshape(-1)[i]) if bound.size else atol
    print(f'{what}: max |diff| {max_abs:.2e}, tolerance there {tol:.2e}, margin ' + (f'{1 / worst:.3g}x' if worst else 'inf'))
    if os.environ.get('SOUNDLAB_TEST_DELTAS'):
        test = os.environ.get('PYTEST_CURRENT_TEST', '?').rsplit(' (', 1)[0]
        with open(os.environ['SOUNDLAB_TEST_DELTAS'], 'a') as f:
            per = lambda t: float(t) if np.ndim(t) == 0 else f'per element, {_f64(t).min():.3g}..{_f64(t).max():.3g}'
            f.write(json.dumps(dict(test=test, what=what, max_abs=max_abs, tol=tol, atol=per(atol), rtol=per(rtol), share=worst)) + '\n')
    assert worst <= 1, (f'{what}: max |diff| {max_abs:.3g}; the worst element is {worst:.3g}x its tolerance '
                        f'(atol + rtol x |expected| = {tol:.3g} there)')
    return max_abs

U = 2.0 ** -24  # float32 unit roundoff: half an ulp of 1; ulp(v) <= 2 u |v|

def rounding(n:int, scale:float=1., sides:int=2) -> float:
    """Rounding of a float32 sum of `n` terms whose magnitudes add up to `scale`, in any order (another kernel's
    blocking, vector width or FMA), on `sides` sides: 3 sqrt(n) u scale each -- the probabilistic bound of Higham &
    Mary (SIAM J. Sci. Comput. 2019), three standard deviations; the worst case n u scale is rarely approached."""
    import math
    return sides * 3 * math.sqrt(n) * U * scale

def f64_tol(got, twin, ulps:float=4.):
    """Tolerance of a float32 result `got` from its float64 twin (the same computation in float64): this kernel's
    rounding error, measured, times 2 (the other side's is of the same size) x 3 (its tail), plus `ulps` ulps of each
    value. What the computation does to rounding (cancellation, batch norm over a few examples, Adam's g / (|g| + eps))
    is in the measurement; the ulps keep an error that happened to be 0 here from making the check exact."""
    g, t = _f64(got), _f64(twin)
    return 6 * float(abs(g - t).max()) + ulps * 2 * U * abs(t)

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

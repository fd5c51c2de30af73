"""soundlab.sweep on a real SLURM: a one-node controller + slurmd on localhost (tools/slurm_local.sh, `make slurm`).

A 4-run smoke sweep of nbs/run_icbhi.ipynb is submitted as a job array with sbatch, finishes, and `collect` assembles
its table; a run cancelled with scancel after its first epoch and submitted again resumes from its last.pt.
Where SLURM is not installed or cannot start (CI), every test here skips at once: the fixture never installs anything
(SLURM_LOCAL_INSTALL=0) and every call it makes has a timeout."""
import os, shutil, subprocess, time
from pathlib import Path
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / 'tools' / 'slurm_local.sh'
LOCAL_DIR = os.environ.get('SLURM_LOCAL_DIR', '/tmp/soundlab-slurm')

def _up(env=None) -> bool:
    "The controller answers and a node is up."
    try:
        ping = subprocess.run(['scontrol', 'ping'], env=env, capture_output=True, text=True, timeout=15)
        node = subprocess.run(['sinfo', '-h', '-o', '%t'], env=env, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired): return False
    return 'is UP' in ping.stdout and any(s.strip() in ('idle', 'mix', 'alloc') for s in node.stdout.split())

@pytest.fixture(scope='module')
def slurm():
    "A running SLURM: the one $SLURM_CONF (or the system) names, else a local one started here and stopped after."
    if not (shutil.which('sbatch') and shutil.which('scontrol')):
        pytest.skip('SLURM is not installed (no sbatch/scontrol on PATH); `make slurm` as root installs and starts one')
    if _up(): yield os.environ.get('SLURM_CONF', 'system'); return
    env = {**os.environ, 'SLURM_LOCAL_INSTALL': '0', 'SLURM_LOCAL_DIR': LOCAL_DIR, 'SLURM_CONF': f'{LOCAL_DIR}/slurm.conf'}
    ours = not _up(env)
    if ours:
        if not all(map(shutil.which, ('slurmctld', 'slurmd', 'munged'))): pytest.skip('slurmctld/slurmd/munged not installed')
        if os.geteuid() != 0: pytest.skip('no running SLURM, and slurmd can only be started as root')
        try: r = subprocess.run([str(TOOL), 'start'], env=env, capture_output=True, text=True, timeout=90)
        except subprocess.TimeoutExpired: pytest.skip('the local SLURM did not start within 90 s')
        if r.returncode: pytest.skip(f'the local SLURM could not start: {r.stderr.strip()[-500:]}')
    old = os.environ.get('SLURM_CONF'); os.environ['SLURM_CONF'] = env['SLURM_CONF']
    yield env['SLURM_CONF']
    if old is None: os.environ.pop('SLURM_CONF', None)
    else: os.environ['SLURM_CONF'] = old
    if ours: subprocess.run([str(TOOL), 'stop'], env=env, capture_output=True, timeout=120)

@pytest.fixture
def data_env(shared_data, monkeypatch):
    "sbatch passes the submitting environment on: the jobs find the shared synthetic corpus and this worktree."
    monkeypatch.setenv('SOUNDLAB_DATA', str(shared_data))
    monkeypatch.setenv('PYTHONPATH', str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))

def _slurm_logs(script: Path) -> str:
    return '\n'.join(f'--- {p.name}\n' + p.read_text()[-1500:] for p in sorted((script.parent / 'slurm_logs').glob('*.out')))

def test_smoke_sweep_as_job_array(slurm, data_env, tmp_path):
    from soundlab.sweep import jobs, grid, slurm_script, submit, wait, collect, aggregate
    t0 = time.time()
    # lr is not part of the recipe's run tag: without their own checkpoint folders two runs would share one
    js = jobs('nbs/run_icbhi.ipynb', grid(seed=[0, 1], lr=[1e-3, 3e-3]), tmp_path / 'sweep', common=dict(preset='smoke', method='sl'))
    script = slurm_script(js, tmp_path / 'sweep' / 'smoke.sbatch', time='00:15:00', cpus=1, mem='2G')
    ids = submit(script)                                           # task 0 alone first (it writes the corpus), then 1-3
    assert len(ids) == 2
    states = wait(ids, timeout=1200, poll=1)
    assert sorted(states) == sorted([f'{ids[0]}_0'] + [f'{ids[1]}_{i}' for i in (1, 2, 3)]), states
    assert set(states.values()) == {'COMPLETED'}, f'{states}\n{_slurm_logs(script)}'
    table = collect(tmp_path / 'sweep', 'icbhi_results.csv')
    assert sorted(table.run) == sorted(j['name'] for j in js) and table.Method.eq('CE').all()
    for j in js:
        assert (Path(j['dir']) / 'done').exists() and list((Path(j['dir']) / 'checkpoints').rglob('last.pt')), j['name']
    summary = aggregate(table.assign(lr=[r.split('lr=')[1] for r in table.run]), ['lr'], ['Score'])
    assert summary.n_runs.tolist() == [2, 2]
    print(f'SLURM sweep: 4 runs in {time.time() - t0:.0f} s\n{summary.to_string(index=False)}')

def _history(run_dir: Path) -> pd.DataFrame:
    "The training history held by the run's last.pt (what a resumed run starts from)."
    import torch
    last = next((run_dir / 'checkpoints').rglob('last.pt'))
    return pd.DataFrame(torch.load(last, weights_only=False)['history'])

def test_scancel_then_resubmit_resumes(slurm, data_env, tmp_path):
    import torch
    from soundlab.sweep import jobs, grid, slurm_script, submit, wait, job_states
    epochs = 6
    js = jobs('nbs/run_icbhi.ipynb', grid(seed=[0]), tmp_path / 'sweep', common=dict(preset='smoke', method='sl', epochs=epochs))
    d = Path(js[0]['dir'])
    script = slurm_script(js, tmp_path / 'sweep' / 'resume.sbatch', time='00:15:00', cpus=1, mem='2G')
    [jid] = submit(script)
    deadline = time.time() + 600
    while True:                                                    # cancel once an epoch is checkpointed
        lasts = list((d / 'checkpoints').rglob('last.pt'))
        if lasts and torch.load(lasts[0], weights_only=False)['epoch'] >= 1: break
        assert time.time() < deadline, f'no checkpoint after 600 s\n{_slurm_logs(script)}'
        assert set(job_states([jid]).values()) <= {'PENDING', 'RUNNING', 'CONFIGURING'}, _slurm_logs(script)
        time.sleep(0.2)
    subprocess.run(['scancel', jid], check=True, timeout=30)
    states = wait([jid], timeout=120, poll=0.5)
    before = _history(d)
    assert list(states.values()) == ['CANCELLED'], states
    assert not (d / 'done').exists() and 1 <= len(before) < epochs, before       # killed mid-training
    [jid2] = submit(script)                                        # the same task again
    states = wait([jid2], timeout=600, poll=1)
    assert list(states.values()) == ['COMPLETED'], f'{states}\n{_slurm_logs(script)}'
    after = _history(d)
    assert (d / 'done').exists() and after.epoch.tolist() == list(range(1, epochs + 1))
    # resumed, not retrained: the epochs done before the cancel are the very rows (their wall times too) of last.pt
    pd.testing.assert_frame_equal(after.iloc[:len(before)], before)
    print(f'cancelled after {len(before)} of {epochs} epochs; the resubmitted run trained epochs {len(before) + 1}-{epochs}')

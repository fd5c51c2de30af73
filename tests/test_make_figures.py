"`make figures` (tools/make_figures.py): one job per result notebook, run through soundlab.sweep into a figures folder."
import json, os, subprocess, sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tools'))
import make_figures

def test_every_run_notebook_has_a_job(tmp_path):
    jobs = make_figures.figure_jobs()
    assert {j['notebook'] for j in jobs} == {f'nbs/{p.name}' for p in (REPO / 'nbs').glob('run_*.ipynb')}
    assert all(j['params']['preset'] == 'demo' and 'out_dir' not in j['params'] for j in jobs)  # repo figures/: no paths
    assert {Path(j['output']).name for j in jobs} >= {'run_icbhi_mscl.ipynb', 'run_speechcommands_demo.ipynb'}
    other = make_figures.figure_jobs(tmp_path, tmp_path / 'state', only=['run_esc50'], preset='smoke')
    assert len(other) == 1 and other[0]['params'] == {'preset': 'smoke', 'out_dir': str(tmp_path.resolve())}

def test_make_figures_runs_a_notebook(tmp_path, shared_data):
    figs = tmp_path / 'figures'; figs.mkdir()
    cmd = [sys.executable, str(REPO / 'tools' / 'make_figures.py'), '--only', 'run_speechcommands', '--preset', 'smoke',
           '--fig-dir', str(figs), '--state-dir', str(tmp_path / 'state'), '--workers', '1']
    r = subprocess.run(cmd, cwd=REPO, env={**os.environ, 'SOUNDLAB_DATA': str(shared_data)}, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert 'run_speechcommands' in r.stdout and 'ok' in r.stdout
    executed = json.loads((figs / 'run_speechcommands_smoke.ipynb').read_text())
    assert any(c.get('outputs') for c in executed['cells']), 'the executed copy has no outputs'
    for f in ('ast_speechcommands_results.csv', 'ast_speechcommands_results.md', 'ast_speechcommands_confusion.png'):
        assert (figs / f).stat().st_size > 0, f
    assert (tmp_path / 'state' / 'runs' / 'run_speechcommands' / 'done').exists()

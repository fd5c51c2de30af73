"`make lab` starts: JupyterLab from the venv, with the flags the Makefile passes, serves the notebooks over its REST API."
import json, os, secrets, shutil, signal, socket, subprocess, sys, time, urllib.error, urllib.request
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip('jupyterlab', reason='jupyterlab is not installed (dev requirement)')

def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _lab_flags():
    "The extra flags `make lab` passes (`--allow-root` as root); computed here too when make is missing."
    if shutil.which('make'):
        r = subprocess.run(['make', '-s', '--no-print-directory', 'lab-flags'], cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()
    return ['--allow-root'] if os.geteuid() == 0 else []

def _get(url, token):
    req = urllib.request.Request(url, headers={'Authorization': f'token {token}'})
    with urllib.request.urlopen(req, timeout=10) as r: return r.status, json.loads(r.read())

def test_lab_serves_notebooks(tmp_path):
    flags = _lab_flags()
    assert ('--allow-root' in flags) == (os.geteuid() == 0), flags
    port, token = _free_port(), secrets.token_hex(16)
    jupyter = Path(sys.executable).parent / 'jupyter'
    cmd = [str(jupyter) if jupyter.exists() else sys.executable, *([] if jupyter.exists() else ['-m', 'jupyter']),
           'lab', 'nbs', *flags, '--no-browser', '--ip=127.0.0.1', f'--port={port}', '--port-retries=0',
           f'--IdentityProvider.token={token}']
    env = {**os.environ, 'JUPYTER_RUNTIME_DIR': str(tmp_path / 'runtime'), 'JUPYTER_CONFIG_DIR': str(tmp_path / 'cfg')}
    log = open(tmp_path / 'lab.log', 'w+')
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f'http://127.0.0.1:{port}'
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None:
                log.seek(0); pytest.fail(f'jupyter lab exited with {proc.returncode}:\n{log.read()[-3000:]}')
            try: _get(f'{base}/api/status', token); break
            except OSError:
                if time.time() > deadline: log.seek(0); pytest.fail(f'jupyter lab did not answer:\n{log.read()[-3000:]}')
                time.sleep(0.5)
        # a wrong token is refused: the server is not open to anyone on the port
        with pytest.raises(urllib.error.HTTPError): _get(f'{base}/api/contents', 'wrong')
        status, listing = _get(f'{base}/api/contents', token)
        names = {c['name'] for c in listing['content']}
        assert status == 200 and 'run_icbhi.ipynb' in names and '00_core.ipynb' in names, sorted(names)
        status, nb = _get(f'{base}/api/contents/run_icbhi.ipynb?content=1', token)
        assert status == 200 and nb['type'] == 'notebook' and nb['format'] == 'json'
        cells = nb['content']['cells']
        assert any('parameters' in c.get('metadata', {}).get('tags', []) for c in cells), 'no parameters cell served'
        # the lab front end itself is served too
        with urllib.request.urlopen(urllib.request.Request(f'{base}/lab?token={token}'), timeout=10) as r:
            assert r.status == 200 and b'JupyterLab' in r.read()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait()
        log.close()

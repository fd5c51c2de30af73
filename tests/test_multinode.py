"Two nodes on localhost: two soundlab.dist.launch processes (torchrun, nnodes=2, one process each) meet through the c10d rendezvous (gloo)."
import json, os, socket, subprocess, sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NODE = """
import json, sys
from soundlab.dist import launch
r = launch('soundlab.dist:_selftest', {'x': 1}, nproc=1, nnodes=2, node_rank=int(sys.argv[1]), master=sys.argv[2], rdzv='c10d',
           rdzv_id='t2n', kwargs={'tag': 'n' + sys.argv[1]}, timeout=120, quiet=True)
print('RESULT', json.dumps(r))
"""

def _port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def test_two_nodes_c10d_rendezvous(tmp_path):
    master = f'127.0.0.1:{_port()}'
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1', 'GLOO_SOCKET_IFNAME': 'lo'}
    nodes = [subprocess.Popen([sys.executable, '-c', NODE, str(k), master], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for k in (0, 1)]
    outs = [p.communicate(timeout=180)[0] for p in nodes]
    assert all(p.returncode == 0 for p in nodes), '\n----\n'.join(o[-2000:] for o in outs)
    res = [json.loads(o.split('RESULT ', 1)[1].splitlines()[0]) for o in outs]
    main = [r for r in res if r is not None]
    assert len(main) == 1, res  # rank 0's result comes back on the node that hosted rank 0, None on the other
    r = main[0]
    assert r['world'] == 2 and r['main'] == 0 and r['cfg'] == {'x': 1}
    assert r['gathered'] == [[0., 0.], [1., 1.], [1., 1.]] and abs(r['mean']['r'] - 0.5) < 1e-9

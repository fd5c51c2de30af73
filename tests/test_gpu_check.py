"""The GPU check stays ready for the first GPU: CI runs `tools/gpu_check.py --dry-run` on the CPU, where every step that
needs no CUDA runs and is checked (each recipe's configs, each network at its seed's size on the meta device and its
FLOPs, the `cuda` tests collected and listed as skipped, the timing and data-loading harness at tiny sizes, the result
files), and the peak table and FLOP counts are checked against independent numbers."""
import os, resource, subprocess, sys, time
from pathlib import Path
import pandas as pd, torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'benchmarks'))
import bench_train as bt


def test_gpu_check_dry_run(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')])}
    t0, c0 = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, 'tools/gpu_check.py', '--dry-run', '--out', str(tmp_path)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=1200)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f'gpu_check --dry-run: {time.time() - t0:.0f} s wall, {c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime:.0f} CPU-s')
    assert p.returncode == 0, p.stdout[-5000:] + p.stderr[-3000:]
    checks = pd.read_csv(tmp_path / 'gpu_check_tests.csv')
    by = lambda step: checks[checks.step == step]
    cuda_tests = by('tests')[by('tests').check.str.startswith('tests/')]
    assert len(cuda_tests) >= 17 and (cuda_tests.status == 'skipped').all(), cuda_tests  # collected, not run without CUDA
    assert cuda_tests.check.str.contains('test_one_process_nccl_equals_plain_run').any()
    assert (by('configs').status == 'passed').all() and len(by('configs')) == 10
    assert (by('models').status == 'passed').all() and len(by('models')) == 5
    assert (by('timing').status == 'passed').all() and len(by('timing')) == 10     # 5 recipes x (seed-style, soundlab), fp32
    assert (by('loading').status == 'passed').all() and len(by('loading')) == 5
    assert (by('ceilings').status == 'skipped').all() and not (checks.status == 'failed').any()
    t = pd.read_csv(tmp_path / 'gpu_check.csv')
    assert len(t) == 10 and set(t.recipe) == set(bt.STEP_RECIPES) and (t.status == 'ok').all() and (t.samples_per_s > 0).all()
    assert {'gpu', 'driver', 'cuda_runtime', 'torch', 'cpu', 'isa', 'threads'} <= set(t.columns) and t.dry_run.all()
    assert t[t.setup == 'soundlab'].data_wait_share.between(0, 1).all()
    md = (tmp_path / 'gpu_check.md').read_text()
    assert 'DRY RUN' in md and "## One training step at the seed's batch" in md and '## Data loading' in md
    assert 'skipped: matmul ceilings' in (tmp_path / 'gpu_check.log').read_text()


def test_peaks_and_flops():
    "The peak table picks the right card (the SXM H100 by its name, A100 before A10, L40S before L4); FLOPs agree with bench_train's MAC count."
    assert bt.gpu_peak('NVIDIA H100 80GB HBM3', 'bf16')[0] == 989.5 and bt.gpu_peak('NVIDIA H100 PCIe', 'tf32')[0] == 378.
    assert bt.gpu_peak('NVIDIA A100-SXM4-80GB', 'fp16')[0] == 312. and bt.gpu_peak('NVIDIA A10', 'bf16')[0] == 125.
    assert bt.gpu_peak('NVIDIA L40S', 'bf16')[0] == 362. and bt.gpu_peak('NVIDIA L4', 'bf16')[0] == 121.
    assert 'tensor cores' in bt.gpu_peak('NVIDIA H200', 'fp16')[1] and 'CUDA cores' in bt.gpu_peak('NVIDIA H200', 'fp32')[1]
    assert bt.gpu_peak('Tesla V100-SXM2-16GB', 'bf16')[0] != bt.gpu_peak('Tesla V100-SXM2-16GB', 'bf16')[0]  # NaN: no bf16
    assert bt.gpu_peak('Some Future GPU', 'fp32')[1].endswith('not in GPU_PEAKS')
    # the FLOP counter (meta device, forward + backward) against the forward hooks of `step_macs` (x3 less the first
    # layer's input gradient), two independent counts of the same step: 2 FLOPs per multiply-accumulate
    cfg = bt.respiratory_setup(small=True)
    model = bt.RespiratoryNet(bt.create_backbone(cfg.backbone))
    x = bt.RespiratoryMel(sample_rate=cfg.samplerate)(torch.randn(cfg.bs, int(cfg.duration * cfg.samplerate)))
    assert bt.step_flops('respiratory', small=True) == 2 * bt.step_macs(model, x)

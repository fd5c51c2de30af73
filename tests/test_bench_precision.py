"""benchmarks/bench_precision.py: its bf16 emulation computes what bf16 kernels compute, and its parity table."""
import contextlib, sys
from pathlib import Path
import pandas as pd, torch
import torch.nn.functional as F
from conftest import check_close, rounding

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/'benchmarks'))
import bench_precision as bp

BF16_ULP = 2.0 ** -7  # ulp(v) <= 2^-7 |v| for a bf16 value v (8 significant bits)


def _bf16(*shape, gen):
    return torch.randn(*shape, generator=gen).to(torch.bfloat16).float()  # bf16-valued fp32: both paths see equal operands


def _runs(fn, inputs):
    """fn's output and input gradients (upstream gradient 1) three ways: in float64 from the same bf16-valued operands,
    rounded to bf16 (what bf16 units compute: exact products, wide sums, one rounding); under bf16 autocast with torch's
    own kernels on this CPU; and under bf16 autocast with the emulation (fp32 kernels)."""
    res = []
    for ref, mode in ((True, contextlib.nullcontext()), (False, contextlib.nullcontext()), (False, bp.bf16_via_fp32())):
        xs = [(t.double() if ref else t.clone()).requires_grad_(True) for t in inputs]
        with (contextlib.nullcontext() if ref else torch.autocast('cpu', dtype=torch.bfloat16)), mode:
            out = fn(*xs)
            if not ref: assert out.dtype == torch.bfloat16  # the emulation keeps autocast's dtypes for the ops after it
            out.backward(torch.ones_like(out))
        res.append([t.detach().to(torch.bfloat16).double() for t in [out] + [x.grad for x in xs]])
    return res


RTOL = BF16_ULP * (1 + 2 ** -6)  # the same or adjacent bf16 values: one ulp of the larger side


def test_emulated_bf16_is_what_bf16_units_compute():
    """The emulation's fp32 sums differ from the exact ones by rounding(n, sum of |terms|) (one side: float64 is exact
    here), and the two roundings to bf16 then land on the same or adjacent bf16 values. torch's own bf16 kernels on this
    CPU meet the same bound in the forward pass; its slow (non-oneDNN) convolution backward rounds its column buffers to
    bf16 before summing them (up to 8 % off here), which bf16 units (oneDNN on AVX512-BF16 / AMX) do not: not compared."""
    g = torch.Generator().manual_seed(0)
    x, w, b = _bf16(2, 8, 12, 12, gen=g), _bf16(16, 8, 3, 3, gen=g), _bf16(16, gen=g)
    ref, native, emu = _runs(lambda x, w, b: F.conv2d(x, w, b, padding=1), [x, w, b])
    one = torch.ones(2, 16, 12, 12)
    sums = [(F.conv2d(x.abs(), w.abs(), b.abs(), padding=1), 8 * 9 + 1),  # per element: sum of |terms|, number of terms
            (torch.nn.grad.conv2d_input(x.shape, w.abs(), one, padding=1), 16 * 9),
            (torch.nn.grad.conv2d_weight(x.abs(), w.shape, one, padding=1), 2 * 12 * 12), (torch.full((16,), 288.), 288)]
    for what, e, r, (s, n) in zip(('out', 'grad input', 'grad weight', 'grad bias'), emu, ref, sums):
        check_close(f'bf16 emulated vs exact, rounded: conv {what}', e, r, atol=rounding(n, 1., sides=1) * s.double(), rtol=RTOL)
    check_close('torch bf16 vs exact, rounded: conv out', native[0], ref[0], atol=rounding(73, 1., sides=1) * sums[0][0].double(), rtol=RTOL)

    a, m = _bf16(3, 5, 40, gen=g), _bf16(3, 40, 7, gen=g)
    ref, native, emu = _runs(torch.bmm, [a, m])
    sa, sm = (a.abs() @ m.abs()).double(), m.abs().sum(-1).unsqueeze(1).expand_as(a).double()
    for what, got in (('bf16 emulated', emu), ('torch bf16', native)):
        check_close(f'{what} vs exact, rounded: bmm', got[0], ref[0], atol=rounding(40, 1., sides=1) * sa, rtol=RTOL)
        check_close(f'{what} vs exact, rounded: bmm grad', got[1], ref[1], atol=rounding(7, 1., sides=1) * sm, rtol=RTOL)
    z, W = _bf16(6, 64, gen=g), _bf16(10, 64, gen=g)
    ref, native, emu = _runs(F.linear, [z, W])
    for what, got in (('bf16 emulated', emu), ('torch bf16', native)):
        check_close(f'{what} vs exact, rounded: linear', got[0], ref[0], atol=rounding(64, 1., sides=1) * (z.abs() @ W.abs().T).double(), rtol=RTOL)


def test_emulated_attention_within_bf16_rounding_of_probabilities():
    """The emulation runs CPU flash attention in fp32 and rounds its output once; torch's bf16 kernel also rounds the
    softmax probabilities P to bf16 before P @ V (relative 2^-8 each, in the numerator and in the normaliser): per element
    |diff| <= 2 x 2^-8 x (P @ |V|) + one bf16 ulp of the output (+ fp32 sums)."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (_bf16(2, 3, 50, 16, gen=g) for _ in range(3))
    with torch.no_grad():
        outs = []
        for mode in (contextlib.nullcontext(), bp.bf16_via_fp32()):
            with torch.autocast('cpu', dtype=torch.bfloat16), mode:
                outs.append(F.scaled_dot_product_attention(q, k, v).float())
        p = torch.softmax(q @ k.transpose(-1, -2) / 4, -1)
    bound = 2 * 2 ** -8 * (p @ v.abs()) + rounding(50 + 16, 1.) * (p @ v.abs() + 1)
    check_close('bf16 emulated vs torch bf16: attention', outs[1], outs[0], atol=bound, rtol=RTOL)


def _rows(recipe, series_runs):
    rows = []
    for (cpu, precision, bf16, policy), values in series_runs.items():
        for seed, v in enumerate(values):
            rows.append(dict(recipe=recipe, precision=precision, seed=seed, epochs='preset', metric='acc', value=v, seconds=10.,
                             cpu=cpu, cpu_flags='avx2 fma', bf16=bf16, policy=policy,
                             series=f'{cpu} [avx2 fma], bf16 {bf16}, policy {policy}'))
    return rows


def test_parity_table_shares_fp32_runs_across_bf16_series(tmp_path):
    "fp32 runs are compared with every bf16 series of the same machine (emulated or native, any policy); verdicts by Welch."
    runs = tmp_path/'runs.csv'
    pd.DataFrame(_rows('psla', {('X', 'fp32', 'emulated', 'v2'): [50., 52., 54.],
                                ('X', 'bf16', 'emulated', 'v2'): [51., 53., 52.],   # Δ +0.0, parity
                                ('X', 'bf16', 'emulated', 'v1'): [40., 41., 42.],   # Δ -11: worse
                                ('Y', 'fp32', 'native', 'v1'): [60., 61.]})          # another machine, fp32 only, 2 seeds
                 + _rows('sed', {('X', 'bf16', 'emulated', 'v2'): [1., 2.]})).to_csv(runs, index=False)
    table = bp.summarize(runs, ['psla', 'sed', 'fewshot']); t = table.set_index(['recipe', 'series'])
    v2, v1 = t.loc[('psla', 'X [avx2 fma], bf16 emulated, policy v2')], t.loc[('psla', 'X [avx2 fma], bf16 emulated, policy v1')]
    assert v2.fp32 == v1.fp32 == '52.00 ± 2.00 (n=3)' and v2.verdict == 'parity' and v2['Δ bf16-fp32'] == 0
    assert v1.verdict == 'bf16 worse' and v1['speed bf16/fp32'] == 'emulated, not measured'
    assert t.loc[('psla', 'Y [avx2 fma], fp32 only')].verdict == 'incomplete'
    assert t.loc[('sed', 'X [avx2 fma], bf16 emulated, policy v2')].verdict == 'incomplete'  # no fp32 run: no verdict
    assert t.loc[('fewshot', '')].verdict == 'not run'
    assert bp.verdicts(table) == {'psla': 'parity', 'sed': 'incomplete'}  # the newest policy decides: v2's parity, not v1
    d = bp.bf16_defaults(table); assert d['psla'] and not d['sed'] and not d['fewshot']


def test_demo_defaults_follow_the_parity_table():
    "A demo preset trains in bf16 (where the CPU has it) exactly when the committed table shows parity for it."
    from soundlab.recipes import respiratory as R, sed as S, fewshot as FS, ast as A, psla as P
    table = pd.read_csv(REPO/'benchmarks/results/bench_precision.csv')
    want = bp.bf16_defaults(table)
    amp = {'respiratory': R.respiratory_config('demo').amp, 'sed': S.sed_config('demo').amp, 'fewshot': FS.fewshot_config('demo').amp,
           'ast-vocalsound': A.ast_config('demo', 'vocalsound').amp, 'ast-esc50': A.ast_config('demo', 'esc50').amp,
           'psla': P.psla_config('demo').amp}
    assert amp == want, f'demo presets amp {amp}; the parity table says {want}'

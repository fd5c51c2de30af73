"""Inference throughput on the CPU: onnxruntime running a soundlab-exported graph against eager PyTorch, same model.

Each model is exported with `soundlab.export.export_onnx` (the network behind its front end) and both backends score
the same batches of front-end features (the front end is the same torch step for both, so it is left out), in one
run, alternately, `--repeats` times; the best time of each is kept (the machine may be shared). Both use the same
number of threads (`--threads`, default torch's). Clips are 10 s:

- `panns_cnn6`: a PANNs Cnn6 AudioSet tagger at 16 kHz (log-mel 1001 x 64, 527 classes);
- `effnet_b0`: PSLA's EfficientNet-B0 + 4-head attention (fbank 1056 x 128, 527 classes);
- `ast_tiny224`: AST tiny, strides 10 (fbank 1024 x 128: 1212 patches, 527 classes).

    .venv/bin/python benchmarks/bench_onnx.py [--models panns_cnn6 effnet_b0 ast_tiny224] [--batch 8] [--batches 3] [--repeats 3] [--threads N]
"""
import argparse, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd, torch
from soundlab.core import machine_info, seed_everything
from soundlab.export import export_onnx, onnx_parts, ort_session

def build(name):
    if name == 'panns_cnn6':
        from soundlab.models.panns import create_panns
        m = create_panns('cnn6', sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmax=8000., classes_num=527); m.sample_rate = 16000
        return m.eval(), 10 * 16000
    if name == 'effnet_b0':
        from soundlab.models.psla import EffNetAttention
        m = EffNetAttention(label_dim=527, b=0, pretrain=None, head_num=4).eval(); m.input_tdim = 1056
        return m, None
    if name == 'ast_tiny224':
        from soundlab.models.ast import ASTModel
        return ASTModel(527, 10, 10, 128, 1024, imagenet_pretrain=False, model_size='tiny224').eval(), None
    raise ValueError(name)

def clips_per_s(fn, xs, batch) -> float:
    t0 = time.perf_counter()
    for x in xs: fn(x)
    return batch * len(xs) / (time.perf_counter() - t0)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--models', nargs='+', default=['panns_cnn6', 'effnet_b0', 'ast_tiny224'])
    p.add_argument('--batch', type=int, default=8); p.add_argument('--batches', type=int, default=3)
    p.add_argument('--repeats', type=int, default=3); p.add_argument('--threads', type=int, default=None)
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'bench_onnx.csv'))
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    import onnxruntime as ort
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models:
            seed_everything(0)
            model, samples = build(name)
            t0 = time.perf_counter(); path = export_onnx(model, Path(tmp) / f'{name}.onnx'); t_export = time.perf_counter() - t0
            parts = onnx_parts(model)
            shape = parts['example'].shape[1:] if samples is None else parts['frontend'](torch.zeros(1, samples)).shape[1:]
            xs = [torch.randn(a.batch, *shape) for _ in range(a.batches)]
            sess, net = ort_session(path, threads), parts['net']
            with torch.no_grad(): err = max(float(np.abs(sess.run(None, {'features': x.numpy()})[0] - net(x).numpy()).max()) for x in xs[:1])
            best = {'pytorch': 0., 'onnxruntime': 0.}
            with torch.no_grad():
                net(xs[0]); sess.run(None, {'features': xs[0].numpy()})  # warm-up
                for _ in range(a.repeats):
                    best['pytorch'] = max(best['pytorch'], clips_per_s(net, xs, a.batch))
                    best['onnxruntime'] = max(best['onnxruntime'], clips_per_s(lambda x: sess.run(None, {'features': x.numpy()}), xs, a.batch))
            rows.append(dict(model=name, input=' x '.join(map(str, shape)), batch=a.batch, pytorch_clips_per_s=round(best['pytorch'], 2),
                             onnxruntime_clips_per_s=round(best['onnxruntime'], 2), speedup=round(best['onnxruntime'] / best['pytorch'], 2),
                             max_abs_diff=f'{err:.1e}', export_s=round(t_export, 1), exporter=pd.NA, onnxruntime=ort.__version__,
                             **machine_info('fp32')))
            rows[-1]['exporter'] = __import__('soundlab.export', fromlist=['read_metadata']).read_metadata(path)['exporter']
            print(pd.DataFrame(rows[-1:])[['model', 'pytorch_clips_per_s', 'onnxruntime_clips_per_s', 'speedup']].to_string(index=False), flush=True)
    df = pd.DataFrame(rows)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); df.to_csv(a.out, index=False)
    print(df.drop(columns=['cpu_flags', 'torch', 'onnxruntime']).to_markdown(index=False))
    print(f'-> {a.out}')

if __name__ == '__main__': main()

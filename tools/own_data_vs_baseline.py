"""The own-data default against two baselines, per corpus and per fold: `make own-baseline`.

    python tools/own_data_vs_baseline.py                                  # the four real-sound corpora, 5 folds each
    python tools/own_data_vs_baseline.py --corpora onsets --folds 1 2     # some of them
    python tools/own_data_vs_baseline.py --data_root my_data              # your own folder / CSV instead
    python tools/own_data_vs_baseline.py --corpora fewshot --seeds 1 2 3  # few-shot: 3 seeds of the own-data default

The `fewshot` corpus (46 classes of real sounds, 3-s clips) runs the few-shot recipe's own-data default
(`fewshot_config('demo', dataset='csv', data_root=...)`: settings from the corpus, class-disjoint splits) once per
seed (`--seeds`, default 1 2 3; the `fold` column holds the seed), 5-way 5-shot on 60 test tasks, against the untrained nearest centroid on log-mel band
statistics (`soundlab.baselines`) on the same tasks; its rows use `default` and `centroid`.

For each fold: the respiratory recipe's `own` preset (settings chosen from the training clips, printed and stored;
its LAST epoch: nothing is chosen on the test fold), `soundlab.baselines.logmel_logreg_baseline` (logistic regression
on per-band log-mel mean/std/max) and `untrained_probe` (a logistic regression on the clip embeddings of the same
CNN at its random initialisation). Single-label corpora are scored by accuracy and balanced accuracy, multi-label ones
by mAP. Writes <out>_folds.csv (one row per corpus x fold, resumed: a finished fold is not run again) and
<out>.csv / <out>.md (mean ± std over folds), and the CPU seconds of each part.
"""
import argparse, json, os, resource, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
import numpy as np, pandas as pd

CORPORA = ('drums', 'onsets', 'scenes', 'imbalanced', 'fewshot')

def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime

def run_fold(name:str, root:str, fold:int, runs:str, overrides:dict, threads:int) -> dict:
    "One corpus x fold: the default and both baselines (in a worker process)."
    import torch
    torch.set_num_threads(threads)
    from soundlab.recipes.respiratory import respiratory_config, load_cycles, run_respiratory, untrained_probe
    from soundlab.baselines import logmel_logreg_baseline
    t0 = _cpu()
    cfg = respiratory_config('own', data_root=root, fold=fold, device='cpu', out_dir=str(Path(runs)/name), **overrides)
    data = load_cycles(cfg, progress=False); t1 = _cpu()
    row, runs_ = run_respiratory(cfg, data, progress=False); r = runs_[0]; t2 = _cpu()
    lr = logmel_logreg_baseline(data['train']['records'], data['test']['records'], n_classes=len(data['classes'])); t3 = _cpu()
    pr = untrained_probe(cfg, data); t4 = _cpu()
    multi = cfg.multilabel
    pick = lambda d: (d['map'],) if multi else (d['acc'], d['bacc'])
    out = dict(corpus=name, fold=fold, metric='mAP' if multi else 'accuracy', n_train=len(data['train']['y']), n_test=len(data['test']['y']),
               n_classes=len(data['classes']))
    last = r['history'].iloc[-1]
    out['default'] = float(last.test_score if multi else last.test_acc)
    out['logreg'], out['probe'] = pick(lr)[0], pick(pr)[0]
    if not multi: out |= dict(default_bacc=float(last.test_score), logreg_bacc=lr['bacc'], probe_bacc=pr['bacc'])
    out |= dict(cpu_features_s=round(t1 - t0), cpu_default_s=round(t2 - t1), cpu_logreg_s=round(t3 - t2), cpu_probe_s=round(t4 - t3),
                **_choices(cfg.choices))
    return out

def _choices(ch:dict) -> dict:
    "A run's stored choices (`choices.json`) as two table columns: the settings in one line, and the corpus profile."
    return dict(choices='; '.join(f'{k}={v}' for k, v in ch.items() if k not in ('why', 'profile')), profile=ch['profile'])

def run_fewshot_seed(name:str, root:str, seed:int, runs:str, overrides:dict, threads:int) -> dict:
    "One seed of the few-shot own-data default and the untrained centroid baseline on its test tasks (in a worker process)."
    import torch
    torch.set_num_threads(threads)
    from soundlab.recipes.fewshot import fewshot_config, run_fewshot
    t0 = _cpu()
    cfg = fewshot_config('demo', dataset='csv', data_root=str(Path(root)/'labels.csv'), seed=seed, device='cpu', progress=False,
                         out_dir=str(Path(runs)/name), **overrides)
    r = run_fewshot(cfg); e = r['exp']
    return dict(corpus=name, fold=seed, metric=f"{e['n_way_test']}-way {e['n_shot_test']}-shot accuracy", n_test=len(r['test_accs']),
                n_classes=e['n_way_test'], default=r['acc'], centroid=r['baseline_acc'],
                default_ci=r['ci'], centroid_ci=r['baseline_ci'], cpu_default_s=round(_cpu() - t0),
                **_choices(r['choices']))

def summary(df:pd.DataFrame) -> pd.DataFrame:
    "Mean ± std (sample std) over folds of every method, per corpus."
    rows = []
    for name, d in df.groupby('corpus', sort=False):
        ms = lambda c: f'{d[c].mean():.1f} ± {d[c].std(ddof=1) if len(d) > 1 else 0.:.1f}'
        if 'centroid' in d and d.centroid.notna().all():  # few-shot: seeds, the untrained centroid on the same tasks
            rows.append(dict(corpus=name, metric=d.metric.iloc[0], folds=len(d), default=ms('default'), centroid=ms('centroid'),
                             **{'default - logreg': f"{(d.default - d.centroid).mean():+.1f} (vs centroid)",
                                'CPU min (all folds)': round(d.filter(like='cpu_').sum().sum() / 60, 1)}))
            continue
        row = dict(corpus=name, metric=d.metric.iloc[0], folds=len(d), clips=int(d.n_train.iloc[0] + d.n_test.iloc[0]), classes=int(d.n_classes.iloc[0]),
                   default=ms('default'), logreg=ms('logreg'), probe=ms('probe'))
        if d.metric.iloc[0] != 'mAP': row |= {'default bal. acc': ms('default_bacc'), 'logreg bal. acc': ms('logreg_bacc'), 'probe bal. acc': ms('probe_bacc')}
        row['default - logreg'] = f"{(d.default - d.logreg).mean():+.1f}"
        row['CPU min (all folds)'] = round(d.filter(like='cpu_').sum().sum() / 60, 1)
        rows.append(row)
    return pd.DataFrame(rows)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--corpora', nargs='*', default=list(CORPORA), help='soundlab.realsounds corpora (make_corpus names)')
    ap.add_argument('--data_root', default=None, help='your own data instead (a CSV or class folders)')
    ap.add_argument('--folds', type=int, nargs='*', default=[1, 2, 3, 4, 5])
    ap.add_argument('--seeds', type=int, nargs='*', default=[1, 2, 3], help='few-shot corpus: the seeds to run')
    ap.add_argument('--workers', type=int, default=2, help='folds run in parallel (one thread each)')
    ap.add_argument('--set', default='{}', help='JSON of respiratory_config overrides, e.g. \'{"epochs": 20}\'')
    ap.add_argument('--out', default='figures/own_data_vs_baseline'); ap.add_argument('--runs', default='data/runs/own_vs_baseline')
    a = ap.parse_args()
    from soundlab.realsounds import make_corpus
    roots = {Path(a.data_root).stem: str(a.data_root)} if a.data_root else {c: str(make_corpus(c)) for c in a.corpora}
    folds_csv = Path(f'{a.out}_folds.csv'); folds_csv.parent.mkdir(parents=True, exist_ok=True)
    done = pd.read_csv(folds_csv) if folds_csv.is_file() else pd.DataFrame(columns=['corpus', 'fold'])
    todo = [(c, k) for c in roots for k in (a.seeds if c == 'fewshot' else a.folds) if not ((done.corpus == c) & (done.fold == k)).any()]
    print(f'{len(todo)} corpus x fold runs to do ({len(done)} done)', flush=True)
    rows = done.to_dict('records')
    with ProcessPoolExecutor(a.workers) as ex:
        futs = {ex.submit(run_fewshot_seed if c == 'fewshot' else run_fold, c, roots[c], k, a.runs, json.loads(a.set), 1): (c, k)
                for c, k in todo}
        for f in as_completed(futs):
            try: row = f.result()
            except Exception as e: print(f'{futs[f]} failed: {e!r}', flush=True); continue  # the others go on; rerun resumes
            rows.append(row); print(pd.DataFrame([row]).drop(columns=['choices', 'profile']).to_string(index=False), flush=True)
            pd.DataFrame(rows).sort_values(['corpus', 'fold']).to_csv(folds_csv, index=False)
    df = pd.read_csv(folds_csv); df = df[df.corpus.isin(list(roots))]
    order = {c: i for i, c in enumerate(roots)}; df = df.sort_values(['corpus', 'fold'], key=lambda s: s.map(order) if s.name == 'corpus' else s)
    table = summary(df)
    table.to_csv(f'{a.out}.csv', index=False)
    prof = '\n'.join(f'- `{c}`: {d.profile.iloc[0]}; chosen (fold 1): {d.choices.iloc[0]}' for c, d in df.groupby('corpus', sort=False))
    Path(f'{a.out}.md').write_text(table.to_markdown(index=False) + '\n\nPer fold:\n\n'
                                   + df.drop(columns=['choices', 'profile']).round(1).to_markdown(index=False) + '\n\nCorpora and choices:\n\n' + prof + '\n')
    plot(df, f'{a.out}.png')
    print(table.to_string(index=False))

def plot(df:pd.DataFrame, path:str):
    "Per corpus: each method's mean over folds (bars) and every fold (dots)."
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    methods = [m for m in ('default', 'logreg', 'probe', 'centroid') if m in df]
    names = {'default': 'own-data default (last epoch)', 'logreg': 'log-mel logistic regression', 'probe': 'untrained CNN, linear probe',
             'centroid': 'untrained nearest centroid (few-shot)'}
    corpora = list(dict.fromkeys(df.corpus)); w = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.9 * len(corpora) + 2, 3.6))
    for j, m in enumerate(methods):
        label = names[m]  # on the method's first bar only
        for i, c in enumerate(corpora):
            v = df.loc[df.corpus == c, m].dropna()
            if v.empty: continue
            x = i + (j - (len(methods) - 1) / 2) * w
            ax.bar(x, v.mean(), w, color=f'C{j}', label=label); label = None
            ax.plot([x] * len(v), v, 'k.', ms=3)
    ax.set_xticks(range(len(corpora)), [f"{c}\n({df.loc[df.corpus == c, 'metric'].iloc[0]})" for c in corpora], fontsize=8)
    ax.set_ylabel('test score (%), mean over folds / seeds'); ax.set_ylim(0, 100); ax.legend(fontsize=7, loc='lower left')
    ax.set_title('Own data: the default against baselines (real sounds, dots: folds)', fontsize=9)
    fig.tight_layout(); fig.savefig(path, dpi=120); plt.close(fig)

if __name__ == '__main__': main()

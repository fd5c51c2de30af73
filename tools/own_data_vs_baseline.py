"""Own-data default recipe vs the log-mel logistic-regression baseline, per fold, on a folder of recordings.

    python tools/own_data_vs_baseline.py --data_root data/real          # make_real_corpus writes it first if missing
    python tools/own_data_vs_baseline.py --data_root my.csv --folds 1 2 --ast   # also the AST recipe (demo preset)

Prints one row per fold (test accuracy / balanced accuracy, %) and writes them to --out (CSV + Markdown).
The recipe's numbers are its LAST epoch (no epoch chosen on the test fold), the baseline's are its only fit.
"""
import argparse, time
from pathlib import Path
import numpy as np, pandas as pd
from dataclasses import replace

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data_root', default='data/real'); ap.add_argument('--dataset', default='folder')
    ap.add_argument('--folds', type=int, nargs='*', default=None); ap.add_argument('--epochs', type=int, default=None)
    ap.add_argument('--ast', action='store_true', help='also the AST recipe (demo preset, from scratch)')
    ap.add_argument('--device', default='auto'); ap.add_argument('--out', default='figures/own_data_vs_baseline')
    ap.add_argument('--runs', default='data/runs/own_vs_baseline', help='checkpoints (a finished fold is resumed, not retrained)')
    a = ap.parse_args()
    from soundlab.data.folder import make_real_corpus, prepare_folder, folder_folds
    from soundlab.baselines import logmel_logreg_baseline
    from soundlab.recipes.respiratory import respiratory_config, load_cycles, run_respiratory
    root = Path(a.data_root)
    if not root.exists() and a.data_root == 'data/real': make_real_corpus(root)
    folds = a.folds or folder_folds(root, a.dataset)
    rows = []
    for k in folds:
        sp = prepare_folder(root, k or 1, dataset=a.dataset)
        t0 = time.time(); b = logmel_logreg_baseline(sp['train'], sp['test']); tb = time.time() - t0
        cfg = respiratory_config('own', dataset=a.dataset, data_root=str(root), fold=k or 1, epochs=a.epochs,
                                 t_max=a.epochs, device=a.device)
        cfg = replace(cfg, out_dir=str(Path(a.runs)/f'e{cfg.epochs}_d{cfg.duration:g}_lr{cfg.lr:g}'))  # fresh runs, never resumed from others
        t0 = time.time(); row, runs = run_respiratory(cfg, load_cycles(cfg, progress=False), progress=False); tr = time.time() - t0
        r = runs[0]
        out = dict(fold=k, n_train=len(sp['train']), n_test=len(sp['test']), n_classes=len(sp['classes']),
                   baseline_acc=b['acc'], baseline_bacc=b['bacc'], recipe_acc=r['last_acc'], recipe_bacc=r['last_score'],
                   recipe_best_acc=r['acc'], recipe=f'respiratory own: {cfg.backbone} {cfg.method} {cfg.epochs} ep lr {cfg.lr:g} '
                   f'{cfg.duration:g} s', baseline_s=round(tb, 1), recipe_s=round(tr, 1))
        if a.ast:
            from soundlab.recipes.ast import ast_config, run_ast
            acfg = ast_config('demo', 'esc50', dataset=a.dataset, data_root=str(root), folds=(k,), device=a.device)
            out['ast_acc'] = run_ast(acfg, progress=False)['acc_fold'][f'fold{k}']
        rows.append(out); print(pd.DataFrame([out]).to_string(index=False), flush=True)
        write(rows, a.out)

def write(rows, out):
    df = pd.DataFrame(rows)
    mean = df.select_dtypes('number').mean().to_dict() | dict(fold='mean', recipe=rows[0]['recipe'])
    df = pd.concat([df, pd.DataFrame([mean])], ignore_index=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    df.round(2).to_csv(f'{out}.csv', index=False); Path(f'{out}.md').write_text(df.round(2).to_markdown(index=False) + '\n')
    print(df.round(2).to_string(index=False), flush=True)

if __name__ == '__main__': main()

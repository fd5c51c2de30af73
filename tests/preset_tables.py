"""The `paper` presets as data: one CSV per recipe (and dataset / task) under `tests/conformance/presets/`.

Each row is one setting of the seed's run script, argparse defaults or config file, read side by side with soundlab:

    setting      what it is (e.g. 'optimizer', 'lr', 'batch size', 'SpecAugment time mask')
    seed_value   the seed's value as its code has it (free text: '1e-4', 'Adam', 'MultiStepLR([325, 425], 0.1)')
    seed_source  where: '<owner>/<repo>@<commit7+> <file>:<line>' (several separated by '; ')
    field        the soundlab config field that holds it (a dotted path into dict fields: 'synth.n_patients'), or ''
                 where no single field does (then `note` names the test that checks the behaviour: 'test_...')
    value        the soundlab value, a Python literal compared with `field` of the config
    status       'equal', or 'differs' (then `note` says why, and which setting gives the seed's behaviour)
    note         free text

The file name says which config it describes: `<recipe>[@k=v,k=v].csv` is `<recipe>_config('paper', k=v, ...)` from
`soundlab.recipes.<recipe>` (a `preset=NAME` key picks another preset), e.g. `ast@task=esc50.csv`.
`tests/test_paper_presets.py` asserts every row; `python tests/preset_tables.py` renders all tables into the README
between the `<!-- paper-presets:begin -->` and `<!-- paper-presets:end -->` markers (a test checks it is in sync).
"""
from __future__ import annotations
import ast, csv, importlib, math, re, sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TABLES = REPO / 'tests' / 'conformance' / 'presets'
COLUMNS = ['setting', 'seed_value', 'seed_source', 'field', 'value', 'status', 'note']
BEGIN, END = '<!-- paper-presets:begin -->', '<!-- paper-presets:end -->'
SOURCE = re.compile(r'^[\w.-]+/[\w.-]+@[0-9a-f]{7,40} \S+(:\d+(-\d+)?)?$')  # owner/repo@commit file[:line[-line]]

def table_paths() -> list[Path]: return sorted(TABLES.glob('*.csv'))

def read_table(path:Path) -> list[dict]:
    "The rows of one table, checked for its columns (a clear error naming the file and line otherwise)."
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
        header = list(rows[0].keys()) if rows else []
    if header != COLUMNS: raise ValueError(f'{path}: columns must be {COLUMNS}, not {header}')
    return rows

def config_call(path:Path) -> tuple[str, dict]:
    "`(recipe, kwargs)` from a table's file name: 'ast@task=esc50.csv' -> ('ast', {'preset': 'paper', 'task': 'esc50'})."
    recipe, _, rest = path.stem.partition('@')
    kw = dict(kv.split('=', 1) for kv in rest.split(',')) if rest else {}
    return recipe, {'preset': 'paper', **kw}

def make_config(path:Path):
    recipe, kw = config_call(path)
    mod = importlib.import_module(f'soundlab.recipes.{recipe}')
    return getattr(mod, f'{recipe}_config')(**kw)

def resolve(cfg, field:str):
    "The value at a dotted `field` of a config: attributes, then dict keys."
    v = cfg
    for part in field.split('.'): v = v[part] if isinstance(v, dict) else getattr(v, part)
    return v

def same(a, b) -> bool:
    "Equality of config values: floats to 1e-12 relative (1e-4 written as 0.0001), sequences element-wise."
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict): return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, bool) or isinstance(b, bool): return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)): return math.isclose(a, b, rel_tol=1e-12, abs_tol=0)
    return a == b

def row_problems(path:Path, cfg=None) -> list[str]:
    "Every way the table at `path` disagrees with its config or with the table rules (empty: it holds)."
    cfg = make_config(path) if cfg is None else cfg
    out = []
    for i, r in enumerate(read_table(path), start=2):  # line 1 is the header
        where = f'{path.name}:{i} ({r["setting"]!r})'
        if not r['setting'] or not r['seed_value']: out.append(f'{where}: setting and seed_value are required')
        for src in filter(None, (s.strip() for s in r['seed_source'].split(';'))):
            if not SOURCE.match(src): out.append(f'{where}: seed_source {src!r} is not "owner/repo@commit file:line"')
        if not r['seed_source'].strip(): out.append(f'{where}: seed_source is required')
        if r['status'] not in ('equal', 'differs'): out.append(f"{where}: status must be 'equal' or 'differs', not {r['status']!r}")
        if r['status'] == 'differs' and not r['note'].strip(): out.append(f'{where}: a difference needs a note (why; the seed setting)')
        if not r['field']:
            if 'test_' not in r['note']: out.append(f'{where}: a row without a field must name the test that checks it')
            continue
        try: got = resolve(cfg, r['field'])
        except (AttributeError, KeyError): out.append(f'{where}: the config has no field {r["field"]!r}'); continue
        try: want = ast.literal_eval(r['value'])
        except (ValueError, SyntaxError): out.append(f'{where}: value {r["value"]!r} is not a Python literal'); continue
        if not same(got, want): out.append(f'{where}: {r["field"]} is {got!r} in the config, the table says {want!r}')
    return out

def render(paths=None) -> str:
    "All tables as Markdown: one heading per table (its config call), the counts, then the rows."
    parts = []
    for p in paths or table_paths():
        rows, (recipe, kw) = read_table(p), config_call(p)
        call = f"{recipe}_config({', '.join(repr(v) if k == 'preset' else f'{k}={v!r}' for k, v in kw.items())})"
        n_diff = sum(r['status'] == 'differs' for r in rows)
        parts += [f'#### `{call}`', '', f'{len(rows)} settings, {len(rows) - n_diff} equal, {n_diff} differ.', '',
                  '| setting | seed | seed source | soundlab field = value | status | note |', '|---|---|---|---|---|---|']
        for r in rows:
            fv = f"`{r['field']} = {r['value']}`" if r['field'] else '—'
            cells = [r['setting'], f"`{r['seed_value']}`", r['seed_source'], fv, r['status'], r['note']]
            parts.append('| ' + ' | '.join(c.replace('|', '\\|').replace('\n', ' ') for c in cells) + ' |')
        parts.append('')
    return '\n'.join(parts).rstrip() + '\n'

def readme_with_tables(readme:str) -> str:
    "The README text with the rendered tables between the markers."
    if BEGIN not in readme or END not in readme: raise ValueError(f'README needs the markers {BEGIN} and {END}')
    head, rest = readme.split(BEGIN, 1)
    return head + BEGIN + '\n' + render() + END + rest.split(END, 1)[1]

if __name__ == '__main__':
    readme = REPO / 'README.md'
    new = readme_with_tables(readme.read_text())
    readme.write_text(new)
    print(f'rendered {len(table_paths())} preset tables into {readme}', file=sys.stderr)

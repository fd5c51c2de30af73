"""Build the documentation site (`make docs`): stage the README and the notebooks as MyST-NB sources, then run Sphinx.

- home page: README.md (links to files outside the site point at the repository);
- one page per library notebook (nbs/NN_name.ipynb -> name.html): its prose, the API of every exported name
  (nbdev's `show_doc`: signature with the docments parameter comments, docstring; public methods of classes too) in
  place of the exported source, and its tests/examples as code (library notebooks are stored without outputs);
- one page per run notebook, rendered from its executed copy figures/run_*.ipynb (never re-executed here).

    python docs/build.py [--out _docs] [--stage _proc/docs] [-j 2]
"""
from __future__ import annotations
import argparse, ast, base64, configparser, copy, importlib, inspect, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NBS, FIGS = REPO / 'nbs', REPO / 'figures'
_DIRECTIVE = re.compile(r'^\s*#\s*\|\s*([\w-]+):?\s*(.*?)\s*$')
_NUM = re.compile(r'^\d+[a-z]?_')

def settings():
    cfg = configparser.ConfigParser(); cfg.read(REPO / 'settings.ini'); return cfg['DEFAULT']

def page_name(nb: Path) -> str:
    "Page (docname) of a notebook: nbdev's convention, the file name without its number prefix (40_train -> train)."
    return _NUM.sub('', nb.stem)

def split_directives(src: str):
    "nbdev cell directives (`#| export`, `#| hide`, ...) as {name: args} and the source without them."
    dirs, body, head = {}, [], True
    for line in src.splitlines():
        m = _DIRECTIVE.match(line) if head else None
        if m: dirs[m.group(1)] = m.group(2); continue
        if line.strip(): head = False
        body.append(line)
    return dirs, '\n'.join(body).strip('\n')

def _md_cell(text): return {'cell_type': 'markdown', 'metadata': {}, 'source': text}
def _code_cell(text): return {'cell_type': 'code', 'metadata': {}, 'source': text, 'outputs': [], 'execution_count': None}

def render_doc(obj, name: str, level: int = 3) -> str:
    "Markdown API entry of `obj`: nbdev's show_doc without its Quarto-only source link."
    try:
        from nbdev.showdoc import show_doc
        md = show_doc(obj, name=name, title_level=level)._repr_markdown_()
    except Exception:  # fall back to inspect (show_doc failing on an exotic object must not break the site)
        try: sig = f'{name}{inspect.signature(obj)}'
        except (TypeError, ValueError): sig = name
        md = f"{'#' * level} {name}\n\n```python\n{sig}\n```\n\n{inspect.getdoc(obj) or ''}"
    # drop the Quarto-only source link, and the docstring of `function.__call__` show_doc gives undocumented functions
    lines = [l for l in md.strip().splitlines() if not l.startswith('[source](') and l != '*Call self as a function.*']
    if inspect.isclass(obj): lines = [f'class {l[4:]}' if l.startswith(f'def {name}') else l for l in lines]
    while lines and lines[0].strip() in ('', '---'): lines.pop(0)
    md = '\n'.join(lines).replace('```python\n\n', '```python\n').replace('\n\n\n```', '\n```')
    return re.sub(r'\(\n\s*\n\)', '()', md)  # show_doc's empty argument list

def _decorators(node): return [ast.unparse(d) for d in getattr(node, 'decorator_list', [])]

def api_entries(src: str, mod) -> list[str]:
    "API entries for the public names an exported cell defines in module `mod` (classes with their public methods)."
    try: tree = ast.parse(src)
    except SyntaxError: return []
    out, done = [], set()
    def method(cls_name, attr):  # Cls.attr, documented once
        cls = getattr(mod, cls_name, None)
        m = inspect.getattr_static(cls, attr, None) if inspect.isclass(cls) and f'{cls_name}.{attr}' not in done else None
        if isinstance(m, (staticmethod, classmethod)): m = m.__func__
        if isinstance(m, property):
            doc = m.__doc__ or (m.fget.__doc__ if m.fget else '') or ''
            out.append(f'#### {cls_name}.{attr}\n\n```python\n{cls_name}.{attr}  # property\n```' + (f'\n\n*{doc}*' if doc else ''))
            done.add(f'{cls_name}.{attr}')
        elif callable(m): out.append(render_doc(m, f'{cls_name}.{attr}', 4)); done.add(f'{cls_name}.{attr}')
        return m
    for node in tree.body:
        if isinstance(node, ast.Assign):  # `Cls.a, Cls.b = _a, _b`: functions attached to a class under public names
            for t in node.targets:
                for a in (t.elts if isinstance(t, ast.Tuple) else [t]):
                    if isinstance(a, ast.Attribute) and isinstance(a.value, ast.Name) and not a.attr.startswith('_'):
                        method(a.value.id, a.attr)
            continue
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith('_'):
            continue
        # a method added to a class after its definition: `@patch def f(self:Cls, ...)` or `def f(self:Cls, ...)` with
        # `Cls.f = f`; documented as Cls.f
        first = node.args.args[0] if not isinstance(node, ast.ClassDef) and node.args.args else None
        if first is not None and first.annotation is not None and (first.arg in ('self', 'cls') or
                                                                   any(d.startswith('patch') for d in _decorators(node))):
            cls_name = ast.unparse(first.annotation).strip('()').split('|')[0].strip()
            if method(cls_name, node.name) is None and f'{cls_name}.{node.name}' not in done:
                # attached later under this name (`Cls.f = f` in a later cell): document it here under Cls.f
                obj = getattr(mod, node.name, None)
                if callable(obj): out.append(render_doc(obj, f'{cls_name}.{node.name}', 4)); done.add(f'{cls_name}.{node.name}')
            continue
        obj = getattr(mod, node.name, None)
        if obj is None: continue
        out.append(render_doc(obj, node.name, 3))
        if isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and not sub.name.startswith('_'):
                    method(node.name, sub.name)
    return out

def _relink(text: str, pages: dict[str, str], base: str) -> str:
    "Markdown links: notebooks -> their pages; other repository-relative paths -> the repository on the web."
    def sub(m):
        label, target = m.group(1), m.group(2)
        if re.match(r'^[a-z]+:|^#|^/', target): return m.group(0)
        path, _, frag = target.partition('#')
        stem = Path(path).stem
        if path.endswith('.ipynb') and stem in pages: return f'[{label}]({pages[stem]}.ipynb{"#" + frag if frag else ""})'
        return f'[{label}]({base}/{path.lstrip("./")}{"#" + frag if frag else ""})'
    return re.sub(r'(?<!!)\[([^\]]*)\]\(([^)\s]+)\)', sub, text)

_FIGURE = re.compile(r'!\[[^\]]*\]\((?:\.\./)?figures/([^)\s]+\.png)\)')

def _split_figures(text: str) -> list:
    """A library notebook's markdown around its images of figures/*.png (the screenshot `make docs-check` takes): the text
    parts, and for each existing image a code cell showing the PNG (the site is staged outside the repository, so a relative
    image path would not resolve); an image whose file is missing stays as it was written."""
    out, pos = [], 0
    for m in _FIGURE.finditer(text):
        if not (FIGS / m.group(1)).exists(): continue
        # a source MyST-NB keeps (it skips empty cells), hidden by the tag: only the picture shows
        out += [text[pos:m.start()], {**_code_cell(f'# figures/{m.group(1)}'), 'metadata': {'tags': ['remove-input']},
                                      'outputs': [_png_output(FIGS / m.group(1))]}]
        pos = m.end()
    return [t for t in out + [text[pos:]] if not isinstance(t, str) or t.strip()]

def stage_library(nb_path: Path, pages: dict, base: str) -> dict:
    nb = json.loads(nb_path.read_text())
    cells, mod = [], None
    for c in nb['cells']:
        src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        if c['cell_type'] == 'markdown': cells += [_md_cell(_relink(t, pages, base)) if isinstance(t, str) else t for t in _split_figures(src)]; continue
        if c['cell_type'] != 'code': continue
        dirs, body = split_directives(src)
        if 'default_exp' in dirs: mod = importlib.import_module(f"soundlab.{dirs['default_exp'].split()[0]}"); continue
        if 'hide' in dirs or 'exporti' in dirs or 'exec_doc' in dirs or not body: continue
        exported = {'export', 'exports', 'exp'} & dirs.keys()
        if exported:
            target = dirs[exported.pop()].split()
            m = importlib.import_module(f'soundlab.{target[0]}') if target and not target[0].startswith('-') else mod
            if 'exports' in dirs: cells.append(_code_cell(body))
            cells += [_md_cell(e) for e in api_entries(body, m)] if m is not None else []
        else: cells.append(_code_cell(body))
    return {**nb, 'cells': cells, 'metadata': {k: v for k, v in nb['metadata'].items() if k in ('kernelspec', 'language_info')}}

def _run_copy(nb_path: Path) -> Path | None:
    "The executed copy of a run notebook in figures/ (figures/run_icbhi_mscl.ipynb for nbs/run_icbhi.ipynb)."
    cands = sorted(FIGS.glob(f'{nb_path.stem}_*.ipynb')) + sorted(FIGS.glob(f'{nb_path.stem}.ipynb'))
    return cands[0] if cands else None

def _figure_files(src: str, key: str) -> list[Path]:
    "PNG files in figures/ that a run-notebook cell writes: its '...png' literals as globs ({expr} -> *)."
    out = []
    for lit in re.findall(r"""['"]([^'"\n]*\.png)['"]""", src):
        pat = re.sub(r'\{[^}]*\}', '*', Path(lit).name)
        out += [f for f in sorted(FIGS.glob(pat)) if not pat.startswith('*') or key in f.name]
    return list(dict.fromkeys(out))

def _png_output(f: Path) -> dict:
    return {'output_type': 'display_data', 'metadata': {},
            'data': {'image/png': base64.b64encode(f.read_bytes()).decode(), 'text/plain': f'figures/{f.name}'}}

def stage_result(nb_path: Path, pages: dict, base: str) -> dict:
    copy_ = _run_copy(nb_path)
    nb = json.loads((copy_ or nb_path).read_text())
    cells = []
    for c in nb['cells']:
        src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        if c['cell_type'] == 'raw': continue  # Quarto front matter
        if c['cell_type'] == 'markdown': cells.append(_md_cell(_relink(src, pages, base))); continue
        dirs, body = split_directives(src)
        if 'hide' in dirs: continue
        c = copy.deepcopy(c); c['source'] = body
        # progress-bar widgets need JavaScript from the web and show nothing useful once the run is over
        c['outputs'] = [o for o in c.get('outputs', []) if 'application/vnd.jupyter.widget-view+json' not in o.get('data', {})]
        c['metadata'] = {k: v for k, v in c.get('metadata', {}).items() if k == 'tags'}
        # the run notebooks save their plots to figures/ and close them (the stored output is '<Figure size ...>'):
        # show the saved PNGs in their place
        shown = any(k.startswith('image/') for o in c['outputs'] for k in o.get('data', {}))
        figs = _figure_files(body, nb_path.stem.removeprefix('run_')) if copy_ and not shown else []
        if figs:
            c['outputs'] = [o for o in c['outputs'] if not ''.join(o.get('data', {}).get('text/plain', '')).startswith('<Figure')]
            c['outputs'] += [_png_output(f) for f in figs]
        cells.append(c)
    rel = (copy_ or nb_path).relative_to(REPO)
    note = (f'*Rendered from the executed copy `{rel}` (outputs as stored; the site build does not run notebooks).*'
            if copy_ else f'*No executed copy in `figures/` yet: this is the source `{rel}`; run it with '
                          f'`.venv/bin/papermill {rel} figures/{nb_path.stem}_demo.ipynb -p preset demo`.*')
    at = 1 if cells and cells[0]['cell_type'] == 'markdown' else 0
    cells.insert(at, _md_cell(note))
    meta = {k: v for k, v in nb['metadata'].items() if k in ('kernelspec', 'language_info')}
    return {**nb, 'cells': cells, 'metadata': meta}

def _title_and_desc(nb: dict):
    for c in nb['cells']:
        if c['cell_type'] == 'markdown':
            src = ''.join(c['source'])
            t = re.search(r'^#\s+(.+)$', src, re.M); d = re.search(r'^>\s*(.+)$', src, re.M)
            if t: return t.group(1).strip(), (d.group(1).strip() if d else '')
    return None, ''

def _write(path: Path, text: str):
    "Write only when changed, so that Sphinx rebuilds only the pages whose source changed."
    if not path.exists() or path.read_text() != text: path.write_text(text)

def stage(stage_dir: Path) -> dict:
    "Write the site's sources into `stage_dir`; return {'library': [...], 'results': [...]} page names."
    stage_dir.mkdir(parents=True, exist_ok=True)
    s = settings(); base = f"{s['git_url']}/blob/{s.get('branch', 'main')}"
    nbs = sorted(NBS.glob('*.ipynb'))
    lib = [p for p in nbs if '"#| default_exp' in p.read_text()]
    res = [p for p in nbs if p not in lib]
    res.sort(key=lambda p: (not p.stem.startswith('run_'), p.stem))
    pages = {p.stem: page_name(p) for p in nbs}
    if sys.path[0] != str(REPO): sys.path.insert(0, str(REPO))
    rows = {'library': [], 'results': []}
    for kind, group, fn in (('library', lib, stage_library), ('results', res, stage_result)):
        for p in group:
            nb = fn(p, pages, base)
            nb['nbformat'], nb['nbformat_minor'] = 4, 5
            for i, c in enumerate(nb['cells']): c['id'] = f'cell-{i}'
            _write(stage_dir / f'{pages[p.stem]}.ipynb', json.dumps(nb, indent=1, ensure_ascii=False))
            title, desc = _title_and_desc(nb)
            rows[kind].append((pages[p.stem], title or p.stem, desc))
    toc = lambda key: '\n'.join(n for n, _, _ in rows[key])
    label = lambda key, n, t: f'`soundlab.{n}`' if key == 'library' else t
    table = lambda key: '\n'.join(f'| [{label(key, n, t)}]({n}.ipynb) | {d.replace("|", "/")} |' for n, t, d in rows[key])
    _write(stage_dir / 'library.md', '# Library reference\n\nOne page per library notebook (`nbs/NN_*.ipynb`): its prose, '
           'the API of what it exports (signatures with parameter comments, docstrings) and its tests and examples.\n\n'
           f'| module | what it does |\n|---|---|\n{table("library")}\n\n```{{toctree}}\n:hidden:\n\n{toc("library")}\n```\n')
    _write(stage_dir / 'results.md', '# Results\n\nThe result notebooks (`nbs/run_*.ipynb`, run with papermill), rendered '
           'from their executed copies in `figures/` with the tables and figures they wrote.\n\n'
           f'| notebook | what it does |\n|---|---|\n{table("results")}\n\n```{{toctree}}\n:hidden:\n\n{toc("results")}\n```\n')
    readme = _relink((REPO / 'README.md').read_text(), pages, base)
    _write(stage_dir / 'index.md', readme + '\n\n## This site\n\n- [Library reference](library.md): one page per module.\n'
           '- [Results](results.md): the result notebooks with their outputs.\n\n'
           '```{toctree}\n:hidden:\n:maxdepth: 1\n\nlibrary\nresults\n```\n')
    keep = {f'{n}.ipynb' for k in rows.values() for n, _, _ in k} | {'library.md', 'results.md', 'index.md', '_build'}
    for f in stage_dir.iterdir():
        if f.name not in keep: shutil.rmtree(f) if f.is_dir() else f.unlink()
    return {k: [n for n, _, _ in v] for k, v in rows.items()}

def build(out: Path = REPO / '_docs', stage_dir: Path = REPO / '_proc' / 'docs', jobs: str = '1', quiet=True) -> dict:
    "Stage the sources and run Sphinx into `out`; raises CalledProcessError when Sphinx fails."
    t0 = time.time()
    pages = stage(Path(stage_dir))
    # Sphinx writes into <stage>/_build/html (MyST-NB puts its image folder next to the HTML folder, so not next to
    # _docs/ in the repository), then the finished site is copied to `out`
    html = Path(stage_dir) / '_build' / 'html'
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-c', str(REPO / 'docs'),
           '-d', str(Path(stage_dir) / '_build' / 'doctrees'), '-j', str(jobs), *(['-q'] if quiet else []), str(stage_dir), str(html)]
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, 'PYTHONPATH': str(REPO)})
    out = Path(out)
    if out.exists(): shutil.rmtree(out)
    shutil.copytree(html, out, ignore=shutil.ignore_patterns('.buildinfo', '_sources'))
    print(f'docs: {len(pages["library"])} library pages, {len(pages["results"])} result pages -> {out}/index.html '
          f'({time.time() - t0:.0f} s)')
    return pages

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(REPO / '_docs')); ap.add_argument('--stage', default=str(REPO / '_proc' / 'docs'))
    ap.add_argument('-j', '--jobs', default='1'); ap.add_argument('-v', '--verbose', action='store_true')
    a = ap.parse_args()
    build(Path(a.out), Path(a.stage), a.jobs, quiet=not a.verbose)

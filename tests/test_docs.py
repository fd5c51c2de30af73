"`make docs`: the site builds offline from the notebooks, has its key pages, and no internal link is broken."
import importlib.util, json
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
_missing = [m for m in ('sphinx', 'myst_nb', 'furo') if importlib.util.find_spec(m) is None]
if _missing: pytest.skip(f'docs toolchain not installed ({", ".join(_missing)}): make install', allow_module_level=True)
def _load(name):  # docs/<name>.py by path (docs/build.py must not be confused with the `build` package)
    spec = importlib.util.spec_from_file_location(f'soundlab_docs_{name}', REPO / 'docs' / f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod); return mod
docs_build, linkcheck = _load('build'), _load('linkcheck')

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp('docs')
    pages = docs_build.build(out=d / 'site', stage_dir=d / 'stage', jobs='2')
    return d / 'site', pages

def test_key_pages(site):
    root, pages = site
    lib_nbs = [p for p in (REPO / 'nbs').glob('*.ipynb') if '"#| default_exp' in p.read_text()]
    assert len(pages['library']) == len(lib_nbs) > 20
    for name in ['index', 'library', 'results', 'train', 'core', 'run_icbhi', *pages['library'], *pages['results']]:
        assert (root / f'{name}.html').exists(), name
    home = (root / 'index.html').read_text()
    assert 'Quick start' in home and 'href="library.html"' in home and 'href="results.html"' in home

def test_library_page_has_api_prose_and_tests(site):
    html = (site[0] / 'train.html').read_text()
    assert 'One training loop for every recipe' in html                       # the notebook's prose
    assert 'id="trainer"' in html and 'id="trainer-fit"' in html              # class and its public method
    assert 'everything that trains (backbone + heads)' in html                 # a docments parameter comment
    assert 'Train up to' in html                                              # a docstring
    assert 'test_eq' in html                                                  # the notebook's tests, as code
    assert '#| export' not in html and '#| hide' not in html                  # nbdev directives are not shown
    if (REPO / 'figures' / 'tensorboard_scalars.png').exists():               # make docs-check's TensorBoard screenshot
        assert html.count('<img') >= 1 and 'tensorboard_scalars.png' not in html.split('<img', 1)[1][:300]  # embedded, not a dead link

def test_result_page_from_executed_copy(site):
    html = (site[0] / 'run_icbhi.html').read_text()
    executed = json.loads(next((REPO / 'figures').glob('run_icbhi_*.ipynb')).read_text())
    assert 'Rendered from the executed copy' in html
    assert '<table' in html and 'dataframe' in html                            # stored outputs: the results table
    n_png = sum(1 for p in (REPO / 'figures').glob('icbhi_*.png'))
    assert html.count('<img') >= min(n_png, 1)                                 # the saved figures, shown
    assert 'widget-view' not in html and 'cdn.jsdelivr' not in html            # nothing that needs the web to render
    assert executed['cells'], 'empty executed copy'

def test_no_broken_internal_link(site, tmp_path):
    n, broken = linkcheck.check_site(site[0])
    assert n > 1000 and broken == [], broken[:10]
    # the checker does catch a broken file link and a broken anchor
    (tmp_path / 'a.html').write_text('<a href="b.html">x</a><a href="a.html#nowhere">y</a><p id="here"></p>'
                                     '<a href="#here">z</a><a href="https://example.org/">ext</a>')
    n, broken = linkcheck.check_site(tmp_path)
    assert n == 3 and [(l, why) for _, l, why in broken] == [('b.html', 'missing file'), ('a.html#nowhere', 'missing anchor')]

def test_directives_and_links():
    dirs, body = docs_build.split_directives('#| export\n#|hide\nx = 1\n#| not a directive later')
    assert dirs == {'export': '', 'hide': ''} and body == 'x = 1\n#| not a directive later'
    pages = {'40_train': 'train', 'run_icbhi': 'run_icbhi'}
    out = docs_build._relink('[t](40_train.ipynb#a) [d](data/README.md) [w](https://x.org) ![i](img.png)', pages, 'B')
    assert out == '[t](train.ipynb#a) [d](B/data/README.md) [w](https://x.org) ![i](img.png)'

# Sphinx configuration of the documentation site (`make docs`; the sources are staged by docs/build.py).
# Sphinx + MyST-NB instead of nbdev's Quarto (Quarto cannot be installed here): MyST-NB renders notebooks with their
# stored outputs without executing them, parses the notebooks' Markdown (tables, math) and the README natively, builds
# offline with pure-Python wheels, and Sphinx / MyST (Executable Books, the Jupyter Book engine) are actively
# maintained. Furo is a light, maintained theme with a sidebar and search that work from file://.
import configparser, os
from pathlib import Path

_cfg = configparser.ConfigParser(); _cfg.read(Path(__file__).resolve().parents[1] / 'settings.ini')
_s = _cfg['DEFAULT']
project, author, copyright = _s['title'], _s['author'], _s['copyright']
release = version = _s['version']

extensions = ['myst_nb']
nb_execution_mode = 'off'            # notebooks are rendered as stored: library sources, executed run copies
nb_ipywidgets_js = {}                # no widget JavaScript from a CDN (widget outputs are dropped when staging)
nb_merge_streams = True
myst_enable_extensions = ['dollarmath', 'amsmath', 'colon_fence', 'deflist']
myst_heading_anchors = 3
suppress_warnings = ['mystnb.unknown_mime_type', 'myst.header']
exclude_patterns = ['_build', '**.ipynb_checkpoints']

html_theme = 'furo'
html_title = f'{project} {version}'
html_copy_source = False
html_show_sourcelink = False
html_theme_options = {'navigation_with_keys': True}
html_static_path = []

"Layers point down: readers never import the corpus generators, and two modules never import each other."
import ast
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parents[1] / 'soundlab'

def imports(path:Path) -> set:
    "Every soundlab module a source file imports (absolute or relative, at any depth of the file)."
    mod = path.relative_to(PKG.parent).with_suffix('').parts
    pkg = mod[:-1] if mod[-1] != '__init__' else mod[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import): out |= {a.name for a in node.names if a.name.startswith('soundlab')}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level: base = '.'.join(pkg[:len(pkg) - node.level + 1] + ((base,) if base else ()))
            if base.startswith('soundlab'): out |= {base} | {f'{base}.{a.name}' for a in node.names}
    return out

GRAPH = {'.'.join(p.relative_to(PKG.parent).with_suffix('').parts).removesuffix('.__init__'): imports(p) for p in PKG.rglob('*.py')}

def uses(a:str, b:str) -> bool: return any(m == b or m.startswith(b + '.') for m in GRAPH[a])

@pytest.mark.parametrize('reader', sorted(m for m in GRAPH if m.startswith('soundlab.data.')))
def test_readers_do_not_import_generators(reader):
    assert not uses(reader, 'soundlab.synth') and not uses(reader, 'soundlab.realsounds'), (reader, sorted(GRAPH[reader]))

def test_no_two_modules_import_each_other():
    pairs = sorted({tuple(sorted((a, b))) for a in GRAPH for b in GRAPH if a != b and uses(a, b) and uses(b, a)
                    and not (a.startswith(b + '.') or b.startswith(a + '.'))})  # a package and its own modules aside
    assert not pairs, pairs

def test_the_moved_names_have_one_home():
    import soundlab.data.core, soundlab.data.tagging, soundlab.features, soundlab.synth.events, soundlab.streaming
    assert soundlab.data.tagging.read_label_csv is soundlab.data.core.read_label_csv  # re-exported, one definition
    assert soundlab.streaming.read_label_csv is soundlab.data.core.read_label_csv
    assert soundlab.synth.events.metaaudio_logmel is soundlab.features.metaaudio_logmel
    assert not hasattr(soundlab.synth, '_ma_logmel')

"""Every result notebook's `parameters` cell parses cleanly with papermill: no "Unable to parse line" warning (papermill
skips any line with more than one '=', a `=` inside a comment included), and papermill finds every name the cell assigns
(`papermill --prepare-only` and `-p NAME VALUE` use the same inspection)."""
import ast, logging
from pathlib import Path
import nbformat, pytest
from papermill.translators import PythonTranslator

NBS = sorted((Path(__file__).resolve().parents[1] / 'nbs').glob('run_*.ipynb'))

def parameters_cell(path):
    cells = [c for c in nbformat.read(path, as_version=4).cells if 'parameters' in c.metadata.get('tags', [])]
    assert len(cells) == 1, f'{path.name}: {len(cells)} cells tagged "parameters" (need exactly one)'
    return cells[0]

@pytest.mark.parametrize('path', NBS, ids=lambda p: p.stem)
def test_parameters_cell_parses(path, caplog):
    cell = parameters_cell(path)
    with caplog.at_level(logging.WARNING, logger='papermill'): found = {p.name for p in PythonTranslator.inspect(cell)}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not warnings, f'{path.name}: ' + '\n'.join(warnings)
    assigned = {t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    assert found == assigned, f'{path.name}: papermill does not see {sorted(assigned - found)}'

def test_the_check_catches_an_equals_sign_in_a_comment(caplog):
    cell = nbformat.v4.new_code_cell("a = 1  # fine\nb = None  # e.g. x=1\n"); cell.metadata['tags'] = ['parameters']
    with caplog.at_level(logging.WARNING, logger='papermill'): found = {p.name for p in PythonTranslator.inspect(cell)}
    assert found == {'a'} and any('Unable to parse line 2' in r.getMessage() for r in caplog.records)

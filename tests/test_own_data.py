"Your own data (soundlab.data.folder) through the recipes: synthetic tones always, real recordings (soundlab.realsounds: Debian sound packages) when installed."
import shutil
from pathlib import Path
import numpy as np, pandas as pd, pytest, soundfile as sf
from soundlab.core import DatasetError

from soundlab.realsounds import have_sources, DEBIAN_PACKAGES, make_corpus
HAVE_REAL = have_sources('espeak-ng', 'fluidsynth', 'fluidr3', 'timgm6mb', 'hydrogen', 'freedesktop', 'oxygen', 'wordwarvi', 'bucklespring')
NO_REAL = 'the Debian sound packages are not installed (make real-corpus-deps, as root; CI installs them)' 

@pytest.fixture(scope='session')
def tones(tmp_path_factory):
    "3 classes x 6 clips of 0.6 s harmonic tones (class = pitch band), a CSV with a fold and metadata columns."
    root, sr, rng, rows = tmp_path_factory.mktemp('tones'), 16000, np.random.default_rng(0), []
    t = np.arange(int(0.6 * sr)) / sr
    for c, f0 in enumerate((200., 700., 2500.)):
        for k in range(6):
            f = f0 * (1 + 0.03 * rng.standard_normal())
            w = sum(0.2 / h * np.sin(2 * np.pi * h * f * t) for h in (1, 2, 3)) + 0.01 * rng.standard_normal(len(t))
            rel = f'clips/c{c}_{k}.wav'; (root / 'clips').mkdir(exist_ok=True); sf.write(root / rel, w.astype(np.float32), sr)
            rows.append(dict(path=rel, label=f'tone{c}', fold=1 + k % 3, speaker=f'spk{k % 2}', sex='MF'[k % 2], age=10 + 5 * k))
    pd.DataFrame(rows).to_csv(root / 'labels.csv', index=False)
    return root

@pytest.fixture(scope='session')
def real(tmp_path_factory):
    if not HAVE_REAL: pytest.skip(NO_REAL)
    from soundlab.realsounds import make_real_corpus
    return make_real_corpus(tmp_path_factory.mktemp('real') / 'real', per_class=4, words=('yes', 'no'), instruments={'piano': 0, 'flute': 73})

def _resp(root, tmp_path, **kw):
    from soundlab.recipes.respiratory import respiratory_config, load_cycles, run_respiratory
    cfg = respiratory_config('own', data_root=str(root), epochs=1, t_max=1, bs=8, device='cpu', amp=False,
                             out_dir=str(tmp_path / 'runs'), **kw)
    data = load_cycles(cfg, progress=False)
    return cfg, data, run_respiratory(cfg, data, progress=False)

def test_respiratory_csv_mscl_metadata_column(tones, tmp_path, monkeypatch):
    "M-SCL on a CSV: class count from the data, a metadata column as metalabel, a fold column picks the test fold."
    monkeypatch.setenv('SOUNDLAB_DATA', str(tmp_path))
    cfg, data, (row, runs) = _resp(tones, tmp_path, dataset='csv', fold=2, method='mscl', metalabel='speaker', epochs2=1, duration=0.6)
    assert data['classes'] == ['tone0', 'tone1', 'tone2'] and len(data['test']['y']) == 6 and len(data['train']['y']) == 12
    assert sorted(set(data['train']['meta'].tolist())) == [0, 1]                  # spk0, spk1
    assert 'fold2' in row['tag'] and 0 <= runs[0]['score'] <= 100 and np.isnan(runs[0]['sp'])
    with pytest.raises(ValueError, match="metalabel 'nope'"): _resp(tones, tmp_path, dataset='csv', method='mscl', metalabel='nope')
    from soundlab.recipes.respiratory import respiratory_config, load_cycles
    d2 = load_cycles(respiratory_config('own', dataset='csv', data_root=str(tones), metalabel='sa', duration=0.6), progress=False)
    assert set(d2['train']['meta'].tolist()) <= {0, 1, 2, 3}  # seed 000's sex x age group, from the sex and age columns

def test_folder_errors(tones, tmp_path):
    from soundlab.data.folder import prepare_folder
    from soundlab.data.core import BadFiles
    df = pd.read_csv(tones / 'labels.csv')
    df.drop(columns='label').to_csv(tmp_path / 'a.csv', index=False)
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['label'\]"): prepare_folder(tmp_path / 'a.csv')
    df.assign(path=tones.name + '/' + df.path).to_csv(tones.parent / 'b.csv', index=False)
    with pytest.raises(DatasetError, match="unknown label 'tone2'"): prepare_folder(tones.parent / 'b.csv', classes=['tone0', 'tone1'])
    bad = df.copy(); bad.loc[3, 'path'] = 'clips/missing.wav'; bad.to_csv(tones / 'c.csv', index=False)
    with pytest.raises(DatasetError, match='missing.wav'): prepare_folder(tones / 'c.csv')
    sp = prepare_folder(tones / 'c.csv', on_bad_file=(b := BadFiles('skip')))
    assert len(sp['train']) + len(sp['test']) == 17 and 'unreadable audio' in b.skipped[0][1]
    (tones / 'c.csv').unlink()

def test_ast_folder_smoke(tones, tmp_path, monkeypatch):
    "The AST recipe (tiny, from scratch) on class folders: one test fold of the drawn stratified folds."
    monkeypatch.setenv('SOUNDLAB_DATA', str(tmp_path))
    from soundlab.recipes.ast import ast_config, run_ast
    (tmp_path / 'folders').mkdir()
    for p in (tones / 'clips').glob('*.wav'): (tmp_path / 'folders' / p.stem[:2]).mkdir(exist_ok=True); shutil.copy(p, tmp_path / 'folders' / p.stem[:2])
    cfg = ast_config('smoke', 'esc50', dataset='folder', data_root=str(tmp_path / 'folders'), folds=(1,), target_length=64, epochs=1,
                     device='cpu', out_dir=str(tmp_path / 'runs'))
    res = run_ast(cfg, progress=False)
    assert res['classes'] == ['c0', 'c1', 'c2'] and list(res['acc_fold']) == ['fold1'] and 0 <= res['mean_acc'] <= 100
    ch = res['choices']['fold1']  # chosen from the clips (0.6 s: whole), but what was given is kept
    assert ch['input_s'] == 0.64 and ch['why']['input_s'] == 'set by you' and ch['crops'] == 'whole' and ch['epochs'] == 1
    assert (res['runs'][1]['run_dir'] / 'choices.json').is_file()
    from soundlab.data.folder import prepare_folder
    assert len(res['y_true']) == len(prepare_folder(tmp_path / 'folders', 1)['test'])  # the same seeded fold
    with pytest.raises(ValueError, match='needs data_root'): ast_config('smoke', 'esc50', dataset='folder')

def test_baseline_on_tones(tones):
    from soundlab.data.folder import prepare_folder
    from soundlab.baselines import logmel_logreg_baseline
    sp = prepare_folder(tones, fold=1)
    assert logmel_logreg_baseline(sp['train'], sp['test'])['acc'] == 100.  # pitch bands: linearly separable

def test_real_corpus_recipes(real, tmp_path, monkeypatch):
    "Real recordings (espeak-ng words, fluidsynth notes) through the respiratory and AST recipes and the baseline."
    monkeypatch.setenv('SOUNDLAB_DATA', str(tmp_path))
    from soundlab.data.folder import prepare_folder
    from soundlab.baselines import logmel_logreg_baseline
    from soundlab.recipes.ast import ast_config, run_ast
    sp = prepare_folder(real, fold=1, n_folds=2)
    assert sp['classes'] == ['flute', 'no', 'piano', 'yes'] and {r.custom['source'] for r in sp['train']} == {'espeak-ng', 'fluidsynth'}
    assert 0 <= logmel_logreg_baseline(sp['train'], sp['test'])['acc'] <= 100
    cfg, data, (row, runs) = _resp(real, tmp_path, n_folds=2, duration=None)
    assert cfg.duration == 1.5 and cfg.choices['why']['input_s'].startswith('90 %')  # clips of <= 1.5 s fit whole
    assert data['train']['x'].shape[-2:] == (64, 47) and len(data['test']['y']) == 8 and 0 <= runs[0]['acc'] <= 100
    res = run_ast(ast_config('smoke', 'esc50', dataset='csv', data_root=str(real / 'labels.csv'), folds=(1,), device='cpu', epochs=1,
                             out_dir=str(tmp_path / 'runs')), progress=False)
    assert 0 <= res['acc_fold']['fold1'] <= 100 and len(res['y_true']) == len(prepare_folder(real, 1)['test'])

def test_run_icbhi_notebook_own_data(tones, tmp_path, shared_data):
    "papermill nbs/run_icbhi.ipynb -p preset own -p dataset csv -p data_root <csv>: own_results.csv, confusion with the CSV's classes."
    from conftest import run_notebook
    res = run_notebook('run_icbhi.ipynb', tmp_path, shared_data, preset='own', dataset='csv', data_root=str(tones / 'labels.csv'),
                       fold=3, epochs=1, duration=0.6, device='cpu', out_dir=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(tmp_path / 'own_results.csv')
    assert len(table) == 1 and table.fold[0] == 3 and table.Method[0] == 'CE' and table.Backbone[0] == 'Fewshot_cnn'  # the own preset's
    assert not (tmp_path / 'icbhi_results.csv').exists()
    tag = table.tag[0] if 'tag' in table else next(tmp_path.glob('*_confusion.png')).name.replace('_confusion.png', '')
    assert (tmp_path / f'{tag}_confusion.png').stat().st_size > 1000
    assert 'balanced accuracy' in (tmp_path / 'out_run_icbhi.ipynb').read_text()

def test_psla_folder_smoke(tones, tmp_path, monkeypatch):
    "The PSLA recipe (smoke preset) on a CSV: its split written as datafiles, trained and evaluated."
    monkeypatch.setenv('SOUNDLAB_DATA', str(tmp_path))
    from soundlab.recipes.psla import psla_config, load_data, run_psla
    cfg = psla_config('smoke', dataset='csv', data_root=str(tones / 'labels.csv'), epochs=1, wa_start=1, wa_end=1, device='cpu',
                      out_dir=str(tmp_path / 'runs'))
    data = load_data(cfg, progress=False)
    assert data['class_names'] == ['tone0', 'tone1', 'tone2'] and len(data['eval_sets']['eval']) == 6  # the CSV's fold 1
    res = run_psla(cfg, data, progress=False, verbose=False)
    assert res['results']['none'] is not None and len(res['runs']) == 1 and res['data']['n_classes'] == 3

def test_sed_simclr_folder_smoke(tones, tmp_path, monkeypatch):
    "SimCLR (smoke preset) on a CSV with some unlabelled clips: pre-training sees them, linear evaluation does not."
    monkeypatch.setenv('SOUNDLAB_DATA', str(tmp_path))
    from soundlab.recipes.sed import sed_config, load_clips, run_sed
    df = pd.read_csv(tones / 'labels.csv'); df.loc[[0, 7], 'label'] = None
    df.assign(path=tones.name + '/' + df.path).to_csv(tones.parent / 'partly_labelled.csv', index=False)
    cfg = sed_config('smoke', dataset='csv', data_root=str(tones.parent / 'partly_labelled.csv'), device='cpu', out_dir=str(tmp_path / 'runs'))
    data = load_clips(cfg, progress=False)
    assert data['classes'] == ['tone0', 'tone1', 'tone2'] and (data['train']['y'] >= 0).all()
    # fold 1 (the CSV's) is test: its unlabelled clip is left out; the other unlabelled clip is pre-training data only
    assert len(data['test']['x']) == 5 and len(data['pretrain']['x']) == len(data['train']['x']) + 1 and len(data['val']['x']) == 2
    res = run_sed(cfg, 'all', data, progress=False)
    assert [r['stage'] for r in res] == ['pretrain', 'lineval', 'finetune'] and 0 <= res[1]['test_bacc'] <= 100
    assert res[1]['per_class'].shape == (3,)

def test_fewshot_folder_smoke(tones, tmp_path, monkeypatch):
    "Few-shot (smoke preset) on class folders: a class-disjoint MetaAudio copy, episodes of 2-way 2-shot tasks."
    monkeypatch.setenv('SOUNDLAB_DATA', str(tmp_path))
    from soundlab.recipes.fewshot import fewshot_config, load_splits, run_fewshot
    for k in range(9):  # 9 classes of 2 files: 5 train, 2 valid, 2 test classes
        d = tmp_path / 'folders' / f'k{k}'; d.mkdir(parents=True)
        for p in sorted((tones / 'clips').glob(f'c{k % 3}_*.wav'))[2 * (k // 3):2 * (k // 3) + 2]: shutil.copy(p, d / p.name)
    cfg = fewshot_config('smoke', dataset='folder', data_root=str(tmp_path / 'folders'), n_way=2, n_shot=1, n_query=1, device='cpu',
                         num_epochs=2, out_dir=str(tmp_path / 'runs'))
    data = load_splits(cfg)
    classes = {s: set(d.classes) for s, d in data.items()}
    assert [len(classes[s]) for s in ('train', 'valid', 'test')] == [5, 2, 2] and not (classes['train'] & classes['test'])  # splits by class
    res = run_fewshot(cfg, data)
    assert 0 <= res['acc'] <= 100 and 0 <= res['baseline_acc'] <= 100 and len(res['baseline_accs']) == len(res['test_accs'])
    assert res['choices']['segment'] == 0.75 and not res['choices']['multi_segm'] and res['epochs'] == 2  # 0.6-s clips fit 0.75 s


# --- the real-sound corpora of every shape through the own-data default (smoke-sized: soundlab.realsounds.CORPORA) ---

EXPECT = {  # corpus -> what the default must choose for it
    'drums': dict(crops='whole', eval='whole', loss='ce', pool='mean'),
    'onsets': dict(input_s=5., crops='whole', eval='whole', loss='ce', hop_ms=52.),
    'scenes': dict(crops='whole', eval='whole', loss='bce', pool='max', hop_ms=100.),  # weak labels: whole 10-12-s clips
    'imbalanced': dict(balance='sampler', loss='ce'),
}

@pytest.fixture(scope='session')
def corpora(tmp_path_factory):
    if not HAVE_REAL: pytest.skip(NO_REAL)
    root = tmp_path_factory.mktemp('corpora')
    return {c: make_corpus(c, root / c, smoke=True) for c in EXPECT}

@pytest.mark.parametrize('name', list(EXPECT))
def test_real_corpus_default(name, corpora, tmp_path, monkeypatch):
    "Each shape: the choices follow the corpus (printed, stored in the run folder and the results row); one epoch trains; both baselines score."
    monkeypatch.setenv('SOUNDLAB_DATA', str(tmp_path))
    from soundlab.recipes.respiratory import respiratory_config, load_cycles, run_respiratory, untrained_probe
    from soundlab.baselines import logmel_logreg_baseline
    cfg = respiratory_config('own', data_root=str(corpora[name]), fold=1, n_folds=2, epochs=1, device='cpu', out_dir=str(tmp_path / 'runs'))
    assert {k: cfg.choices[k] for k in EXPECT[name]} == EXPECT[name], cfg.choices
    data = load_cycles(cfg, progress=False)
    assert len(data['train']['clip']) == len(data['train']['x']) and int(data['train']['clip'].max()) + 1 == len(data['train']['y'])
    row, runs = run_respiratory(cfg, data, progress=False)
    assert (runs[0]['run_dir'] / 'choices.json').is_file() and 'input_s=' in row['choices']
    assert row['metric'] == ('mAP' if name == 'scenes' else 'balanced accuracy') and 0 <= runs[0]['last_score'] <= 100
    assert len(runs[0]['y_pred']) == len(data['test']['y'])  # one prediction a clip (windows pooled)
    key = 'map' if name == 'scenes' else 'acc'
    assert 0 <= logmel_logreg_baseline(data['train']['records'], data['test']['records'], n_classes=len(data['classes']))[key] <= 100
    assert 0 <= untrained_probe(cfg, data)[key] <= 100

def test_debian_packages_match_makefile():
    "`make real-corpus-deps` and `make ci-debs` (what CI installs) install exactly the packages soundlab.realsounds reads."
    mk = (Path(__file__).resolve().parents[1] / 'Makefile').read_text()
    val = ''
    for line in mk[mk.index('REAL_CORPUS_DEBS ='):].splitlines():  # the variable and its continuation lines
        val += line.rstrip('\\') + ' '
        if not line.endswith('\\'): break
    assert sorted(val.split('=', 1)[1].split()) == sorted(DEBIAN_PACKAGES)

def test_ast_own_windows(corpora, tmp_path, monkeypatch):
    "AST / PSLA-in-AST on 5-s clips with a 1-s input (given): random crops in training, every test clip scored whole as pooled windows."
    monkeypatch.setenv('SOUNDLAB_DATA', str(tmp_path))
    from soundlab.recipes.ast import ast_config, run_ast
    from soundlab.data.folder import prepare_folder
    cfg = ast_config('smoke', 'esc50', dataset='folder', data_root=str(corpora['onsets']), folds=(1,), target_length=100, epochs=1, device='cpu',
                     out_dir=str(tmp_path / 'runs'))
    res = run_ast(cfg, progress=False)
    ch = res['choices']['fold1']
    assert (ch['input_s'], ch['crops'], ch['eval'], ch['why']['input_s']) == (1., 'random', 'windows', 'set by you')
    assert len(res['y_true']) == len(prepare_folder(corpora['onsets'], 1)['test']) and 0 <= res['acc_fold']['fold1'] <= 100

def test_own_preset_backbone_override(tones):
    "Another backbone than the own preset's drops the preset's backbone arguments (MetaAudio CNN's pool_dim); given ones stay."
    from soundlab.recipes.respiratory import respiratory_config, build_model
    own = respiratory_config('own', data_root=str(tones))
    assert own.backbone == 'fewshot_cnn' and own.backbone_kw == {'pool_dim': (3, 1)}
    cfg = respiratory_config('own', data_root=str(tones), backbone='cnn6')
    assert cfg.backbone_kw == {} and build_model(cfg, n_meta=1, n_classes=3).backbone.__class__.__name__ != 'FewShotCNN'
    assert respiratory_config('own', data_root=str(tones), backbone='cnn6', backbone_kw={'dropout': 0.1}).backbone_kw == {'dropout': 0.1}

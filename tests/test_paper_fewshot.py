"""Seed 002's `paper` run, end to end: the first training task, the lr at every step, the kept model (the last epoch
tying the best validation accuracy), and the guard against a silent synthetic run.

`tests/conformance/paper_fewshot_batch.npz` was pinned ONCE from the seed's own code (magcil/audio-few-shot-learning
@c927e20: `MetaAudioDataset` and `batch_creation.sample_episode` with its `experiment_config.json`, SpecAugment off,
python `random` seeded with 0, the recordings and segment picks recorded), run from a scratch folder outside this
repository on the corpus below, with stub modules for the waveform augmentation libraries it imports (unused for
spectrograms). The seed's code is not part of soundlab.
"""
from dataclasses import replace
from pathlib import Path
import numpy as np, pytest, torch
import soundlab.recipes.fewshot as FS
from soundlab.core import DatasetError
from soundlab.data.metaaudio import collate_episode
from soundlab.synth import make_metaaudio
from soundlab.train import Trainer

PIN = np.load(Path(__file__).parent / 'conformance' / 'paper_fewshot_batch.npz')
CORPUS = dict(datasets=('FSD2018',), n_classes=25, samples_per_class=(10, 12), n_mels=128, hop_length=512, max_segments=3,
              small_classes=0, segment=5., seed=0)   # MetaAudio's 5-s segments: 128 x 157 log-mels

@pytest.fixture(scope='module')
def paper(tmp_path_factory):
    "The paper preset for FSD2018 on a 128-band synthetic corpus in MetaAudio's layout, and its splits."
    tmp = tmp_path_factory.mktemp('paper002')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('SOUNDLAB_DATA', str(tmp / 'data'))
        root = make_metaaudio(tmp / 'metaaudio', **CORPUS)
        cfg = FS.fewshot_config('paper', data_root=str(root), dataset_name='FSD2018', device='cpu', amp=False, progress=False,
                                out_dir=str(tmp / 'runs'))
        yield cfg, FS.load_splits(cfg)

def test_first_task_equals_seed(paper):
    """With the seed's draws (classes, recordings, one segment of each multi-segment recording), the task soundlab
    collates from its MetaAudio split is the seed's `sample_episode` output: support, queries (.npy -> global
    standardisation -> segment), labels in the seed's class order."""
    cfg, data = paper
    ds, root = data['train'], Path(cfg.data_root) / 'FSD2018'
    k_of = {str(Path(r.path).relative_to(root)): k for k, r in enumerate(ds.records)}
    items = []
    for f, pick in zip(PIN['files'], PIN['pick']):
        k = k_of[str(f)]; a = ds._array(k)
        items.append(dict(x=a[max(int(pick), 0)], y=ds.labels[k], index=k, n=1, multi=False))
    b = collate_episode(5, 5, 5)(items)
    for part in ('support', 'query'):
        x = b[part].double()
        assert tuple(x.shape[1:]) == tuple(PIN['shape'][2:])
        # float32 (x - mean) / std of the same float32 values: one rounding each (|x| < 10 -> 1e-5 is > 10x margin)
        d = float((x[:, ::16, ::8] - torch.from_numpy(PIN[f'{part}_sub']).double()).abs().max()); print(f'{part}: max |diff| {d:.1e}')
        assert d <= 1e-5
        np.testing.assert_allclose(x.sum((1, 2)).numpy(), PIN[f'{part}_sum'], rtol=1e-5, atol=1e-2)   # 20k values each
        np.testing.assert_allclose((x ** 2).sum((1, 2)).numpy(), PIN[f'{part}_sumsq'], rtol=1e-5)
        assert b[f'{part}_y'].tolist() == PIN[f'{part}_y'].tolist()

def test_recipe_tasks_are_collated_episodes(paper):
    "The recipe's training loader yields whole tasks: 5-way, 5 + 5 single segments, class-major, labels 0..4."
    cfg, data = paper
    exp = cfg.exp
    s = FS.EpisodicSampler(data['train'].labels, 5, 5, 5, 1, seed=cfg.seed)
    b = next(iter(torch.utils.data.DataLoader(data['train'], batch_sampler=s, collate_fn=collate_episode(5, 5, 5))))
    assert b['support'].shape == b['query'].shape == (25, 128, 157) and exp['n_way_train'] == 5
    assert b['support_y'].tolist() == b['query_y'].tolist() == [c for c in range(5) for _ in range(5)]

def test_schedule_and_kept_model(paper, monkeypatch):
    """A shortened paper run (6 epochs of 2 tasks, milestones 2 and 4): Adam's lr at every task equals the seed's
    MultiStepLR(milestones, gamma=0.4482) on the tuned lr 0.0007, stepped once per epoch (loops.py:162); the model
    tested is the last epoch with the best validation accuracy (callbacks/early_stopping.py: `score >= best` saves)."""
    cfg, data = paper
    cfg = replace(cfg, num_epochs=6, n_training_tasks=2, n_validation_tasks=2, n_testing_tasks=2, n_runs=1, scheduler_milestones=(2, 4))
    lrs = []; step = torch.optim.Adam.step
    def recording(self, *a, **k): lrs.append(self.param_groups[0]['lr']); return step(self, *a, **k)
    monkeypatch.setattr(torch.optim.Adam, 'step', recording)
    r = FS.run_fewshot(cfg, data)
    monkeypatch.undo()
    p = torch.nn.Parameter(torch.zeros(1)); opt = torch.optim.Adam([p], lr=0.0007)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [2, 4], gamma=0.4482); want = []
    for _ in range(len(r['history'])): want += [opt.param_groups[0]['lr']] * 2; opt.step(); sched.step()
    np.testing.assert_allclose(lrs, want, rtol=1e-12, atol=0)
    acc = r['history'].val_acc.values
    last_best = int(r['history'].epoch[int(np.flatnonzero(acc == acc.max())[-1])])
    kept = torch.load(r['run_dir'] / 'best.pt', weights_only=True)
    assert kept['epoch'] == r['best_epoch'] == last_best
    m = FS.create_fewshot_model(r['exp'], cfg.mcfg, pool=cfg.encoder_pool, input_shape=data['train']._array(0).shape[-2:])
    m.load_state_dict(kept['model'])
    accs = FS.evaluate_tasks(m, data['test'], r['exp'], 'test', 2, cfg.seed + 2)
    np.testing.assert_allclose(accs, r['test_accs'], rtol=0, atol=1e-9)   # the tested model is the kept one

def test_ties_keep_the_last_best(tmp_path):
    "Trainer mode 'max_last' (the paper preset's `best_ties='last'`) keeps the later of two equal best epochs; 'max' the first."
    for mode, want in (('max', 2), ('max_last', 3)):
        m = torch.nn.Linear(1, 1); scores = iter([50., 60., 60., 40.])
        tr = Trainer(m, lambda m, b: {'loss': m(b[0]).sum()}, torch.optim.SGD(m.parameters(), lr=0.), None, lambda m: {'val_acc': next(scores)},
                     'val_acc', mode, out_dir=tmp_path / mode, device='cpu', progress=False)
        tr.fit([(torch.ones(1, 1),)], 4)
        assert torch.load(tmp_path / mode / 'best.pt', weights_only=True)['epoch'] == want
    assert FS._stopped([{'val_acc': 1.}, {'val_acc': .5}, {'val_acc': 1.}, {'val_acc': .7}], 2, 'first')
    assert not FS._stopped([{'val_acc': 1.}, {'val_acc': .5}, {'val_acc': 1.}, {'val_acc': .7}], 2, 'last')

def test_paper_needs_data(tmp_path, monkeypatch):
    monkeypatch.setenv('SOUNDLAB_DATA', str(tmp_path))
    with pytest.raises(DatasetError, match='MetaAudio.*allow_synthetic=True'): FS.load_splits(FS.fewshot_config('paper'))

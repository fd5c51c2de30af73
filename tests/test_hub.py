"""soundlab.hub and soundlab.data.download against a local HTTP server (no test touches the internet).

The server (a threading `http.server` on 127.0.0.1, started here) serves little files and archives in each publisher's
format, with HTTP Range support and fault injection: a 404, a connection dropped half-way, no Range support, an HTML
page instead of the file, a slow body (so that two processes overlap). Catalogue entries and dataset sources are pointed
at it with `monkeypatch`, their checksums replaced by those of the local files (the real ones cannot match them).
"""
import dataclasses, hashlib, io, json, math, multiprocessing as mp, os, re, shutil, stat, subprocess, tarfile, threading, time, zipfile
from configparser import ConfigParser
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
import pytest, torch

from soundlab import hub, synth
from soundlab.data import download as dl

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------------- the server
@dataclasses.dataclass
class Route:
    data: bytes
    status: int = 200
    drop_after: int | None = None  # close the connection after this many body bytes (the first request only)
    ranges: bool = True  # honour Range requests
    ctype: str = 'application/octet-stream'
    delay: float = 0.  # seconds between 64 KB chunks

class Server:
    "Files by path, a log of (path, Range header) requests."
    def __init__(self):
        self.routes, self.log, self._lock = {}, [], threading.Lock()
        srv = self
        class H(BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def do_GET(self):
                with srv._lock: srv.log.append((self.path, self.headers.get('Range')))
                r = srv.routes.get(self.path)
                if r is None or r.status != 200:
                    self.send_error(404 if r is None else r.status); return
                start, body = 0, r.data
                if r.ranges and (m := re.fullmatch(r'bytes=(\d+)-', self.headers.get('Range') or '')):
                    start = int(m[1])
                    if start >= len(body): self.send_error(416); return
                    self.send_response(206); self.send_header('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}')
                else: self.send_response(200)
                self.send_header('Content-Type', r.ctype); self.send_header('Content-Length', str(len(body) - start))
                if r.ranges: self.send_header('Accept-Ranges', 'bytes')
                self.end_headers()
                out, cut = body[start:], r.drop_after
                if cut is not None: r.drop_after = None  # only the first request is dropped
                for i in range(0, len(out) if cut is None else cut, 1 << 16):
                    self.wfile.write(out[i:min(i + (1 << 16), len(out) if cut is None else cut)]); self.wfile.flush()
                    if r.delay: time.sleep(r.delay)
                if cut is not None: self.close_connection = True
        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), H)
        self.url = f'http://127.0.0.1:{self.httpd.server_port}'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
    def add(self, path, data, **kw): self.routes[path] = Route(data, **kw); return self.url + path
    def gets(self, path): return [rng for p, rng in self.log if p == path]

@pytest.fixture(scope='module')
def server():
    s = Server(); yield s; s.httpd.shutdown()

@pytest.fixture(autouse=True)
def online(monkeypatch, tmp_path):
    "Network allowed (to 127.0.0.1 only: every URL here is local), no waiting between retries, a private weights folder."
    monkeypatch.delenv('SOUNDLAB_OFFLINE', raising=False)
    monkeypatch.setattr(hub, 'RETRY_WAIT', 0.)
    monkeypatch.setenv('SOUNDLAB_PRETRAINED', str(tmp_path / 'pretrained'))
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))  # torch.hub's cache: empty here

def md5(b): return 'md5:' + hashlib.md5(b).hexdigest()

# ---------------------------------------------------------------------------------------------------- downloads
def test_fresh_download(server, tmp_path):
    data = os.urandom(300_000); url = server.add('/fresh.bin', data)
    p = hub.download_file(url, tmp_path / 'fresh.bin', md5(data), len(data), progress=False)
    assert p.read_bytes() == data and server.gets('/fresh.bin') == [None]
    assert [x.name for x in tmp_path.iterdir() if not x.name.startswith('.')] == ['fresh.bin']  # no .part left
    assert hub.download_file(url, p, md5(data), progress=False) == p and len(server.gets('/fresh.bin')) == 1  # there: not fetched again

@pytest.mark.parametrize('ranges', [True, False])
def test_resume_after_dropped_connection(server, tmp_path, ranges):
    "The server drops the first connection at 40 %: the download resumes with a Range request (or restarts without)."
    data = os.urandom(500_000); path = f'/drop{ranges}.bin'
    url = server.add(path, data, drop_after=200_000, ranges=ranges)
    p = hub.download_file(url, tmp_path / 'x.bin', md5(data), progress=False)
    assert p.read_bytes() == data
    assert server.gets(path) == [None, 'bytes=200000-']  # asked for the rest (a server without Range support sends it all again)

def test_checksum_mismatch_refused_and_removed(server, tmp_path):
    data = os.urandom(10_000); url = server.add('/bad.bin', data)
    want = 'md5:' + '0' * 32
    with pytest.raises(hub.ChecksumError) as e: hub.download_file(url, tmp_path / 'bad.bin', want, progress=False)
    msg = str(e.value)
    assert f'expected {want}' in msg and f'md5 {hashlib.md5(data).hexdigest()}, expected md5 {"0" * 32}' in msg and url in msg
    assert list(tmp_path.glob('bad.bin*')) == []  # neither the file nor its .part
    with pytest.raises(hub.ChecksumError, match='10000 bytes, expected 9999 bytes'): hub.download_file(url, tmp_path / 'b2', size=9999, progress=False)

def test_first_mirror_404_then_second(server, tmp_path):
    data = os.urandom(5000); good = server.add('/mirror2/w.pth', data)
    html = server.add('/mirror1b/w.pth', b'<html>login</html>', ctype='text/html; charset=utf-8')
    p = hub.download_file([server.url + '/mirror1/w.pth', html, good], tmp_path / 'w.pth', md5(data), progress=False)
    assert p.read_bytes() == data and server.gets('/mirror1/w.pth') == [None] and server.gets('/mirror1b/w.pth') == [None]

def test_offline_and_no_network_error_text(server, tmp_path, monkeypatch):
    "One error naming every URL and the exact path to put the file: with SOUNDLAB_OFFLINE=1, and when nothing answers."
    rel = hub.CATALOGUE['cnn14-audioset']; dest = Path(os.environ['SOUNDLAB_PRETRAINED']) / 'Cnn14_mAP=0.431.pth'
    monkeypatch.setenv('SOUNDLAB_OFFLINE', '1')
    with pytest.raises(hub.DownloadError) as e: hub.resolve('audioset', model='cnn14')
    assert str(e.value) == (f'{dest}: not downloaded: $SOUNDLAB_OFFLINE is set. cnn14-audioset (Cnn14_mAP=0.431.pth) is published at:\n'
                            f'  {rel.urls[0]}\n  {rel.urls[1]}\nDownload it yourself and put it at exactly:\n  {dest}\n'
                            '(or pass its path instead of the name; $SOUNDLAB_PRETRAINED sets the folder)')
    monkeypatch.delenv('SOUNDLAB_OFFLINE')
    closed = 'http://127.0.0.1:9/none.pth'  # the discard port: nothing listens
    monkeypatch.setitem(hub.CATALOGUE, 'cnn14-audioset', dataclasses.replace(rel, urls=(closed, server.url + '/gone.pth')))
    with pytest.raises(hub.DownloadError) as e: hub.resolve('cnn14-audioset')
    msg = str(e.value)
    assert 'could not download it from any of its 2 URL(s)' in msg and f'{closed}\n    -> cannot connect' in msg
    assert f'{server.url}/gone.pth\n    -> HTTP 404' in msg and msg.endswith(f'put it at exactly:\n  {dest}\n(or pass its path instead of the name; $SOUNDLAB_PRETRAINED sets the folder)')

def _download_in_child(url, dest, checksum, q):
    hub.RETRY_WAIT = 0.
    t0 = time.time(); p = hub.download_file(url, dest, checksum, progress=False); q.put((str(p), time.time() - t0))

def test_two_processes_download_once(server, tmp_path):
    "Two processes (DDP ranks, SLURM tasks) ask at once: one downloads while the other waits on the lock, then uses the file."
    data = os.urandom(640_000); url = server.add('/shared.bin', data, delay=0.05)  # ~0.5 s of body: the two overlap
    ctx, q = mp.get_context('fork'), mp.get_context('fork').Queue()
    ps = [ctx.Process(target=_download_in_child, args=(url, tmp_path / 'shared.bin', md5(data), q)) for _ in range(2)]
    for p in ps: p.start()
    out = [q.get(timeout=60) for _ in ps]
    for p in ps: p.join(10); assert p.exitcode == 0
    assert [o[0] for o in out] == [str(tmp_path / 'shared.bin')] * 2 and (tmp_path / 'shared.bin').read_bytes() == data
    assert server.gets('/shared.bin') == [None]  # downloaded once
    assert min(o[1] for o in out) > 0.3  # the waiting one really waited for the body (10 chunks x 0.05 s)

def test_file_mirror_needs_no_network(tmp_path, monkeypatch):
    "Offline, a file:// mirror (a shared file system) is still read; network URLs are not."
    (tmp_path / 'm.bin').write_bytes(b'x' * 1000); monkeypatch.setenv('SOUNDLAB_OFFLINE', '1')
    p = hub.download_file(['http://127.0.0.1:9/m.bin', (tmp_path / 'm.bin').as_uri()], tmp_path / 'out' / 'm.bin', md5(b'x' * 1000), progress=False)
    assert p.read_bytes() == b'x' * 1000

# ---------------------------------------------------------------------------------------------------- the catalogue
def test_catalogue_names_follow_the_contract():
    "`<registry model>-<tag>`, every model registered, every loader known, the aliases of the BRIEF."
    from soundlab.models import list_models
    names = set(list_models())
    for n, r in hub.CATALOGUE.items():
        assert r.model in names and n.startswith(r.model.split('_16k')[0]) and r.loader in ('panns', 'ast', 'psla', 'effnet-imagenet', 'sed'), n
        assert n == f'{n.partition("-")[0]}-{r.tag}'
    for n in ('cnn6-audioset', 'cnn10-audioset', 'cnn14-audioset', 'cnn14_16k-audioset', 'ast_base384-audioset', 'ast_base384-imagenet',
              'ast_tiny224-imagenet', 'effnet_b2-imagenet', *(f'effnet_b{b}-imagenet' for b in range(8))):
        assert n in hub.CATALOGUE, n
    assert {a: hub.find_release(a).name for a in ('psla-audioset', 'psla-audioset-wa', 'psla-fsd50k', 'psla-fsd50k-wa')} == {
        'psla-audioset': 'effnet_b2-audioset', 'psla-audioset-wa': 'effnet_b2-audioset-wa', 'psla-fsd50k': 'effnet_b2-fsd50k',
        'psla-fsd50k-wa': 'effnet_b2-fsd50k-wa'}

def test_published_checksum_of_real_files(tmp_path):
    "Seed 001's released encoders (in the shared fixtures) have the git blob ids the catalogue names: the checksum kind works on real files."
    from soundlab.core import fixtures_dir
    for n in ('vgglike-fsdnoisy18k', 'crnn-fsdnoisy18k'):
        rel = hub.CATALOGUE[n]; f = fixtures_dir() / 'uclser20' / rel.filename
        if not f.is_file(): pytest.skip(f'{f} not present (shared fixtures)')
        assert hub.check_file(f, rel.checksum, rel.size) is None

def _shared(shapes:dict, seed:int=0) -> dict:
    "A state dict with these keys and shapes whose tensors all view one small random buffer (torch.save stores it once)."
    n = max(math.prod(s) for s in shapes.values())
    base = torch.randn(n, generator=torch.Generator().manual_seed(seed)) * 0.02
    return {k: (base[:math.prod(s)].view(s).clone() if 'num_batches' not in k else torch.tensor(0)) if len(s) <= 1
            else base[:math.prod(s)].view(s) for k, s in shapes.items()}

def released_file(rel, path:Path) -> dict:
    "Write a file in `rel`'s released layout (keys, shapes, wrappers of the publisher's file) with small shared weights."
    from soundlab.models import panns, ast, psla, sed
    meta = torch.device('meta')
    if rel.loader == 'panns':
        kw = dict(sample_rate=16000, window_size=512, hop_size=160, fmax=8000) if '16k' in rel.name else {}
        with meta: sd = panns.create_panns(rel.model, **kw).state_dict()
        out = {'model': _shared({k: tuple(v.shape) for k, v in sd.items()}), 'iteration': 0}
    elif rel.loader == 'ast' and rel.tag == 'imagenet':  # timm 0.4.5 / FB DeiT files: {'model': timm state dict}
        import timm
        with meta: sd = timm.create_model(ast.AST_SIZES[rel.model[4:]], pretrained=False).state_dict()
        out = {'model': _shared({k: tuple(v.shape) for k, v in sd.items()})}
    elif rel.loader == 'ast':  # AST's files: DataParallel `module.` keys of ASTModel, 527 (or 35) classes, ImageNet heads kept
        s = int(rel.filename.split('_')[1]) if rel.filename.startswith('audioset') else 10
        n_cls, tdim = (35, 128) if 'speechcommands' in rel.name else (527, 1024)
        with meta: m = ast.ASTModel(n_cls, s, s, 128, tdim, imagenet_pretrain=False, model_size='base384')
        shapes = {f'module.{k}': tuple(v.shape) for k, v in m.state_dict().items()}
        shapes |= {'module.v.head.weight': (1000, 768), 'module.v.head.bias': (1000,), 'module.v.head_dist.weight': (1000, 768), 'module.v.head_dist.bias': (1000,)}
        out = _shared(shapes)
    elif rel.loader == 'psla':  # the seed's EffNetAttention in DataParallel, efficientnet_pytorch names, 1x1-conv heads
        with meta: m = psla.EffNetAttention(200 if 'fsd50k' in rel.name else 527, b=2, head_num=4)
        out = _shared({k: tuple(v.shape) for k, v in psla.released_state_dict(m).items()})
    elif rel.loader == 'effnet-imagenet':  # efficientnet_pytorch's ImageNet file: RGB stem, 1000-class _fc
        import timm
        with meta: e = timm.create_model(f'tf_efficientnet_b{rel.model[-1]}', pretrained=False)
        out = _shared({k: tuple(v.shape) for k, v in psla.effnet_keys_to_pytorch(e.state_dict(), e).items()})
    else:  # seed 001's pth/: the encoder's state dict (with its 20-class head)
        with meta: sd = sed.create_sed_model(rel.model, 20).state_dict()
        out = _shared({k: tuple(v.shape) for k, v in sd.items()})
    path.parent.mkdir(parents=True, exist_ok=True); torch.save(out, path)
    return out

def load_release(rel, path:Path):
    "The family loader a download goes through; returns the model it filled."
    from soundlab.models import create_model, ast, psla
    from soundlab.infer import load_tagger
    if rel.loader == 'panns': return load_tagger(path), create_model(rel.model, weights=path)  # the full tagger and the backbone
    if rel.loader == 'ast' and rel.tag == 'imagenet': return ast.ASTModel(5, 10, 10, 128, 100, imagenet_pretrain=path, model_size=rel.model[4:])
    if rel.loader == 'ast': return load_tagger(path, *(int(rel.filename.split('_')[1]),) * 2)
    if rel.loader == 'psla': return psla.psla_from_checkpoint(path)[0], create_model('effnet_b2', weights=path)  # the tagger; an embedding model
    if rel.loader == 'effnet-imagenet': return psla.EffNetAttention(5, b=int(rel.model[-1]), pretrain=path)
    return create_model(rel.model, weights=path)

@pytest.mark.parametrize('name', sorted(hub.CATALOGUE))
def test_catalogue_entry_loads(name, tmp_path):
    "Each entry's family loader reads a file of its released layout: a download that succeeds also loads."
    rel = hub.CATALOGUE[name]; f = tmp_path / rel.filename
    sd = released_file(rel, f)
    m = load_release(rel, f)
    if rel.loader == 'psla':  # spot checks that the tensors landed
        assert torch.equal(m[0].attention.head_weight, sd['module.attention.head_weight'])
        assert torch.equal(m[1].net.attention.head_weight, sd['module.attention.head_weight']) and m[1].embed(torch.randn(1, 100, 128)).shape == (1, 1408)
    elif rel.loader == 'panns':
        assert torch.equal(m[0].fc_audioset.weight, sd['model']['fc_audioset.weight'])
        assert torch.equal(m[1].net.conv_block1.conv1.weight, sd['model']['conv_block1.conv1.weight'])

# ---------------------------------------------------------------------------------------------------- by name, end to end
def _serve_release(server, monkeypatch, tmp_path, name):
    "Point catalogue entry `name` at the local server, serving a released-layout file under the publisher's checksum kind."
    rel = hub.CATALOGUE[name]; src = tmp_path / 'published' / rel.filename
    sd = released_file(rel, src); data = src.read_bytes()
    kind = rel.checksum.partition(':')[0] or 'md5'
    url = server.add(f'/{name}/{rel.filename}', data)
    monkeypatch.setitem(hub.CATALOGUE, name, dataclasses.replace(rel, urls=(url,), size=len(data),
                        checksum=f'{kind}:{hub.file_digest(src, kind)}' if rel.checksum else ''))
    return sd, url

def test_create_model_by_tag(server, monkeypatch, tmp_path):
    "create_model('cnn14', weights='audioset'): resolved through the catalogue, downloaded, verified (md5), cached, loaded."
    from soundlab.models import create_model
    sd, url = _serve_release(server, monkeypatch, tmp_path, 'cnn14-audioset')
    m = create_model('cnn14', weights='audioset')
    assert torch.equal(m.net.conv_block6.conv2.weight, sd['model']['conv_block6.conv2.weight'])
    assert (Path(os.environ['SOUNDLAB_PRETRAINED']) / 'Cnn14_mAP=0.431.pth').is_file()
    create_model('cnn14', weights='cnn14-audioset'); assert len(server.gets(url.replace(server.url, ''))) == 1  # cached: once

def test_ast_audioset_pretrain_true(server, monkeypatch, tmp_path):
    "ASTModel(audioset_pretrain=True): the seed's AudioSet checkpoint by name (no published checksum: loaded strictly)."
    from soundlab.models.ast import ASTModel
    sd, _ = _serve_release(server, monkeypatch, tmp_path, 'ast_base384-audioset')
    m = ASTModel(50, 10, 10, 128, 512, audioset_pretrain=True)
    assert torch.equal(m.v.blocks[11].attn.qkv.weight, sd['module.v.blocks.11.attn.qkv.weight'])

def test_psla_paper_pretrain_by_name(server, monkeypatch, tmp_path):
    "PSLA's `pretrain` names the ImageNet weights: 'imagenet' is effnet_b2-imagenet (sha256 checked), as the paper preset's run builds it."
    from soundlab.recipes.psla import psla_config
    from soundlab.models.psla import EffNetAttention
    sd, _ = _serve_release(server, monkeypatch, tmp_path, 'effnet_b2-imagenet')
    cfg = psla_config('paper', pretrain='imagenet')  # the paper preset's value is set by its preset table (issue 23)
    m = EffNetAttention(200, cfg.b, cfg.pretrain or None, cfg.head_num, mode=cfg.model_mode)  # as train_psla builds it
    from soundlab.models.psla import effnet_keys_to_timm
    assert torch.equal(m.effnet.blocks[6][0].conv_pw.weight, effnet_keys_to_timm(sd, m.effnet)['blocks.6.0.conv_pw.weight'])
    with pytest.raises(hub.HubError, match="no 'fsdnoisy18k' weights of effnet_b2"): EffNetAttention(3, 2, pretrain='fsdnoisy18k')

def test_soundlab_tag_by_name(server, monkeypatch, tmp_path, capsys):
    "soundlab-tag FILE --checkpoint psla-audioset-wa"
    from soundlab import infer
    from soundlab.core import fixtures_dir
    _serve_release(server, monkeypatch, tmp_path, 'effnet_b2-audioset-wa')
    mp3 = fixtures_dir() / 'panns' / 'R9_ZSCveAHg_7s.mp3'
    if not mp3.is_file(): pytest.skip('shared fixtures not present')
    assert infer.main([str(mp3), '--checkpoint', 'psla-audioset-wa', '--quiet', '--window', '3', '--top-k', '1']) == 0
    assert capsys.readouterr().out.startswith(f'{mp3}: ')

def test_respiratory_weights_path_by_tag(server, monkeypatch, tmp_path):
    "The respiratory recipe's `weights_path='audioset'` with scratch=False builds its backbone from cnn6-audioset."
    from soundlab.recipes import respiratory as R
    sd, _ = _serve_release(server, monkeypatch, tmp_path, 'cnn6-audioset')
    cfg = R.respiratory_config('smoke', scratch=False, weights_path='audioset')
    w = R.build_model(cfg, n_meta=5).backbone.net.conv_block1.conv1.weight  # as run_once builds it
    assert torch.equal(w, sd['model']['conv_block1.conv1.weight'])

def test_weights_cli(server, monkeypatch, tmp_path, capsys):
    _serve_release(server, monkeypatch, tmp_path, 'crnn-fsdnoisy18k')
    assert hub.main(['download', 'crnn-fsdnoisy18k', '--quiet']) == 0
    assert capsys.readouterr().out.strip() == f"crnn-fsdnoisy18k: {os.environ['SOUNDLAB_PRETRAINED']}/CRNN_best.pth"
    assert hub.main(['verify']) == 0 and capsys.readouterr().out.startswith('ok        crnn-fsdnoisy18k')
    assert hub.main(['list']) == 0 and 'effnet_b7-imagenet' in capsys.readouterr().out
    (Path(os.environ['SOUNDLAB_PRETRAINED']) / 'CRNN_best.pth').write_bytes(b'changed')
    assert hub.main(['verify', 'crnn-fsdnoisy18k']) == 1 and 'MISMATCH' in capsys.readouterr().out
    assert hub.main(['download', 'nothing-audioset']) == 2
    ini = ConfigParser(); ini.read(REPO / 'settings.ini')
    scripts = ini['DEFAULT']['console_scripts']
    assert 'soundlab-weights=soundlab.hub:main' in scripts and 'soundlab-data=soundlab.data.download:main' in scripts

# ---------------------------------------------------------------------------------------------------- datasets
def _walk(root:Path):
    return [p for p in sorted(root.rglob('*')) if p.is_file() and not p.name.startswith('.') and p.name != 'synth_true_labels.csv']

def _zip(path, files, base:Path, prefix='', rename=lambda r: r):
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
        for f in files: z.write(f, prefix + rename(str(f.relative_to(base))))
    return path

def _publish(name, tmp) -> tuple:
    "(synthetic corpus, {file name: bytes} in the publisher's format) for dataset `name`."
    out, pub = {}, tmp / 'pub'; pub.mkdir()
    if name == 'esc50':
        src = synth.make_esc50(tmp / 'src', categories=[0, 1], clips_per_class=5, duration=0.5, sample_rate=8000)
        out['ESC-50-master.zip'] = _zip(pub / 'a.zip', _walk(src), src, 'ESC-50-master/')
    elif name == 'speechcommands':  # Google's tarball: members below './', no top folder
        src = synth.make_speechcommands(tmp / 'src', words=('yes', 'no'), n_speakers=4)
        with tarfile.open(pub / 'sc.tar.gz', 'w:gz') as t:
            for f in _walk(src): t.add(f, f'./{f.relative_to(src)}')
        out['speech_commands_v0.02.tar.gz'] = pub / 'sc.tar.gz'
    elif name == 'vocalsound':  # a top folder of its own (stripped: strip='auto')
        src = synth.make_vocalsound(tmp / 'src', n_speakers=(2, 1, 1), durations=(0.3, 0.5))
        out['vs_release_16k.zip'] = _zip(pub / 'vs.zip', _walk(src), src, 'data/')
    elif name == 'fsdnoisy18k':  # one zip per folder (Zenodo's four)
        src = synth.make_fsdnoisy18k(tmp / 'src', n_per_class=1, n_test_per_class=1, durations=(0.3, 0.5))
        for part in ('audio_train', 'audio_test', 'meta'):
            out[f'FSDnoisy18k.{part}.zip'] = _zip(pub / f'{part}.zip', _walk(src / f'FSDnoisy18k.{part}'), src)
        out['FSDnoisy18k.doc.zip'] = _zip(pub / 'doc.zip', [], src)
    elif name == 'fsd50k':  # dev and eval audio as multi-part zips, made by Info-ZIP's `zip -s` as the publisher's
        src = synth.make_fsd50k(tmp / 'src', n_dev=12, n_eval=6, durations=(0.5, 1.))
        for part in ('dev_audio', 'eval_audio'):
            subprocess.run(['zip', '-q', '-0', '-r', '-s', '64k', str(pub / f'FSD50K.{part}.zip'), f'FSD50K.{part}'], cwd=src, check=True)
            for f in sorted(pub.glob(f'FSD50K.{part}.z*')): out[f.name] = f
        out['FSD50K.ground_truth.zip'] = _zip(pub / 'gt.zip', _walk(src / 'FSD50K.ground_truth'), src)
        for p in ('metadata', 'doc'): out[f'FSD50K.{p}.zip'] = _zip(pub / f'{p}.zip', [], src)
    elif name == 'icbhi':  # the database zip (a top folder) and the two official text files beside it
        src = synth.make_icbhi(tmp / 'src' / 'ICBHI_final_database', n_patients=3, cycles_per_recording=(2, 3), recordings_per_patient=(1, 1))
        out['ICBHI_final_database.zip'] = _zip(pub / 'db.zip', _walk(src), src, 'ICBHI_final_database/')
        for f in ('ICBHI_challenge_train_test.txt', 'ICBHI_Challenge_demographic_information.txt'):
            out[f] = next(p for p in (src / f, src.parent / f) if p.is_file())
    elif name == 'sprsound':  # GitHub's archive of the repository: a top folder, the 2022 release in BioCAS2022/, later ones beside it
        src = synth.make_sprsound(tmp / 'src', n_patients=3, recordings_per_patient=(1, 2), events_per_recording=(2, 3))
        ren = lambda r: re.sub(r'^(train|test)_(wav|json)', r'BioCAS2022/\g<1>2022_\2', r)
        z = _zip(pub / 'spr.zip', _walk(src), src, 'SPRSound-abc/', ren)
        with zipfile.ZipFile(z, 'a') as zz: zz.writestr('SPRSound-abc/BioCAS2024/README.md', 'not extracted')
        out[next(r.filename for s in dl.DATASETS['sprsound'].sources for r in s.files)] = z
    return src, {k: Path(v).read_bytes() for k, v in out.items()}

@pytest.mark.parametrize('name', ['esc50', 'speechcommands', 'vocalsound', 'fsdnoisy18k', 'fsd50k', 'icbhi', 'sprsound'])
def test_dataset_download_lands_in_the_readers_layout(name, server, monkeypatch, tmp_path):
    "Each publisher's format (zip with a top folder, tar.gz, Zenodo's per-folder zips, FSD50K's multi-part zips, plain files)"
    " lands in the layout its reader accepts; the reader finds what it finds on the corpus packed."
    if name == 'fsd50k' and not shutil.which('zip'): pytest.skip("Info-ZIP's zip (to write the multi-part test archive) is not installed")
    src, files = _publish(name, tmp_path)
    info = dl.DATASETS[name]
    def local(s):  # the source's files served here (a multi-part zip: the parts `zip -s` made, .zip last, like the publisher's)
        rs = s.files if len(s.files) == 1 else [dataclasses.replace(s.files[-1], filename=f) for f in
                                                sorted(f for f in files if f.startswith(s.files[-1].filename[:-3] + 'z0')) + [s.files[-1].filename]]
        return dataclasses.replace(s, files=tuple(dataclasses.replace(r, urls=(server.add(f'/{name}/{r.filename}', files[r.filename]),),
                                                                      checksum=md5(files[r.filename]) if r.checksum else '') for r in rs))
    sources = tuple(local(s) for s in info.sources)
    if name == 'fsd50k': assert all(len(s.files) >= 3 for s in sources[:2])  # really multi-part
    monkeypatch.setitem(dl.DATASETS, name, dataclasses.replace(info, sources=sources))
    root = tmp_path / 'data' / info.folder
    rep = dl.fetch_dataset(name, root, progress=False)
    assert rep['status'] == 'downloaded' and rep['check'] == info.check(src) and sum(rep['check'].values()) > 0
    assert rep['files'] >= len(_walk(src)) - 2 and dl.is_present(name, root) and not (root.parent / f'{info.folder}.downloads').exists()
    assert sorted(p.name for p in (tmp_path / 'data').iterdir() if not p.name.startswith('.')) == [info.folder]  # nothing beside the root
    if name == 'sprsound': assert not (root / 'BioCAS2024').exists()
    again = dl.fetch_dataset(name, root, progress=False)
    assert again['status'] == 'present' and again['check'] == rep['check']

def _bad_archives(tmp):
    "Archives with a member or link that leads outside the root: (file, what the error names)."
    out = []
    with zipfile.ZipFile(tmp / 'dotdot.zip', 'w') as z: z.writestr('ESC-50-master/meta/esc50.csv', 'x'); z.writestr('ESC-50-master/../../evil.txt', 'x')
    out.append((tmp / 'dotdot.zip', "'ESC-50-master/../../evil.txt' is a `..` component"))
    with zipfile.ZipFile(tmp / 'abs.zip', 'w') as z: z.writestr('/tmp/evil.txt', 'x')
    out.append((tmp / 'abs.zip', "'/tmp/evil.txt' is an absolute path"))
    with zipfile.ZipFile(tmp / 'zlink.zip', 'w') as z:  # a symlink as Info-ZIP stores it (S_IFLNK in the external attributes)
        z.writestr('ESC-50-master/meta/esc50.csv', 'x')
        zi = zipfile.ZipInfo('ESC-50-master/audio'); zi.external_attr = (stat.S_IFLNK | 0o777) << 16; z.writestr(zi, '../../outside')
    out.append((tmp / 'zlink.zip', "'ESC-50-master/audio' is a link to '../../outside', outside the root"))
    with tarfile.open(tmp / 'tlink.tar.gz', 'w:gz') as t:
        ti = tarfile.TarInfo('ESC-50-master/meta'); ti.type, ti.linkname = tarfile.SYMTYPE, '/etc'; t.addfile(ti)
    out.append((tmp / 'tlink.tar.gz', "a link to the absolute path '/etc'"))
    return out

def test_unsafe_archives_refused_nothing_written_outside(server, monkeypatch, tmp_path):
    for i, (f, why) in enumerate(_bad_archives(tmp_path)):
        info = dl.DATASETS['esc50']; data = f.read_bytes()
        remote = dataclasses.replace(info.sources[0].files[0], urls=(server.add(f'/bad{i}/{f.name}', data),))
        monkeypatch.setitem(dl.DATASETS, 'esc50', dataclasses.replace(info, sources=(dataclasses.replace(info.sources[0], files=(remote,)),)))
        base = tmp_path / f'case{i}'; root = base / 'data' / 'ESC-50-master'; root.mkdir(parents=True)
        before = sorted(p for p in base.rglob('*'))
        with pytest.raises(hub.UnsafeArchiveError, match=re.escape(why)): dl.fetch_dataset('esc50', root, progress=False)
        after = [p for p in sorted(base.rglob('*')) if p not in before and 'ESC-50-master.downloads' not in str(p) and not p.name.startswith('.ESC')]
        assert after == [] and list(root.iterdir()) == [] and not (tmp_path / 'evil.txt').exists() and not Path('/tmp/evil.txt').exists()

def test_recipe_download_true(server, monkeypatch, tmp_path):
    "download=True on a recipe: its data_root is the dataset's folder, fetched (once, by rank 0 first) when the run reads it."
    from soundlab.recipes import ast as A
    src, files = _publish('esc50', tmp_path)
    info = dl.DATASETS['esc50']
    remote = dataclasses.replace(info.sources[0].files[0], urls=(server.add('/recipe/ESC-50-master.zip', files['ESC-50-master.zip']),))
    monkeypatch.setitem(dl.DATASETS, 'esc50', dataclasses.replace(info, sources=(dataclasses.replace(info.sources[0], files=(remote,)),)))
    monkeypatch.setenv('SOUNDLAB_DATA', str(tmp_path / 'data'))
    cfg = A.ast_config('smoke', 'esc50', download=True)
    assert cfg.data_root == str(tmp_path / 'data' / 'ESC-50-master')
    splits = A.task_splits(cfg)
    assert {k: len(v) for k, v in splits.items()} == info.check(src) and len(server.gets('/recipe/ESC-50-master.zip')) == 1
    A.task_splits(cfg); assert len(server.gets('/recipe/ESC-50-master.zip')) == 1  # present: not fetched again

def test_data_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('SOUNDLAB_DATA', str(tmp_path))
    assert dl.main(['list']) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in dl.DATASETS) and 'manual' in out
    assert dl.main(['download', 'metaaudio']) == 2 and 'Dataset Processing' in capsys.readouterr().err
    assert dl.main(['info', 'fsd50k']) == 0 and 'FSD50K.dev_audio.z05 [md5:81356521aa159accd3c35de22da28c7f]' in capsys.readouterr().out

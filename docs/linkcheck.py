"""Check every internal link of a built site: each href/src to a local file must exist, each #fragment must be an id.

    python docs/linkcheck.py [_docs]      # prints the broken links, exits 1 if there is any
"""
from __future__ import annotations
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

class _Page(HTMLParser):
    def __init__(self):
        super().__init__(); self.links, self.ids = [], set()
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ('id', 'name'):
            if a.get(k): self.ids.add(a[k])
        for k in ('href', 'src'):
            if a.get(k) and not (tag == 'link' and a.get('rel') in ('preconnect', 'dns-prefetch')): self.links.append(a[k])

def _parse(path: Path, cache: dict) -> _Page:
    if path not in cache:
        p = _Page(); p.feed(path.read_text(errors='replace')); cache[path] = p
    return cache[path]

def check_site(root) -> tuple[int, list[tuple[str, str, str]]]:
    "Return (number of internal links checked, [(page, link, problem), ...]) over every .html under `root`."
    root, cache, broken, n = Path(root).resolve(), {}, [], 0
    for page in sorted(root.rglob('*.html')):
        for link in _parse(page, cache).links:
            u = urlsplit(link)
            if u.scheme or u.netloc or link.startswith(('data:', 'javascript:', 'mailto:')): continue
            n += 1
            target = (page.parent / unquote(u.path)).resolve() if u.path else page
            if target.is_dir(): target = target / 'index.html'
            rel = str(page.relative_to(root))
            if not target.is_relative_to(root): broken.append((rel, link, 'points outside the site')); continue
            if not target.exists(): broken.append((rel, link, 'missing file')); continue
            if u.fragment and target.suffix == '.html' and unquote(u.fragment) not in _parse(target, cache).ids:
                broken.append((rel, link, 'missing anchor'))
    return n, broken

if __name__ == '__main__':
    root = sys.argv[1] if len(sys.argv) > 1 else '_docs'
    n, broken = check_site(root)
    for page, link, why in broken: print(f'{page}: {link} ({why})')
    print(f'linkcheck: {n} internal links checked in {root}, {len(broken)} broken')
    sys.exit(1 if broken else 0)

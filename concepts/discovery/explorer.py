"""The concept explorer: one static HTML file per run (opens from disk, no server).

Per layer, every concept with a frequency-scaled word list, example sentences with the token
highlighted, its aligned tags and its labels; search by word and by label; links to the
concepts of the neighbouring layers that share the most tokens.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path

from concepts.core.artifacts import atomic_write_text
from concepts.discovery.records import Concept, label_of_record

MAX_WORDS = 40
MAX_EXAMPLES = 3


def _links(by_layer: dict[int, list[Concept]]) -> dict[tuple[int, int], list[list]]:
    """For each (layer, concept): the concepts of the previous and next layer sharing the most
    tokens, as [layer, concept id, shared tokens]."""
    owner = {layer: {(m.sentence, m.position): c.concept_id for c in cs for m in c.members}
             for layer, cs in by_layer.items()}
    layers = sorted(by_layer)
    out: dict[tuple[int, int], list[list]] = {}
    for i, layer in enumerate(layers):
        for c in by_layer[layer]:
            links = []
            for other in (layers[i - 1] if i > 0 else None, layers[i + 1] if i + 1 < len(layers) else None):
                if other is None:
                    continue
                counts = Counter(owner[other].get((m.sentence, m.position)) for m in c.members)
                counts.pop(None, None)
                links += [[other, cid, n] for cid, n in counts.most_common(2)]
            out[(layer, c.concept_id)] = links
    return out


def _label_text(a) -> str:
    """A label, with its detection F1 once label scoring has run."""
    f1 = (a.scores or {}).get("f1")
    return a.label + (f" [F1 {f1:.2f}]" if f1 is not None else "")


def _labels(c: Concept, source: str | None) -> list[str]:
    """The label of record first (`label_of_record`), then the concept's other usable labels."""
    first = label_of_record(c, source)
    rest = [a for a in c.annotations if a.label and a.status == "ok" and a is not first]
    return [_label_text(a) for a in ([first] if first else []) + rest]


def explorer_data(by_layer: dict[int, list[Concept]], sentences: list[list[str]], title: str,
                  label_source: str | None = None) -> dict:
    links = _links(by_layer)
    layers = []
    for layer in sorted(by_layer):
        items = []
        for c in sorted(by_layer[layer], key=lambda c: -c.size):
            examples = []
            for m in c.members[:MAX_EXAMPLES]:
                words = sentences[m.sentence] if m.sentence < len(sentences) else []
                examples.append([words, m.position])
            items.append({
                "id": c.concept_id, "size": c.size,
                "words": list(c.type_counts.items())[:MAX_WORDS], "types": len(c.type_counts),
                "labels": _labels(c, label_source),
                "label": (a.label if (a := label_of_record(c, label_source)) else None),
                "aligned": {name: a["aligned"] for name, a in c.alignment.items() if a.get("aligned")},
                "best": {name: a["best"][:1] for name, a in c.alignment.items() if a.get("best")},
                "examples": examples, "links": links.get((layer, c.concept_id), []),
            })
        layers.append({"layer": layer, "concepts": items})
    return {"title": title, "layers": layers}


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:10px 16px;display:flex;gap:12px;align-items:center;flex-wrap:wrap;z-index:2}
header h1{font-size:17px;margin:0 12px 0 0}
input{padding:6px 8px;font-size:14px;width:260px}
#layers button{margin:0 2px;padding:4px 9px;border:1px solid #bbb;background:#fff;border-radius:4px;cursor:pointer}
#layers button.on{background:#2b6cb0;color:#fff;border-color:#2b6cb0}
main{padding:12px 16px;display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px}
.concept{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px}
.concept h2{font-size:14px;margin:0 0 6px}
.label{color:#2b6cb0;font-weight:600}
.words span{margin-right:6px;display:inline-block}
.tags{font-size:12px;color:#555;margin:6px 0;display:flex;flex-wrap:wrap;gap:3px 4px;min-width:0}
.tag{background:#edf2f7;border-radius:3px;padding:1px 5px;max-width:100%;overflow-wrap:anywhere;word-break:break-word}
.ex{font-size:12px;color:#444;margin:3px 0}
.ex mark{background:#fefcbf;font-weight:600}
.links{font-size:12px} .links a{margin-right:8px}
#count{color:#666;font-size:13px}
</style></head><body>
<header><h1>__TITLE__</h1><div id="layers"></div>
<input id="q" type="search" placeholder="search a word or a label" aria-label="search">
<span id="count"></span></header>
<main id="list"></main>
<script id="data" type="application/json">__DATA__</script>
<script>
const DATA = JSON.parse(document.getElementById('data').textContent);
let current = DATA.layers.length ? DATA.layers[0].layer : 0;
const esc = s => String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
function card(layer, c) {
  const max = c.words.length ? c.words[0][1] : 1;
  const words = c.words.map(([w, n]) => `<span style="font-size:${11 + 12 * n / max}px" title="${n}">${esc(w)}</span>`).join('');
  const labels = c.labels.length ? `<span class="label">${c.labels.map(esc).join(' / ')}</span> · ` : '';
  const tags = Object.entries(c.aligned).map(([k, v]) => `<span class="tag">${esc(k)}=${esc(v)}</span>`).join('');
  const best = Object.entries(c.best).filter(([k]) => !(k in c.aligned)).map(([k, v]) => `<span class="tag">${esc(k)}≈${esc(v[0][0])} ${(100 * v[0][1]).toFixed(0)}%</span>`).join('');
  const ex = c.examples.map(([ws, p]) => '<div class="ex">' + ws.map((w, i) => i === p ? `<mark>${esc(w)}</mark>` : esc(w)).join(' ') + '</div>').join('');
  const links = c.links.map(([l, id, n]) => `<a href="#L${l}-C${id}" data-layer="${l}">layer ${l} #${id} (${n})</a>`).join('');
  return `<section class="concept" id="L${layer}-C${c.id}"><h2>${labels}layer ${layer} · concept ${c.id} · ${c.size} tokens, ${c.types} types</h2>` +
    `<div class="words">${words}</div><div class="tags">${tags}${best}</div>${ex}<div class="links">${links}</div></section>`;
}
function neuronCard(name, words) {
  const max = words.length ? Math.abs(words[0][1]) || 1 : 1;
  return `<section class="concept" id="N-${esc(name)}"><h2>neuron ${esc(name)}</h2><div class="words">` +
    words.map(([w, a]) => `<span style="font-size:${11 + 12 * Math.min(1, Math.abs(a) / max)}px" title="${a.toFixed(3)}">${esc(w)}</span>`).join('') + '</div></section>';
}
function render() {
  const q = document.getElementById('q').value.trim().toLowerCase();
  const out = [];
  if (current === 'neurons') {
    for (const [name, words] of Object.entries(DATA.neurons || {})) {
      if (q && !words.some(([w]) => w.toLowerCase() === q)) continue;
      out.push(neuronCard(name, words));
    }
    document.getElementById('list').innerHTML = out.join('');
    document.getElementById('count').textContent = `${out.length} neurons (top activating words)`;
    document.querySelectorAll('#layers button').forEach(b => b.classList.toggle('on', b.dataset.layer === 'neurons'));
    return;
  }
  for (const L of DATA.layers) {
    if (!q && L.layer !== current) continue;
    for (const c of L.concepts) {
      if (q && !c.words.some(([w]) => w.toLowerCase() === q) && !c.labels.some(l => l.toLowerCase().includes(q))) continue;
      out.push(card(L.layer, c));
    }
  }
  document.getElementById('list').innerHTML = out.join('');
  document.getElementById('count').textContent = `${out.length} concepts` + (q ? ' (all layers)' : ` in layer ${current}`);
  document.querySelectorAll('#layers button').forEach(b => b.classList.toggle('on', +b.dataset.layer === current && !q));
}
document.getElementById('layers').innerHTML = DATA.layers.map(L => `<button data-layer="${L.layer}">layer ${L.layer}</button>`).join('') +
  (DATA.neurons && Object.keys(DATA.neurons).length ? '<button data-layer="neurons">top neurons</button>' : '');
document.getElementById('layers').addEventListener('click', e => { const l = e.target.dataset.layer; if (l) { current = l === 'neurons' ? l : +l; document.getElementById('q').value = ''; render(); } });
document.getElementById('q').addEventListener('input', render);
document.getElementById('list').addEventListener('click', e => {
  const l = e.target.dataset && e.target.dataset.layer;
  if (l !== undefined && !document.getElementById('q').value) { current = +l; render(); location.hash = e.target.getAttribute('href'); }
});
const h = location.hash.match(/^#L(\\d+)-C\\d+$/); if (h) current = +h[1];
const q0 = new URLSearchParams(location.search).get('q'); if (q0) document.getElementById('q').value = q0;
render();
if (h) { const el = document.getElementById(location.hash.slice(1)); if (el) el.scrollIntoView(); }
</script></body></html>
"""


def write_explorer(path: Path, by_layer: dict[int, list[Concept]], sentences: list[list[str]], title: str,
                   neurons: dict[str, list] | None = None, label_source: str | None = None) -> None:
    """`neurons`: optional neuron name -> its top activating words `[[word, activation], ...]`,
    shown in a "top neurons" view. Each concept's label of record comes first."""
    payload = explorer_data(by_layer, sentences, title, label_source)
    if neurons:
        payload["neurons"] = neurons
    data = json.dumps(payload, ensure_ascii=False).replace("</", "<\\/")
    page = _PAGE.replace("__TITLE__", html.escape(title)).replace("__DATA__", data)
    atomic_write_text(Path(path), page)

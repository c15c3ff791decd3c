"""The minimal search page served at ``/``: a query box, the top results, an audio player for each."""

INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>openclap search</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; }
 input[type=text] { width: 60%; padding: .4rem; } li { margin: .6rem 0; } .meta { color: #555; font-size: .9em; }
 #err { color: #b00; }
</style></head>
<body>
<h1>openclap search</h1>
<form id="f">
 <input id="q" type="text" placeholder="a dog barking in the rain" autofocus>
 <input id="k" type="number" value="10" min="1" max="200" style="width:4rem">
 <button>Search</button>
 <details><summary>token</summary><input id="tok" type="password" placeholder="bearer token, if the server needs one"></details>
</form>
<p id="err"></p>
<ol id="out"></ol>
<script>
const tok = document.getElementById('tok');
tok.value = localStorage.getItem('openclap-token') || '';
document.getElementById('f').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  localStorage.setItem('openclap-token', tok.value);
  const q = document.getElementById('q').value, k = document.getElementById('k').value;
  const out = document.getElementById('out'), err = document.getElementById('err');
  out.textContent = ''; err.textContent = '';
  const headers = tok.value ? {Authorization: 'Bearer ' + tok.value} : {};
  const r = await fetch('/search?q=' + encodeURIComponent(q) + '&top_k=' + k, {headers});
  const body = await r.json();
  if (!r.ok) { err.textContent = r.status + ': ' + body.detail; return; }
  for (const hit of body.results) {
    const li = document.createElement('li');
    const meta = document.createElement('div');
    meta.className = 'meta';
    meta.textContent = hit.score.toFixed(4) + '  ' + hit.start.toFixed(1) + '-' + hit.end.toFixed(1) + ' s  ' + hit.path;
    const player = document.createElement('audio');
    player.controls = true; player.preload = 'none';
    player.src = hit.audio_url;  // signed for a few minutes when the server has a token: no token in URLs
    li.append(meta, player);
    out.append(li);
  }
});
</script>
</body></html>
"""

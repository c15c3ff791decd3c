"""HTTP service against a real uvicorn server on 127.0.0.1 (random free port, stopped at the end)."""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import openclap
from openclap.bulk import EmbedOptions

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

from openclap.index import build_index_from_files
from openclap.registry import bundled_model_dir
from openclap.server import Batcher, ServerSettings, create_app, uvicorn_config

TOKEN = "s3cret-token"
DEMO = Path(openclap.__file__).parent / "assets" / "demo"


class LiveServer:
    """uvicorn serving ``app`` in a thread with the service's own limits; ``url`` is its base URL."""

    def __init__(self, app, settings: ServerSettings | None = None) -> None:
        import uvicorn

        config = uvicorn_config(app, "127.0.0.1", 0, settings or ServerSettings(), log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def pipe():
    return openclap.load("tiny")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    lib = root / "lib"
    lib.mkdir()
    files = sorted(DEMO.glob("*.flac"))[:10]
    for p in files:
        (lib / p.name).write_bytes(p.read_bytes())
    secret = root / "secret.flac"  # outside the indexed root
    secret.write_bytes(files[0].read_bytes())
    (lib / "link.flac").symlink_to(secret)  # inside the root, pointing outside: must not be served
    return root


@pytest.fixture(scope="module")
def server(pipe, corpus):
    index, _ = build_index_from_files(pipe, [corpus / "lib"], corpus / "index", EmbedOptions(num_workers=0))
    index.remove_paths([str((corpus / "lib" / "link.flac").resolve())])
    settings = ServerSettings(token=TOKEN, max_upload_bytes=400_000, max_duration=30.0, max_wait=0.05)
    live = LiveServer(create_app(pipe, index, settings), settings)
    live.index = index
    yield live
    live.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
        yield c


def _flac_bytes(wave: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="FLAC")
    return buf.getvalue()


def test_health_page_and_no_cors(server):
    r = httpx.get(server.url + "/health", headers={"Origin": "http://evil.example"})
    assert (
        r.status_code == 200
        and r.json()["embed_dim"] == 64
        and r.json()["index_rows"] == len(list(DEMO.glob("*.flac"))[:10])
        and r.json()["random_weights"] is True  # the `tiny` preset: the service says so
    )
    assert "access-control-allow-origin" not in r.headers
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "<form" in page.text and "/search?q=" in page.text
    assert "&top_k=" in page.text and "token=" not in page.text


def test_token_required(server):
    assert httpx.get(server.url + "/search", params={"q": "dog"}).status_code == 401
    bad = httpx.get(server.url + "/search", params={"q": "dog"}, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and "token" in bad.json()["detail"]
    r = httpx.post(server.url + "/embed/text", json={"texts": ["x"]}, headers={"Authorization": "Basic abc"})
    assert r.status_code == 401


def test_embed_text_concurrent_requests_are_batched_and_correct(client, pipe):
    texts = [f"a recording of sound number {i}" for i in range(24)]
    before = client.get("/health").json()

    def one(t: str) -> list[float]:
        r = client.post("/embed/text", json={"texts": [t]})
        assert r.status_code == 200, r.text
        return r.json()["embeddings"][0]

    with ThreadPoolExecutor(12) as pool:
        got = np.array(list(pool.map(one, texts)), dtype=np.float32)
    assert np.allclose(got, pipe.embed_text(texts), atol=1e-5)
    after = client.get("/health").json()
    requests = after["text_requests"] - before["text_requests"]
    batches = after["text_batches"] - before["text_batches"]
    assert requests == 24 and batches < requests  # concurrent requests shared model calls
    assert client.post("/embed/text", json={"texts": []}).status_code == 422
    assert client.post("/embed/text", json={"texts": ["ok", ""]}).status_code == 422


def test_embed_audio_and_classify(client, pipe, corpus):
    path = min((corpus / "lib").glob("*.flac"))
    data = path.read_bytes()

    def one(_: int) -> list[float]:
        r = client.post("/embed/audio", files={"file": (path.name, data)})
        assert r.status_code == 200, r.text
        return r.json()["embedding"]

    with ThreadPoolExecutor(6) as pool:
        got = np.array(list(pool.map(one, range(6))), dtype=np.float32)
    assert np.allclose(got, pipe.embed_audio([path])[0][None], atol=1e-5)

    r = client.post(
        "/classify", files={"file": (path.name, data)}, data={"labels": ["dog", "rain", "sea waves"]}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    ref = pipe.classify([path], ["dog", "rain", "sea waves"])[0]
    assert body["labels"] == ref.labels and np.allclose(body["scores"], ref.scores, atol=1e-5)
    r = client.post(
        "/classify", files={"file": (path.name, data)}, data={"labels": "dog,rain", "template": "no slot"}
    )
    assert r.status_code == 422 and "template" in r.json()["detail"]


def test_classify_defaults_to_the_models_own_prompt(tmp_path):
    """/classify without a template uses the model's templates.json "default", as `openclap classify` does."""
    model_dir = tmp_path / "mini"
    shutil.copytree(bundled_model_dir("openclap-mini"), model_dir)
    own = "a recording of {}"  # neither "{}" nor the paper's prompt: a default the server cannot guess
    (model_dir / "templates.json").write_text(json.dumps({"default": own}))
    pipe = openclap.load(model_dir)
    # a sneeze among four other sounds: no label fits, so the scores stay away from 0 and 1 and the prompt moves
    # them (by 0.24 or more against both other prompts with the bundled weights)
    clip = DEMO / "4-156843-A-sneezing.flac"
    labels = ["dog", "rain", "sea waves", "rooster"]
    live = LiveServer(create_app(pipe, None, ServerSettings()))
    try:
        with httpx.Client(base_url=live.url, timeout=60) as c:
            upload = {"file": (clip.name, clip.read_bytes())}
            default = c.post("/classify", files=upload, data={"labels": labels})
            explicit = c.post("/classify", files=upload, data={"labels": labels, "template": "{}"})
            assert c.get("/health").json()["random_weights"] is False  # trained weights
    finally:
        live.stop()
    assert default.status_code == 200 and explicit.status_code == 200, (default.text, explicit.text)

    def scores(body: dict) -> np.ndarray:
        return np.array([body["scores"][body["labels"].index(x)] for x in labels])

    for body, template in ((default.json(), own), (explicit.json(), "{}")):  # the flag still overrides
        ref = pipe.classify([clip], labels, template=template)[0]
        assert np.allclose(scores(body), [ref.scores[ref.labels.index(x)] for x in labels], atol=1e-5)
    for other in ("{}", "this is the sound of {}"):  # what a hard-coded default would give
        ref = pipe.classify([clip], labels, template=other)[0]
        assert np.abs(scores(default.json()) - [ref.scores[ref.labels.index(x)] for x in labels]).max() > 0.1


def test_uploaded_m4a_and_video_go_through_ffmpeg(client, pipe, tmp_path):
    from openclap.audio.ffmpeg import encode_file

    wave, rate = sf.read(DEMO / "4-183992-A-dog.flac", dtype="int16")
    encode_file(tmp_path / "dog.m4a", wave[None], rate, "aac", "ipod")
    r = client.post("/embed/audio", files={"file": ("dog.m4a", (tmp_path / "dog.m4a").read_bytes())})
    assert r.status_code == 200, r.text
    ref = pipe.embed_audio([tmp_path / "dog.m4a"])[0]
    assert float(np.dot(r.json()["embedding"], ref)) > 0.99999
    encode_file(tmp_path / "mute.mp4", None, rate, "", "mp4", video="mpeg4")
    r = client.post("/embed/audio", files={"file": ("mute.mp4", (tmp_path / "mute.mp4").read_bytes())})
    assert r.status_code == 422 and "no audio stream" in r.text
    # the decode budget holds for FFmpeg's formats too: 40 s of low-rate AAC is small but over 30 s
    long = np.tile(wave, 8)[None]
    encode_file(tmp_path / "long.m4a", long, rate, "aac", "ipod", bit_rate=24_000)
    assert (tmp_path / "long.m4a").stat().st_size < 400_000
    r = client.post("/embed/audio", files={"file": ("long.m4a", (tmp_path / "long.m4a").read_bytes())})
    assert r.status_code == 413, r.text


def test_upload_limits_and_corrupt_audio(client, server):
    big = os.urandom(500_000)
    r = client.post("/embed/audio", files={"file": ("big.wav", big)})
    assert r.status_code == 413  # Content-Length over the limit: Starlette's plain "Content Too Large"
    long = _flac_bytes(np.zeros(16000 * 40, np.float32) + 0.01, 16000)  # 40 s of a tiny DC: small, too long
    r = client.post("/embed/audio", files={"file": ("long.flac", long)})
    assert r.status_code == 413 and "40.0 s" in r.json()["detail"]
    r = client.post("/embed/audio", files={"file": ("broken.wav", b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "broken.wav" in detail and "openclap-upload" not in detail  # the reason names the upload
    r = client.post(
        "/embed/audio", files={"file": ("silent.flac", _flac_bytes(np.zeros(8000, np.float32), 8000))}
    )
    assert r.status_code == 422 and "silent" in r.json()["detail"]


def test_search_and_audio_serving_refuses_traversal(client, server, corpus):
    client.index = server.index
    r = client.get("/search", params={"q": "a dog barking", "top_k": 3})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    lib = corpus / "lib"
    assert len(results) == 3 and all((lib / h["path"]).is_file() and "/" not in h["path"] for h in results)
    audio = client.get(results[0]["audio_url"].split("#")[0])
    assert audio.status_code == 200 and audio.content == (lib / results[0]["path"]).read_bytes()
    assert client.get(f"/audio/{results[1]['row']}").content == (lib / results[1]["path"]).read_bytes()

    # The symlink row (lib/link.flac -> ../secret.flac) was removed from the index: its row is refused,
    # and no path (traversal, absolute, relative) is accepted at all.
    index = client.index
    hidden = [i for i, row in enumerate(index.rows) if row.deleted or index._deleted[i]]
    assert hidden and all(client.get(f"/audio/{i}").status_code == 403 for i in hidden)
    for bad in ["/etc/passwd", f"{lib}/../secret.flac", str(lib / "link.flac"), "../../../../etc/passwd"]:
        r = client.get("/audio", params={"path": bad})
        assert r.status_code == 404 and "row id" in r.json()["detail"], bad
    r = client.get("/audio", params={"path": str(lib / results[0]["path"]), "token": TOKEN})
    assert r.status_code == 404
    assert client.get("/search", params={"q": "dog", "top_k": 0}).status_code == 422

    clip = lib / results[1]["path"]
    r = client.post("/search/audio", files={"file": (clip.name, clip.read_bytes())}, params={"top_k": 2})
    assert r.status_code == 200 and r.json()["results"][0]["path"] == results[1]["path"]


def test_cors_when_enabled(pipe):
    settings = ServerSettings(cors_origins=["http://app.example"])
    live = LiveServer(create_app(pipe, None, settings), settings)
    try:
        r = httpx.get(live.url + "/health", headers={"Origin": "http://app.example"})
        assert r.headers.get("access-control-allow-origin") == "http://app.example"
        assert httpx.get(live.url + "/search", params={"q": "x"}).status_code == 404  # no index
        preflight = httpx.options(
            live.url + "/embed/text",
            headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
    finally:
        live.stop()


def test_batcher_batches_and_propagates_errors():
    calls = []

    def fn(items):
        calls.append(len(items))
        if "boom" in items:
            raise RuntimeError("boom")
        return [x * 2 for x in items]

    b = Batcher(fn, max_items=8, max_wait=0.2)
    futures = [b.submit(i) for i in range(5)]
    assert [f.result(timeout=10) for f in futures] == [0, 2, 4, 6, 8]
    assert calls[0] == 5
    bad = b.submit("boom")
    with pytest.raises(RuntimeError, match="boom"):
        bad.result(timeout=10)
    b.close()


def test_batcher_retries_a_failed_batch_item_by_item():
    """One bad item in a batch: the batch fails, each item runs alone, only the bad one gets the error; the
    counters count the model calls that returned (the good batch of 1 + 1 + 1 items, not the failed ones)."""
    calls = []

    def fn(items):
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [f"<{x}>" for x in items]

    b = Batcher(fn, max_items=8, max_wait=0.5)
    futures = [b.submit(x) for x in ("a", "bad", "c")]
    assert futures[0].result(timeout=10) == "<a>" and futures[2].result(timeout=10) == "<c>"
    with pytest.raises(ValueError, match="bad item"):
        futures[1].result(timeout=10)
    b.close()
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    assert (b.batches, b.items) == (2, 2)
    short = Batcher(lambda items: items[:-1], max_items=1)
    with pytest.raises(RuntimeError, match="batch function returned 0 results for 1 items"):
        short.submit("x").result(timeout=10)
    short.close()


def test_serve_command_in_subprocess(tmp_path):
    """`openclap serve` itself: token from the environment, /health and an authenticated request."""
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The installed console script (pyproject's [project.scripts]) as a user starts it, nothing patched; where
    # the interpreter's folder holds no script (a user-site install), the same cli.main via `python -m openclap`.
    script = Path(sys.executable).with_name("openclap")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "openclap"]
    env = {**os.environ, "OPENCLAP_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [*command, "serve", "--model", "tiny", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "openclap serve did not come up"
            time.sleep(0.2)
        assert httpx.post(url + "/embed/text", json={"texts": ["rain"]}).status_code == 401
        r = httpx.post(
            url + "/embed/text", json={"texts": ["rain"]}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert r.status_code == 200 and r.json()["dim"] == 64
        assert (
            httpx.get(
                url + "/search", params={"q": "rain"}, headers={"Authorization": f"Bearer {TOKEN}"}
            ).status_code
            == 404
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

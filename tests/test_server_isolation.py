"""The HTTP service returns each concurrent request its own result: different clips of different lengths
posted at once (so they share model calls) each get ``pipe.embed_audio`` of their own clip, on a real
uvicorn server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import openclap

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from openclap.server import ServerSettings, create_app

DEMO = Path(openclap.__file__).parent / "assets" / "demo"
CLIPS = [
    "4-183992-A-dog.flac",  # 5 s
    "fluidr3_p040_violin_m071_v110.flac",  # 3 s
    "3_theo_0.flac",  # 0.24 s at 8 kHz
    "4-160999-A-rain.flac",
    "7_theo_0.flac",
    "fluidr3_p056_trumpet_m055_v110.flac",
]


@pytest.fixture(scope="module")
def pipe():
    return openclap.load("tiny")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The demo clips above plus a 13 s recording (several windows) made of three of them."""
    long = tmp_path_factory.mktemp("iso") / "long.flac"
    parts = [sf.read(DEMO / name, dtype="float32")[0] for name in CLIPS[:2] + CLIPS[3:4]]
    sf.write(long, np.concatenate(parts), 16000, subtype="PCM_16")
    return [DEMO / name for name in CLIPS] + [long]


@pytest.fixture(scope="module")
def url(pipe):
    """A live server whose audio batcher waits long enough for all concurrent requests to share a call."""
    settings = ServerSettings(max_wait=0.5, max_batch=16)
    server = uvicorn.Server(uvicorn.Config(create_app(pipe, None, settings), host="127.0.0.1", port=0,
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=30)


def test_concurrent_audio_requests_get_their_own_embeddings(pipe, clips: list[Path], url: str) -> None:
    start = threading.Barrier(len(clips))

    def post(path: Path) -> dict:
        data = path.read_bytes()
        with httpx.Client(base_url=url, timeout=120) as client:
            start.wait()  # all at once: the batcher gathers them into shared model calls
            r = client.post("/embed/audio", files={"file": (path.name, data)})
        assert r.status_code == 200, r.text
        return r.json()

    with ThreadPoolExecutor(len(clips)) as pool:
        replies = list(pool.map(post, clips))
    got = np.array([r["embedding"] for r in replies], dtype=np.float32)
    want = pipe.embed_audio([str(p) for p in clips])
    assert np.abs(got - want).max() < 1e-5
    # each reply is its own clip's, not merely close to all of them: distinct clips differ far more than 1e-5
    gaps = np.abs(want[:, None] - want[None]).max(axis=-1)
    assert gaps[~np.eye(len(clips), dtype=bool)].min() > 1e-3
    windows = [r["windows"] for r in replies]
    assert windows[:-1] == [1] * (len(clips) - 1) and windows[-1] > 1
    assert [r["duration"] for r in replies] == pytest.approx(
        [sf.info(p).frames / sf.info(p).samplerate for p in clips], abs=1e-3
    )

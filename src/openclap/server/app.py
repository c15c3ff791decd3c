"""The HTTP service: embeddings, zero-shot classification and index search over FastAPI.

Endpoints (JSON unless noted; errors are ``{"detail": "..."}`` with a 4xx status):

    GET  /health                       model, embedding size, index size, batching counters (no token needed)
    POST /embed/text                   {"texts": [...]} -> {"embeddings": [[...]], "dim": D}
    POST /embed/audio                  multipart "file" -> {"embedding": [...], "duration": s, "windows": W}
    POST /classify                     multipart "file" + "labels" (repeated, or one comma-separated) [+ "template"]
    GET  /search?q=TEXT&k=10           -> {"results": [{path, start, end, score, audio_url}]}
    POST /search/audio?k=10            multipart "file": more like this upload
    GET  /audio?path=P                 the indexed file P (only files of the index, inside its roots)
    GET  /                             a small page: type a query, play the results

Limits: uploads over ``max_upload_bytes`` or ``max_duration`` seconds get 413, undecodable audio 422
with the decoder's reason, a missing or wrong bearer token 401 (when a token is set). CORS is off
unless origins are given. Concurrent requests are batched into shared model calls (``Batcher``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import numpy as np
import torch
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from openclap.audio.io import AudioLoadError, audio_info, load_audio
from openclap.audio.windows import split_windows
from openclap.server.batching import Batcher
from openclap.server.page import INDEX_HTML

logger = logging.getLogger(__name__)

MULTIPART_SLACK = 64 * 1024  # bytes of multipart framing and form fields allowed on top of the file


@dataclass
class ServerSettings:
    """Limits and switches of the service."""

    max_upload_bytes: int = 50 * 1024 * 1024
    max_duration: float = 600.0  # seconds of audio per upload
    token: str | None = None  # bearer token; None: no authentication
    cors_origins: list[str] = field(default_factory=list)  # empty: CORS off
    max_batch: int = 16  # requests per shared model call
    max_wait: float = 0.01  # seconds a request waits for companions
    max_texts: int = 256  # texts per /embed/text request
    max_labels: int = 512  # labels per /classify request
    max_top_k: int = 200
    audio_batch_size: int = 16  # windows per audio model call
    label_cache_size: int = 4096  # cached prompt embeddings


class ServiceState:
    """The model, the optional index, the batchers and the prompt cache shared by all requests."""

    def __init__(self, pipeline, index=None, settings: ServerSettings | None = None) -> None:
        self.pipeline = pipeline
        self.index = index
        self.settings = settings or ServerSettings()
        s = self.settings
        self.text_batcher = Batcher(self._embed_text_batch, s.max_batch, s.max_wait, name="openclap-text")
        self.audio_batcher = Batcher(self._embed_audio_batch, s.max_batch, s.max_wait, name="openclap-audio")
        self._prompt_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.indexed_paths = index.paths() if index is not None else set()

    def close(self) -> None:
        """Stop the batching threads."""
        self.text_batcher.close()
        self.audio_batcher.close()

    # ------------------------------------------------------------------------------ model calls
    def _embed_text_batch(self, items: Sequence[list[str]]) -> list:
        from openclap.text.tokenizer import TextInputError

        flat = [t for texts in items for t in texts]
        try:
            embeds = self.pipeline.embed_text(flat, batch_size=max(len(flat), 1))
        except TextInputError:
            # One bad request must not fail its companions: redo each on its own.
            out: list = []
            for texts in items:
                try:
                    out.append(self.pipeline.embed_text(texts))
                except TextInputError as exc:
                    out.append(exc)
            return out
        out, offset = [], 0
        for texts in items:
            out.append(embeds[offset : offset + len(texts)])
            offset += len(texts)
        return out

    def _embed_audio_batch(self, waves: Sequence[np.ndarray]) -> list[tuple[np.ndarray, int]]:
        audio = self.pipeline.config.audio
        hop = max(1, round(audio.hop_seconds * audio.sample_rate))
        chunks, counts = [], []
        for wave in waves:
            windows, _ = split_windows(
                torch.from_numpy(wave), audio.num_samples, hop, audio.pad_mode, audio.sample_rate
            )
            chunks.append(windows)
            counts.append(len(windows))
        windows = torch.cat(chunks)
        model, device, bs = self.pipeline.model, self.pipeline.device, self.settings.audio_batch_size
        with torch.inference_mode():
            embeds = torch.cat(
                [
                    model.encode_audio(windows[i : i + bs].to(device, torch.float32)).float().cpu()
                    for i in range(0, len(windows), bs)
                ]
            ).numpy()
        out, offset = [], 0
        for n in counts:
            mean = embeds[offset : offset + n].mean(axis=0)
            out.append(((mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32), n))
            offset += n
        return out

    async def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Text embeddings through the text batcher."""
        result = await asyncio.wrap_future(self.text_batcher.submit(texts))
        if isinstance(result, Exception):
            raise HTTPException(422, str(result))
        return result

    async def embed_wave(self, wave: np.ndarray) -> tuple[np.ndarray, int]:
        """One waveform's clip embedding (mean of its windows) through the audio batcher."""
        return await asyncio.wrap_future(self.audio_batcher.submit(wave))

    async def prompt_embeddings(self, prompts: list[str]) -> np.ndarray:
        """Embeddings of label prompts, cached (LRU) across requests."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._prompt_cache]
        if missing:
            for p, v in zip(missing, await self.embed_texts(missing)):
                self._prompt_cache[p] = v
        for p in prompts:
            self._prompt_cache.move_to_end(p)
        while len(self._prompt_cache) > self.settings.label_cache_size:
            self._prompt_cache.popitem(last=False)
        return np.stack([self._prompt_cache[p] for p in prompts])


async def _read_upload(state: ServiceState, file: UploadFile) -> np.ndarray:
    """Upload -> waveform at the model's rate, with 413 for size/duration and 422 for bad audio."""
    limit = state.settings.max_upload_bytes
    name = Path(file.filename or "upload").name
    suffix = Path(name).suffix.lower()[:10]
    fd, tmp = tempfile.mkstemp(prefix="openclap-upload-", suffix=suffix)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := await file.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"upload '{name}' is larger than the {limit} byte limit")
                out.write(chunk)
        if size == 0:
            raise HTTPException(
                422, f"upload '{name}' is empty; send the audio file in the 'file' form field"
            )

        def decode() -> np.ndarray:
            info = audio_info(tmp)
            if info.duration > state.settings.max_duration:
                raise HTTPException(
                    413,
                    f"upload '{name}' lasts {info.duration:.1f} s, over the {state.settings.max_duration:g} s limit",
                )
            return load_audio(tmp, state.pipeline.sample_rate)

        try:
            return await run_in_threadpool(decode)
        except AudioLoadError as exc:
            raise HTTPException(
                422, f"cannot decode upload '{name}': {str(exc).replace(tmp, name)}"
            ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def create_app(pipeline, index=None, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI application serving ``pipeline`` (and ``index`` for /search and /audio)."""
    state = ServiceState(pipeline, index, settings)
    s = state.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        state.close()  # stop the batching threads when the server shuts down

    app = FastAPI(
        title="openclap",
        description="CLAP embeddings, zero-shot classification and audio search.",
        lifespan=lifespan,
    )
    app.state.openclap = state

    if s.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=s.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > s.max_upload_bytes + MULTIPART_SLACK:
            return JSONResponse(
                {
                    "detail": f"request body of {length} bytes is over the {s.max_upload_bytes} byte upload limit"
                },
                status_code=413,
            )
        return await call_next(request)

    def check_token(request: Request) -> None:
        if s.token is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else request.query_params.get("token", "")
        if not hmac.compare_digest(given.encode(), s.token.encode()):
            raise HTTPException(
                401,
                "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    auth = [Depends(check_token)]

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return INDEX_HTML

    @app.get("/health")
    def health() -> dict:
        return {
            "status": "ok",
            "model": pipeline.config.name,
            "embed_dim": int(pipeline.config.embed_dim),
            "sample_rate": pipeline.sample_rate,
            "index_rows": len(index) if index is not None else 0,
            "text_batches": state.text_batcher.batches,
            "text_requests": state.text_batcher.items,
            "audio_batches": state.audio_batcher.batches,
            "audio_requests": state.audio_batcher.items,
        }

    @app.post("/embed/text", dependencies=auth)
    async def embed_text(body: dict) -> dict:
        texts = body.get("texts")
        if isinstance(texts, str):
            texts = [texts]
        if (
            not isinstance(texts, list)
            or not texts
            or not all(isinstance(t, str) and t.strip() for t in texts)
        ):
            raise HTTPException(
                422, 'send {"texts": ["a dog barking", ...]} with at least one non-empty string'
            )
        if len(texts) > s.max_texts:
            raise HTTPException(413, f"{len(texts)} texts in one request, over the limit of {s.max_texts}")
        embeds = await state.embed_texts(texts)
        return {"model": pipeline.config.name, "dim": int(embeds.shape[1]), "embeddings": embeds.tolist()}

    @app.post("/embed/audio", dependencies=auth)
    async def embed_audio(file: Annotated[UploadFile, File()]) -> dict:
        wave = await _read_upload(state, file)
        embed, windows = await state.embed_wave(wave)
        return {
            "model": pipeline.config.name,
            "dim": len(embed),
            "embedding": embed.tolist(),
            "duration": len(wave) / pipeline.sample_rate,
            "windows": windows,
        }

    @app.post("/classify", dependencies=auth)
    async def classify(
        file: Annotated[UploadFile, File()],
        labels: Annotated[list[str], Form()],
        template: Annotated[str, Form()] = "this is the sound of {}",
        top_k: Annotated[int | None, Form()] = None,
    ) -> dict:
        names = [x.strip() for item in labels for x in item.split(",") if x.strip()]
        if not names or len(set(names)) != len(names):
            raise HTTPException(422, f"labels must be unique and non-empty, got {names}")
        if len(names) > s.max_labels:
            raise HTTPException(413, f"{len(names)} labels, over the limit of {s.max_labels}")
        if "{}" not in template:
            raise HTTPException(422, f"template must contain '{{}}' where the label goes, got {template!r}")
        wave = await _read_upload(state, file)
        text = await state.prompt_embeddings([template.format(n) for n in names])
        embed, _ = await state.embed_wave(wave)
        logits = float(pipeline.model.scale().detach()) * (text @ embed)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs, kind="stable")[: (top_k or len(names))]
        return {"labels": [names[i] for i in order], "scores": [float(probs[i]) for i in order]}

    def hits_json(hits) -> list[dict]:
        return [
            {**h.to_dict(), "audio_url": f"/audio?path={quote(h.path)}#t={h.start:.2f},{h.end:.2f}"}
            for h in hits
        ]

    def need_index():
        if index is None:
            raise HTTPException(404, "this server has no index; start it with `openclap serve --index INDEX`")
        return index

    def check_k(k: int) -> None:
        if not 1 <= k <= s.max_top_k:
            raise HTTPException(422, f"k must be between 1 and {s.max_top_k}, got {k}")

    @app.get("/search", dependencies=auth)
    async def search(q: Annotated[str, Query(min_length=1)], k: int = 10) -> dict:
        idx = need_index()
        check_k(k)
        if not q.strip():
            raise HTTPException(422, "q must be a non-empty text query")
        query = (await state.embed_texts([q]))[0]
        hits = await run_in_threadpool(idx.search, query, k)
        return {"query": q, "results": hits_json(hits[0])}

    @app.post("/search/audio", dependencies=auth)
    async def search_audio(file: Annotated[UploadFile, File()], k: int = 10) -> dict:
        idx = need_index()
        check_k(k)
        wave = await _read_upload(state, file)
        embed, _ = await state.embed_wave(wave)
        hits = await run_in_threadpool(idx.search, embed, k)
        return {"results": hits_json(hits[0])}

    @app.get("/audio", dependencies=auth)
    def audio(path: str) -> FileResponse:
        idx = need_index()
        try:
            real = str(Path(path).resolve(strict=True))
        except (OSError, RuntimeError):
            real = None
        # Serve only files of the index that also lie inside its roots (symlinks resolved): no traversal.
        if real is None or real not in state.indexed_paths or not idx.is_inside_roots(real):
            raise HTTPException(403, "only audio files of the index can be fetched")
        return FileResponse(real)

    return app

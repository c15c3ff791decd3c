"""The HTTP service: embeddings, zero-shot classification and index search over FastAPI.

Endpoints (JSON unless noted; errors are ``{"detail": ...}`` with a 4xx status):

    GET  /health                       model, embedding size, index size, batching counters (no token needed)
    POST /embed/text                   {"texts": [...]} -> {"embeddings": [[...]], "dim": D}
    POST /embed/audio                  multipart "file" -> {"embedding": [...], "duration": s, "windows": W}
    POST /classify                     multipart "file" + "labels" (repeated, or one comma-separated)
                                       [+ "template" with one "{}", default: the model's own prompt]
                                       [+ "top_k"]
    GET  /search?q=TEXT&top_k=10       -> {"results": [{path, start, end, score, row, audio_url}]}
    POST /search/audio?top_k=10        multipart "file": more like this upload
    GET  /audio/{row}                  the indexed file of search result ``row``
    GET  /                             a small page: type a query, play the results

Hardening (defaults in :class:`ServerSettings`; "Running the service safely" in docs/inference.md):

* The bearer token is checked before a request's body is read (Starlette ``AuthenticationMiddleware``);
  it is accepted in the ``Authorization`` header only. ``/audio/{row}`` also takes a short-lived HMAC
  signature (``exp``/``sig``), which is what the search results' ``audio_url`` carries for ``<audio>``.
* Bodies are capped while they stream (FastAPI ``max_body_size``, chunked bodies included): uploads at
  ``max_upload_bytes``, JSON and the rest at ``max_json_bytes``.
* An upload's header is checked against a decode budget (samples, duration, sample rate) before it is
  decoded (:class:`openclap.audio.io.DecodeBudget`), and decoded in blocks.
* ``TrustedHostMiddleware`` refuses foreign ``Host`` headers (DNS rebinding).
* Templates are filled by plain substitution (never ``str.format``); texts, labels and templates have
  length caps; unknown query parameters and out-of-range ``top_k`` are 422.
* A batched model call that raises is redone one request at a time, so only the bad request fails.
* Error bodies never echo large inputs; results carry paths relative to the index roots.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from openclap.audio.io import AudioLoadError, AudioTooLargeError, DecodeBudget, load_audio
from openclap.audio.windows import split_windows
from openclap.pipeline import fill_template
from openclap.server.batching import Batcher
from openclap.server.page import INDEX_HTML
from openclap.text.cache import TextEmbeddingCache

logger = logging.getLogger(__name__)

MULTIPART_SLACK = 64 * 1024  # bytes of multipart framing and form fields allowed on top of the file
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
PUBLIC_PATHS = frozenset({"/", "/health"})  # served without a token
MAX_DETAIL_CHARS = 300  # error messages are cut here so they never echo a large input


@dataclass
class ServerSettings:
    """Limits and switches of the service (each checked: positive and finite)."""

    max_upload_bytes: int = 50 * 1024 * 1024  # bytes of one upload (the body limit of upload endpoints)
    max_json_bytes: int = 1024 * 1024  # body limit of every other endpoint
    max_duration: float = 600.0  # seconds of audio per upload, from its header
    max_decoded_samples: int = 600 * 48_000 * 2  # frames x channels an upload's header may announce
    min_sample_rate: int = 1_000  # Hz
    max_sample_rate: int = 384_000  # Hz
    token: str | None = None  # bearer token; None: no authentication
    allowed_hosts: list[str] = field(default_factory=lambda: list(LOOPBACK_HOSTS))  # Host header; "*": any
    cors_origins: list[str] = field(default_factory=list)  # empty: CORS off
    max_batch: int = 16  # requests per shared model call
    max_wait: float = 0.01  # seconds a request waits for companions
    max_texts: int = 256  # texts per /embed/text request
    max_text_chars: int = 1000  # characters per text (CLAP reads ~77 tokens; more is wasted work)
    max_request_chars: int = 32_000  # characters over all texts of one request
    max_labels: int = 512  # labels per /classify request
    max_label_chars: int = 200
    max_template_chars: int = 200
    max_top_k: int = 200
    audio_batch_size: int = 16  # windows per audio model call
    label_cache_size: int = 4096  # cached prompt embeddings
    audio_url_ttl: float = 900.0  # seconds a signed /audio link stays valid
    read_timeout: float = 30.0  # seconds for a request's headers and body to arrive
    keep_alive_timeout: int = 5  # seconds an idle connection stays open
    max_connections: int = 64  # open connections and running requests; more get 503

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if numeric and not (math.isfinite(value) and value > 0):
                raise ValueError(f"ServerSettings.{f.name} must be positive and finite, got {value!r}")
        if self.min_sample_rate > self.max_sample_rate:
            raise ValueError("ServerSettings.min_sample_rate must not exceed max_sample_rate")
        if self.token is not None and not self.token.strip():
            raise ValueError(
                "ServerSettings.token is empty: give a real token, or None for no authentication"
            )

    @property
    def decode_budget(self) -> DecodeBudget:
        """What an upload's header may announce (checked before it is decoded)."""
        return DecodeBudget(
            max_samples=self.max_decoded_samples,
            max_seconds=self.max_duration,
            min_rate=self.min_sample_rate,
            max_rate=self.max_sample_rate,
        )


def _short(text: object, limit: int = 60) -> str:
    """``repr`` of a user input, cut to ``limit`` characters (error messages must stay small)."""
    s = repr(text)
    return s if len(s) <= limit else s[: limit - 5] + "...'"


class ServiceState:
    """The model, the optional index, the batchers and the prompt cache shared by all requests."""

    def __init__(self, pipeline, index=None, settings: ServerSettings | None = None) -> None:
        self.pipeline = pipeline
        self.index = index
        self.settings = settings or ServerSettings()
        s = self.settings
        self.text_batcher = Batcher(self._embed_text_batch, s.max_batch, s.max_wait, name="openclap-text")
        self.audio_batcher = Batcher(self._embed_audio_batch, s.max_batch, s.max_wait, name="openclap-audio")
        self._prompt_cache = TextEmbeddingCache(self.settings.label_cache_size)
        self.indexed_paths = index.paths() if index is not None else set()
        roots = index.info.get("roots", []) if index is not None else []
        self._roots = sorted((str(Path(r)) for r in roots), key=len, reverse=True)  # deepest first

    def close(self) -> None:
        """Stop the batching threads."""
        self.text_batcher.close()
        self.audio_batcher.close()

    def relative_path(self, path: str) -> str:
        """``path`` relative to the index root holding it (the server's layout stays private)."""
        for root in self._roots:
            if path.startswith(root.rstrip(os.sep) + os.sep):
                return os.path.relpath(path, root)
        return Path(path).name

    # ------------------------------------------------------------------------------ model calls
    def _embed_text_batch(self, items: Sequence[list[str]]) -> list[np.ndarray]:
        flat = [t for texts in items for t in texts]
        embeds = self.pipeline.embed_text(flat, batch_size=max(len(flat), 1))
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

    @staticmethod
    async def _batched(batcher: Batcher, item):
        """``batcher``'s result for ``item``; an input the model refuses is 422 for this request only."""
        try:
            return await asyncio.wrap_future(batcher.submit(item))
        except (ValueError, TypeError) as exc:  # bad input (the batcher already isolated it)
            raise HTTPException(422, f"the model refused this input: {str(exc)[:200]}") from None

    async def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Text embeddings through the text batcher."""
        return await self._batched(self.text_batcher, texts)

    async def embed_wave(self, wave: np.ndarray) -> tuple[np.ndarray, int]:
        """One waveform's clip embedding (mean of its windows) through the audio batcher."""
        if wave.size == 0:
            raise HTTPException(422, "the upload decodes to no samples at the model's rate")
        return await self._batched(self.audio_batcher, wave)

    async def prompt_embeddings(self, prompts: list[str]) -> np.ndarray:
        """Embeddings of label prompts, cached (LRU) across requests.

        The result is built from what this request found cached *before* awaiting plus what it
        computed, never re-read from the cache afterwards: other requests may evict entries meanwhile.
        """
        got = self._prompt_cache.lookup(prompts)
        missing = [p for p in dict.fromkeys(prompts) if p not in got]
        if missing:
            got.update(zip(missing, await self.embed_texts(missing)))
        self._prompt_cache.store(got)
        return np.stack([got[p] for p in prompts])


def check_texts(texts: Sequence[str], what: str, settings: ServerSettings) -> None:
    """422 for empty or non-Unicode texts, 413 for texts over the length caps."""
    total = 0
    for i, t in enumerate(texts):
        if not t.strip():
            raise HTTPException(422, f"{what} {i} is empty")
        if len(t) > settings.max_text_chars:
            raise HTTPException(
                413, f"{what} {i} has {len(t)} characters, over the limit of {settings.max_text_chars}"
            )
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise HTTPException(
                422, f"{what} {i} is not valid Unicode: {exc.reason} at character {exc.start}"
            ) from None
        total += len(t)
    if total > settings.max_request_chars:
        raise HTTPException(
            413, f"{total} characters of text in one request, over the limit of {settings.max_request_chars}"
        )


async def read_upload(state: ServiceState, file: UploadFile) -> np.ndarray:
    """Upload -> waveform at the model's rate: 413 over the size or decode budget, 422 for bad audio."""
    name = Path(file.filename or "upload").name[:100]
    suffix = Path(name).suffix.lower()[:10]
    fd, tmp = tempfile.mkstemp(prefix="openclap-upload-", suffix=suffix)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := await file.read(1 << 20):
                size += len(chunk)
                if size > state.settings.max_upload_bytes:
                    raise HTTPException(
                        413,
                        f"upload {name!r} is larger than the {state.settings.max_upload_bytes} byte limit",
                    )
                out.write(chunk)
        if size == 0:
            raise HTTPException(
                422, f"upload {name!r} is empty; send the audio file in the 'file' form field"
            )
        try:
            wave = await run_in_threadpool(decode_upload, tmp, state)
        except AudioLoadError as exc:
            status = 413 if isinstance(exc, AudioTooLargeError) else 422
            raise HTTPException(status, f"upload {name!r}: {str(exc).replace(tmp, name)}") from None
        return wave
    finally:
        Path(tmp).unlink(missing_ok=True)


def decode_upload(tmp: str, state: ServiceState) -> np.ndarray:
    """Decode a saved upload as a file object, not a path: FFmpeg (which reads M4A, WebM, video tracks)
    then sees no file name, so it cannot follow what a playlist names beside the upload."""
    with open(tmp, "rb") as data:
        return load_audio(data, state.pipeline.sample_rate, budget=state.settings.decode_budget)


def sign_audio(token: str, row: int, expires: int) -> str:
    """The HMAC that lets ``/audio/{row}`` be fetched without the token until ``expires`` (unix s)."""
    return hmac.new(token.encode(), f"/audio/{row}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


class _TokenBackend(AuthenticationBackend):
    """Bearer token from the Authorization header (or an ``/audio`` signature), before any body is read."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.token = (settings.token or "").encode()

    async def authenticate(self, conn):
        path = conn.url.path
        if path in PUBLIC_PATHS:
            return None
        scheme, _, given = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token):
            return AuthCredentials(["authenticated"]), SimpleUser("token")
        if path.startswith("/audio/") and self._signed(path, conn.query_params):
            return AuthCredentials(["audio"]), SimpleUser("signed-url")
        raise AuthenticationError("missing or wrong bearer token: send 'Authorization: Bearer <token>'")

    def _signed(self, path: str, params) -> bool:
        row, exp, sig = path[len("/audio/") :], params.get("exp", ""), params.get("sig", "")
        if not (row.isdigit() and exp.isdigit() and len(exp) < 16):
            return False
        now = time.time()
        if not now < int(exp) <= now + self.settings.audio_url_ttl + 60:
            return False
        return hmac.compare_digest(
            sig.encode(), sign_audio(self.settings.token or "", int(row), int(exp)).encode()
        )


def _unauthorized(_conn, exc: Exception) -> JSONResponse:
    # Connection: close, so an unread body (possibly huge) is dropped rather than drained.
    return JSONResponse(
        {"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer", "Connection": "close"}
    )


def allow_query(*names: str):
    """Dependency: 422 for query parameters the endpoint does not take (a typo must not be ignored)."""
    allowed = frozenset(names)

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            takes = ", ".join(sorted(allowed)) or "none"
            raise HTTPException(
                422, f"unknown query parameter(s) {_short(unknown, 80)}; this endpoint takes: {takes}"
            )

    return Depends(check)


class TextsBody(BaseModel):
    """Body of POST /embed/text."""

    model_config = ConfigDict(extra="forbid")
    texts: list[str] | str


def create_app(pipeline, index=None, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI application serving ``pipeline`` (and ``index`` for /search and /audio)."""
    state = ServiceState(pipeline, index, settings)
    s = state.settings
    upload_limit = s.max_upload_bytes + MULTIPART_SLACK
    upload_paths = {"/embed/audio", "/classify", "/search/audio"}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        state.close()  # stop the batching threads when the server shuts down

    app = FastAPI(
        title="openclap",
        description="CLAP embeddings, zero-shot classification and audio search.",
        lifespan=lifespan,
        max_body_size=upload_limit,  # the outer cap; routes other than uploads lower it
    )
    app.state.openclap = state

    # Middleware runs outermost-last-added: Host check, then CORS (preflights carry no token), then auth.
    if s.token is not None:
        app.add_middleware(AuthenticationMiddleware, backend=_TokenBackend(s), on_error=_unauthorized)
    if s.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=s.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(s.allowed_hosts), www_redirect=False)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # pydantic's errors carry the offending `input` (a whole upload, a megabyte of labels): drop it.
        errors = [
            {"loc": [str(x)[:40] for x in e.get("loc", ())][:6], "msg": str(e.get("msg", ""))[:200]}
            for e in exc.errors()[:10]
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 413 and detail == "Content Too Large":  # Starlette's body limit
            limit = upload_limit if request.url.path in upload_paths else s.max_json_bytes
            detail = f"request body over the {limit} byte limit of {request.url.path}"
        if isinstance(detail, str) and len(detail) > MAX_DETAIL_CHARS:
            detail = detail[: MAX_DETAIL_CHARS - 3] + "..."
        headers = dict(exc.headers or {})
        if exc.status_code == 413:
            headers["Connection"] = "close"  # do not drain the rest of an oversize body
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)

    small = {"max_body_size": s.max_json_bytes}
    upload = {"max_body_size": upload_limit}

    @app.get("/", response_class=HTMLResponse, dependencies=[allow_query()], **small)
    def page() -> str:
        return INDEX_HTML

    @app.get("/health", dependencies=[allow_query()], **small)
    def health() -> dict:
        return {
            "status": "ok",
            "model": pipeline.config.name,
            "random_weights": bool(getattr(pipeline, "random_weights", False)),
            "embed_dim": int(pipeline.config.embed_dim),
            "sample_rate": pipeline.sample_rate,
            "index_rows": len(index) if index is not None else 0,
            "text_batches": state.text_batcher.batches,
            "text_requests": state.text_batcher.items,
            "audio_batches": state.audio_batcher.batches,
            "audio_requests": state.audio_batcher.items,
        }

    @app.post("/embed/text", dependencies=[allow_query()], **small)
    async def embed_text(body: TextsBody) -> dict:
        texts = [body.texts] if isinstance(body.texts, str) else body.texts
        if not texts:
            raise HTTPException(
                422, 'send {"texts": ["a dog barking", ...]} with at least one non-empty string'
            )
        if len(texts) > s.max_texts:
            raise HTTPException(413, f"{len(texts)} texts in one request, over the limit of {s.max_texts}")
        check_texts(texts, "text", s)
        embeds = await state.embed_texts(texts)
        return {"model": pipeline.config.name, "dim": int(embeds.shape[1]), "embeddings": embeds.tolist()}

    @app.post("/embed/audio", dependencies=[allow_query()], **upload)
    async def embed_audio(file: Annotated[UploadFile, File()]) -> dict:
        wave = await read_upload(state, file)
        embed, windows = await state.embed_wave(wave)
        return {
            "model": pipeline.config.name,
            "dim": len(embed),
            "embedding": embed.tolist(),
            "duration": len(wave) / pipeline.sample_rate,
            "windows": windows,
        }

    @app.post("/classify", dependencies=[allow_query()], **upload)
    async def classify(
        file: Annotated[UploadFile, File()],
        labels: Annotated[list[str], Form()],
        template: Annotated[str | None, Form()] = None,
        top_k: Annotated[int | None, Form()] = None,
    ) -> dict:
        # No template: the model's own prompt (its templates.json "default"), as `openclap classify` does.
        template = pipeline.default_template if template is None else template
        names = [x.strip() for item in labels for x in item.split(",") if x.strip()]
        if not names:
            raise HTTPException(422, "labels must be non-empty: send 'labels' (repeated or comma-separated)")
        if len(names) > s.max_labels:
            raise HTTPException(413, f"{len(names)} labels, over the limit of {s.max_labels}")
        if len(set(names)) != len(names):
            dup = next(n for i, n in enumerate(names) if n in names[:i])
            raise HTTPException(422, f"labels must be unique; {_short(dup)} appears more than once")
        if len(template) > s.max_template_chars:
            raise HTTPException(
                413, f"template has {len(template)} characters, over the limit of {s.max_template_chars}"
            )
        check_texts([template], "template", s)
        for i, n in enumerate(names):
            if len(n) > s.max_label_chars:
                raise HTTPException(
                    413, f"label {i} has {len(n)} characters, over the limit of {s.max_label_chars}"
                )
        check_texts(names, "label", s)
        try:
            prompts = [fill_template(template, n) for n in names]
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if top_k is not None and not 1 <= top_k <= len(names):
            raise HTTPException(422, f"top_k must be between 1 and the {len(names)} labels, got {top_k}")
        wave = await read_upload(state, file)
        text = await state.prompt_embeddings(prompts)
        embed, _ = await state.embed_wave(wave)
        logits = float(pipeline.model.scale().detach()) * (text @ embed)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs, kind="stable")[: (top_k or len(names))]
        return {"labels": [names[i] for i in order], "scores": [float(probs[i]) for i in order]}

    def hits_json(hits) -> list[dict]:
        out = []
        expires = int(time.time() + s.audio_url_ttl)
        for h in hits:
            url = f"/audio/{h.row}"
            if s.token is not None:
                url += f"?exp={expires}&sig={sign_audio(s.token, h.row, expires)}"
            out.append(
                {
                    "path": state.relative_path(h.path),
                    "start": h.start,
                    "end": h.end,
                    "score": h.score,
                    "row": h.row,
                    "audio_url": f"{url}#t={h.start:.2f},{h.end:.2f}",
                }
            )
        return out

    def need_index():
        if index is None:
            raise HTTPException(404, "this server has no index; start it with `openclap serve --index INDEX`")
        return index

    def resolve_top_k(response: Response, top_k: int | None, k: int | None) -> int:
        if k is not None:
            if top_k is not None:
                raise HTTPException(422, "give top_k only ('k' is its deprecated old name)")
            logger.warning("query parameter 'k' is deprecated; use 'top_k' (accepted until the next release)")
            response.headers["Deprecation"] = "true"
            response.headers["Warning"] = '299 - "query parameter k is deprecated; use top_k"'
            top_k = k
        top_k = 10 if top_k is None else top_k
        if not 1 <= top_k <= s.max_top_k:
            raise HTTPException(422, f"top_k must be between 1 and {s.max_top_k}, got {top_k}")
        return top_k

    @app.get("/search", dependencies=[allow_query("q", "top_k", "k")], **small)
    async def search(response: Response, q: str, top_k: int | None = None, k: int | None = None) -> dict:
        idx = need_index()
        n = resolve_top_k(response, top_k, k)
        check_texts([q], "query", s)
        query = (await state.embed_texts([q]))[0]
        hits = await run_in_threadpool(idx.search, query, n)
        return {"query": q, "results": hits_json(hits[0])}

    @app.post("/search/audio", dependencies=[allow_query("top_k", "k")], **upload)
    async def search_audio(
        response: Response,
        file: Annotated[UploadFile, File()],
        top_k: int | None = None,
        k: int | None = None,
    ) -> dict:
        idx = need_index()
        n = resolve_top_k(response, top_k, k)
        wave = await read_upload(state, file)
        embed, _ = await state.embed_wave(wave)
        hits = await run_in_threadpool(idx.search, embed, n)
        return {"results": hits_json(hits[0])}

    @app.get("/audio/{row}", dependencies=[allow_query("exp", "sig")], **small)
    def audio(row: int) -> FileResponse:
        idx = need_index()
        if not 0 <= row < len(idx.rows):
            raise HTTPException(404, f"no row {row} in the index")
        path = idx.rows[row].path
        try:
            real = str(Path(path).resolve(strict=True))
        except (OSError, RuntimeError):
            raise HTTPException(404, f"row {row}'s file is gone from the server") from None
        # Serve only files of the index that also lie inside its roots (symlinks resolved): no traversal.
        if real not in state.indexed_paths or not idx.is_inside_roots(real):
            raise HTTPException(403, "only audio files of the index can be fetched")
        return FileResponse(real)

    @app.get("/audio", **small)
    def audio_by_path() -> None:
        raise HTTPException(
            404, "audio is fetched by row id: GET /audio/{row} (the audio_url of a search result)"
        )

    return app

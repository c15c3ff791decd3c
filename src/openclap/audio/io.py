"""Decode, downmix and resample audio.

Every audio path in openclap goes through this module, so every bad input fails here, once, with an
``AudioLoadError`` that names the file, says what is wrong with it and how to fix it.

Conventions
-----------
* Files are decoded with ``soundfile`` (libsndfile) when it reads them: WAV, FLAC, OGG/Vorbis, Opus, MP3
  (libsndfile >= 1.1), AIFF and the other formats listed by :func:`supported_formats` (it is the faster
  decoder there: see benchmarks/decode_speed.py). Everything else goes to PyAV, FFmpeg's decoders
  (:mod:`openclap.audio.ffmpeg`): AAC/M4A, MP4/MOV, WebM/MKV, WMA, AMR, AC-3, the audio track of a video
  file (the first audio stream, or ``stream=K``). Both decoders feed the same code below (blocks, downmix,
  budget, checks). Integer PCM becomes float32 in [-1, 1].
* A source is a path, ``bytes`` (an upload held in memory) or a binary file-like object (seekable or
  not: a non-seekable one is read into memory first).
* What is not audio says so: an ``AudioLoadError`` whose ``kind`` is ``"not audio"`` (no decoder
  recognises the content), ``"no audio stream"`` (a video without sound) or ``"unsupported codec"``, with
  the message starting with that kind, so ``errors.csv`` rows can be counted by it (:func:`is_not_audio`).
* In-memory audio (a numpy array or a torch tensor) is **channels first**: ``(samples,)`` or
  ``(channels, samples)``, the torch/torchaudio layout. (``soundfile.read`` returns ``(samples, channels)``;
  transpose it first.) Integer arrays are scaled to [-1, 1] by their type's range.
* Channels are downmixed to mono by averaging them. (msclap instead flattens a stereo file channel after
  channel into one twice-as-long signal; we do not reproduce that bug.)
* Resampling uses soxr with quality ``"HQ"`` (:data:`RESAMPLE_QUALITY`): soxr's default, a linear-phase
  filter with about 20-bit precision (-120 dB stop band), far below what a float32 log-mel front end
  resolves, and roughly twice as fast as ``"VHQ"``. The streaming path (:func:`iter_audio_blocks`) uses the
  same filter, so its output matches :func:`load_audio`.
* Decode budget: before a file is decoded, :func:`load_audio` checks what its header announces against a
  :class:`DecodeBudget` (default :data:`DEFAULT_DECODE_BUDGET`: at most 2**29 frames x channels, about
  1.5 h of 48 kHz stereo or 2 GB of float32, and a sample rate of 1-384 kHz), then decodes in blocks
  of about 1 M samples, downmixing each, so a small file whose header promises hours of 8-channel audio
  at 655 kHz is refused in microseconds, and one whose header lies cannot make it hold more than the
  budget. Raise the budget (``DecodeBudget(max_samples=None)``) for longer files, or stream them with
  :func:`iter_audio_blocks`, whose memory does not grow with length.
* Silent (all-zero) audio is an error unless ``allow_silent=True``: it almost always means a broken
  recording or export, and its log-mel is a constant ``10 * log10(amin)`` image. Non-finite samples
  (NaN/inf) are always an error.

Limits of detection: libsndfile reports a truncated FLAC as "lost sync" (wrapped here as a corrupt-file
error), but it silently shortens a truncated WAV to the data that is present, so a cut WAV loads as a
shorter clip. Any file whose decoded frame count falls short of its header's count is reported as
truncated.
"""

from __future__ import annotations

import io
import logging
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import soundfile as sf
import soxr

from openclap.errors import AudioLoadError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_DECODE_BUDGET",
    "RESAMPLE_QUALITY",
    "AudioFileNotFoundError",
    "AudioInfo",
    "AudioLoadError",
    "AudioSource",
    "AudioTooLargeError",
    "DecodeBudget",
    "audio_info",
    "budget_frames",
    "check_decode_budget",
    "is_not_audio",
    "iter_audio_blocks",
    "load_audio",
    "supported_formats",
]

RESAMPLE_QUALITY = "HQ"
"""soxr quality preset used for every resampling in openclap (see the module docstring)."""

_ARRAY_NAME = "<array input>"

# An encoded audio source: a path, the file's bytes, or a binary file-like object.
AudioSource = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]

NOT_AUDIO_KINDS = ("not audio", "no audio stream")
"""``AudioLoadError.kind`` values of inputs that are not audio at all (counted apart from failures)."""


def is_not_audio(reason: str) -> bool:
    """Whether a failure message (an ``errors.csv`` reason) says the input is not audio at all."""
    return reason.startswith(tuple(f"{kind}:" for kind in NOT_AUDIO_KINDS))


class AudioFileNotFoundError(AudioLoadError, FileNotFoundError):
    """The audio file does not exist (also catchable as ``FileNotFoundError``)."""


class AudioTooLargeError(AudioLoadError):
    """The file's header announces more audio than the :class:`DecodeBudget` allows."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says about it."""

    sample_rate: int
    channels: int
    frames: int
    duration: float  # seconds: frames / sample_rate
    format: str  # libsndfile major format, e.g. "FLAC", "WAV", "MP3"
    subtype: str  # sample encoding, e.g. "PCM_16", "FLOAT", "VORBIS"


@dataclass(frozen=True)
class DecodeBudget:
    """What a file's header may announce before any of it is decoded.

    ``max_samples`` bounds frames x channels (None: no bound), ``max_seconds`` the duration (None: no
    bound); the sample rate must lie in ``[min_rate, max_rate]`` Hz.
    """

    max_samples: int | None = 1 << 29
    max_seconds: float | None = None
    min_rate: int = 1_000
    max_rate: int = 384_000

    def __post_init__(self) -> None:
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"max_samples must be >= 1 or None, got {self.max_samples}")
        if self.max_seconds is not None and not (math.isfinite(self.max_seconds) and self.max_seconds > 0):
            raise ValueError(f"max_seconds must be a positive finite number or None, got {self.max_seconds}")
        if not 0 < self.min_rate <= self.max_rate:
            raise ValueError(f"need 0 < min_rate <= max_rate, got {self.min_rate}, {self.max_rate}")


DEFAULT_DECODE_BUDGET = DecodeBudget()
"""The budget :func:`load_audio` applies unless told otherwise: 2**29 frames x channels, 1-384 kHz."""

_STREAM_BUDGET = DecodeBudget(max_samples=None)  # streaming memory does not grow with length


_UNKNOWN_FRAMES = 1 << 62  # libsndfile reports 2**63 - 1 frames when a header leaves the length open


def check_decode_budget(
    info: AudioInfo, budget: DecodeBudget, name: str, path: str | os.PathLike[str] | None = None
) -> None:
    """Raise if ``info`` (a header) is outside ``budget``: ``AudioLoadError`` for the rate,
    ``AudioTooLargeError`` for the size; ``name`` is the file as the message should call it.

    A header that leaves the length open (e.g. a streamed FLAC) passes the size checks here; the
    decoder then stops at the budget (see :func:`budget_frames`).
    """
    if not budget.min_rate <= info.sample_rate <= budget.max_rate:
        raise AudioLoadError(
            f"{name} declares a sample rate of {info.sample_rate} Hz, outside the accepted "
            f"{budget.min_rate}-{budget.max_rate} Hz; resample it (e.g. `ffmpeg -i IN -ar 48000 OUT.flac`)",
            path,
        )
    if info.frames >= _UNKNOWN_FRAMES:
        return
    samples = info.frames * info.channels
    if budget.max_samples is not None and samples > budget.max_samples:
        raise AudioTooLargeError(
            f"{name} declares {info.frames} frames x {info.channels} channels = {samples} samples, over "
            f"the decode budget of {budget.max_samples}; split the file, or stream it block by block",
            path,
        )
    if budget.max_seconds is not None and info.duration > budget.max_seconds:
        raise AudioTooLargeError(
            f"{name} lasts {info.duration:.1f} s, over the {budget.max_seconds:g} s limit", path
        )


def budget_frames(budget: DecodeBudget, sample_rate: int, channels: int) -> int | None:
    """Most frames ``budget`` lets a decoder produce at this rate and channel count (None: no bound)."""
    caps = []
    if budget.max_samples is not None:
        caps.append(budget.max_samples // max(channels, 1))
    if budget.max_seconds is not None:
        caps.append(math.floor(budget.max_seconds * sample_rate))
    return min(caps) if caps else None


def supported_formats() -> list[str]:
    """Container formats the installed libsndfile can decode, e.g. ``['AIFF', 'FLAC', 'MP3', ...]``."""
    return sorted(sf.available_formats())


def _check_path(path: str | os.PathLike[str]) -> Path:
    """Existence, type and size checks that give clearer messages than libsndfile's."""
    p = Path(path)
    if not p.exists():
        raise AudioFileNotFoundError(
            f"audio file not found: '{p}' (resolved to '{p.resolve()}'); check the path, or for a "
            "manifest, that relative paths are relative to the manifest's folder",
            path,
        )
    if p.is_dir():
        raise AudioLoadError(f"'{p}' is a directory, not an audio file; pass the files inside it", path)
    if p.stat().st_size == 0:
        raise AudioLoadError(f"audio file '{p}' is empty (0 bytes); re-export or re-download it", path)
    return p


@dataclass(frozen=True)
class _Source:
    """An encoded source ready for the decoders: what they open, how messages name it, ``.path``."""

    handle: Path | IO[bytes]
    name: str  # e.g. "audio file '/x/a.m4a'" or "<bytes input>"
    path: str | None  # AudioLoadError.path: the file, or None for in-memory input


def _is_encoded(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(source, "read")


def _source(source: AudioSource) -> _Source:
    """Check a path (exists, a file, not empty) or wrap bytes / a file-like object."""
    if isinstance(source, (str, os.PathLike)):
        p = _check_path(source)
        return _Source(p, f"audio file '{p}'", str(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioLoadError("<bytes input> is empty (0 bytes); send the audio file's contents")
        return _Source(io.BytesIO(bytes(source)), "<bytes input>", None)
    if hasattr(source, "read"):
        label = getattr(source, "name", None)
        name = f"file object '{label}'" if isinstance(label, str) else "<file object>"
        seekable = getattr(source, "seekable", None)
        if not (callable(seekable) and seekable()):  # both decoders seek (MP4 keeps its index at the end)
            source = io.BytesIO(source.read())
        return _Source(source, name, None)
    raise TypeError(
        "source must be a path (str or os.PathLike), bytes or a binary file-like object, "
        f"got {type(source).__name__}"
    )


def _open(src: _Source, stream: int | None = None) -> Any:
    """libsndfile first (faster where it reads the format), then FFmpeg: a ``SoundFile`` or ``FFmpegFile``.

    ``stream`` > 0 (an audio stream after the first) goes to FFmpeg directly: libsndfile's formats hold
    one stream.
    """
    from openclap.audio.ffmpeg import FFmpegFile, FFmpegUnavailableError

    if stream is not None and (isinstance(stream, bool) or not isinstance(stream, int) or stream < 0):
        raise ValueError(f"stream must be an audio stream's position (0, 1, ...), got {stream!r}")
    tried = ""
    if not stream:
        start = None if isinstance(src.handle, Path) else src.handle.tell()
        try:
            f = sf.SoundFile(str(src.handle) if start is None else src.handle)
            if f.seekable():
                # libsndfile 1.2 places an Ogg Opus stream that starts at a later granule position (a
                # cut live stream) right only after a seek: without one its samples are misaligned.
                f.seek(0)
            return f
        except sf.LibsndfileError as exc:
            tried = f"libsndfile: {exc.error_string}"
        except (RuntimeError, TypeError) as exc:  # older soundfile versions raise RuntimeError
            tried = f"libsndfile: {exc}"
        if start is not None:
            src.handle.seek(start)
    try:
        return FFmpegFile(src.handle, src.name, stream or 0, tried=tried)
    except FFmpegUnavailableError as exc:
        raise AudioLoadError(f"cannot decode {src.name}: {tried}; {exc}", src.path) from exc


def _read_error(name: str, path: str | None, exc: Exception) -> AudioLoadError:
    return AudioLoadError(
        f"{name} is corrupt or truncated: decoding failed part-way ({exc}); "
        "re-export or re-download the file",
        path,
    )


def _truncated(f: Any, decoded: int) -> bool:
    """Whether ``decoded`` frames fall short of the header (exactly for libsndfile; see ffmpeg.py)."""
    return f.short_read(decoded) if hasattr(f, "short_read") else decoded < int(f.frames)


def audio_info(source: AudioSource, *, stream: int | None = None) -> AudioInfo:
    """Read a file's header (FFmpeg: and its first audio frame) and return its :class:`AudioInfo`.

    Raises :class:`AudioFileNotFoundError` or :class:`AudioLoadError` like :func:`load_audio`.
    """
    with _open(_source(source), stream) as f:
        return _header(f)


def _header(f: Any) -> AudioInfo:
    """What an open ``SoundFile`` or ``FFmpegFile`` says about its audio (FFmpeg: ``frames`` estimated)."""
    rate, frames = int(f.samplerate), int(f.frames)
    return AudioInfo(
        sample_rate=rate,
        channels=int(f.channels),
        frames=frames,
        duration=frames / rate if rate > 0 else math.inf,
        format=str(f.format),
        subtype=str(f.subtype),
    )


def _is_tensor(source: Any) -> bool:
    """A torch tensor, tested without importing torch (a tensor exists only if torch is imported): the
    ONNX runtime (openclap.onnx) decodes audio in processes without PyTorch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(source, torch.Tensor)


def _to_float_array(source: Any) -> np.ndarray:
    """numpy/torch input -> float32 array, integers scaled to [-1, 1]; shape unchanged."""
    if _is_tensor(source):
        torch = sys.modules["torch"]
        source = source.detach().cpu()
        if source.dtype == torch.bfloat16 or source.dtype == torch.float16:
            source = source.float()
        source = source.numpy()
    arr = np.asarray(source)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise AudioLoadError(
            f"{_ARRAY_NAME}: expected float or integer samples, got dtype {arr.dtype}; "
            "pass a float array in [-1, 1] or integer PCM"
        )
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        # unsigned PCM (e.g. 8-bit WAV) is centred on 2**(bits-1)
        half = float(2 ** (8 * arr.dtype.itemsize - 1))
        return ((arr.astype(np.float64) - half) / half).astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        scale = float(2 ** (8 * arr.dtype.itemsize - 1))
        return (arr.astype(np.float64) / scale).astype(np.float32)
    return arr.astype(np.float32, copy=False)


def _downmix_channels_first(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 1:
        return arr
    if arr.ndim == 2:
        channels, samples = arr.shape
        if channels > samples:
            raise AudioLoadError(
                f"{_ARRAY_NAME}: got shape {arr.shape}, read as (channels={channels}, samples={samples}); "
                "more channels than samples means the layout is probably (samples, channels): "
                "pass array.T (channels first)"
            )
        return arr.mean(axis=0, dtype=np.float64).astype(np.float32) if channels > 1 else arr[0]
    raise AudioLoadError(
        f"{_ARRAY_NAME}: expected shape (samples,) or (channels, samples), got {arr.shape}; "
        "for a batch, load each clip separately"
    )


def _validate_mono(mono: np.ndarray, name: str, path: Any, allow_silent: bool) -> None:
    if mono.size == 0:
        raise AudioLoadError(
            f"{name} contains no audio (0 frames); re-export it or remove it from the list", path
        )
    finite = np.isfinite(mono)
    if not finite.all():
        bad = int(mono.size - np.count_nonzero(finite))
        what = "all samples are" if bad == mono.size else f"{bad} of {mono.size} samples are"
        raise AudioLoadError(
            f"{name}: {what} NaN or infinite; the file or array is corrupt - re-export it "
            "(or replace the non-finite samples, e.g. with numpy.nan_to_num, if you know they are glitches)",
            path,
        )
    if not allow_silent and not np.any(mono):
        raise AudioLoadError(
            f"{name} is silent (every sample is 0); check the recording or export, "
            "or pass allow_silent=True to accept it",
            path,
        )


def _resample(mono: np.ndarray, source_rate: int, sample_rate: int) -> np.ndarray:
    if source_rate == sample_rate:
        return mono
    return soxr.resample(mono, source_rate, sample_rate, quality=RESAMPLE_QUALITY)


def _check_rate(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{what} must be a positive integer (Hz), got {value!r}")
    return int(value)


_BLOCK_SAMPLES = 1 << 20  # samples (frames x channels) per read: ~4 MB of float32


def _decode_file(src: _Source, budget: DecodeBudget, stream: int | None = None) -> tuple[np.ndarray, int]:
    """Whole file -> (mono float32, rate), within ``budget``, checking for truncation.

    Decodes block by block into one mono array, so peak memory is the mono signal plus one block
    whatever the channel count; a header that understates the length cannot push it past the budget.
    """
    name, path = src.name, src.path
    with _open(src, stream) as f:
        info = _header(f)
        check_decode_budget(info, budget, name, path)
        rate, expected, channels = info.sample_rate, info.frames, info.channels
        known = expected < _UNKNOWN_FRAMES
        if not known:
            expected = 0  # length left open: every block goes to `extra`, bounded by the budget
        cap = budget_frames(budget, rate, channels)
        buf = np.empty((max(1, _BLOCK_SAMPLES // channels), channels), dtype=np.float32)
        mono = np.empty(expected, dtype=np.float32)
        extra: list[np.ndarray] = []  # frames beyond the header's count (a header that lies)
        decoded = 0
        while True:
            try:
                data = f.read(out=buf)  # (frames, channels), a view of buf
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise _read_error(name, path, exc) from exc
            n = len(data)
            if n == 0:
                break
            if cap is not None and decoded + n > cap:
                raise AudioTooLargeError(
                    f"{name} decodes to more than {cap} frames x {channels} channels, over the decode "
                    f"budget ({budget.max_samples} samples, {budget.max_seconds} s) although its header "
                    f"announced {info.frames if known else 'an open length'}; split or re-encode the file",
                    path,
                )
            block = data[:, 0] if channels == 1 else data.mean(axis=1, dtype=np.float64).astype(np.float32)
            room = max(0, min(n, expected - decoded))
            mono[decoded : decoded + room] = block[:room]
            if room < n:
                extra.append(block[room:].copy())
            decoded += n
            if n < len(buf):
                break
        if known and 0 < decoded and _truncated(f, decoded):
            raise AudioLoadError(
                f"{name} is truncated: its header announces {expected} frames but only {decoded} "
                "could be decoded; re-export or re-download the file",
                path,
            )
    if extra:
        mono = np.concatenate([mono, *extra])
    return mono[:decoded], rate


def load_audio(
    source: AudioSource | np.ndarray | torch.Tensor,
    sample_rate: int,
    *,
    source_rate: int | None = None,
    allow_silent: bool = False,
    stream: int | None = None,
    budget: DecodeBudget = DEFAULT_DECODE_BUDGET,
) -> np.ndarray:
    """Load audio as a mono float32 waveform at ``sample_rate``.

    Args:
        source: an encoded file as a path, ``bytes`` or a binary file-like object (any format libsndfile
            or FFmpeg decodes, including a video's audio track), or samples as a numpy array or torch
            tensor shaped ``(samples,)`` or ``(channels, samples)`` (channels first); integer samples are
            scaled to [-1, 1].
        sample_rate: output rate in Hz.
        source_rate: rate of in-memory ``source`` in Hz; required for arrays, and a ``ValueError`` for
            files (their header gives the rate).
        allow_silent: accept all-zero audio instead of raising.
        stream: which audio stream of a file with several (0: the first, the default).
        budget: what a file's header may announce (frames x channels, duration, sample rate); checked
            before decoding, and the decode stops at it. Default :data:`DEFAULT_DECODE_BUDGET`.

    Returns:
        ``(samples,)`` float32, C-contiguous, channels averaged, resampled with soxr ``"HQ"``.

    Raises:
        AudioFileNotFoundError: the file does not exist.
        AudioLoadError: the file is empty, corrupt, truncated or in an unsupported format; the audio
            has no frames, contains NaN/inf, or is silent (unless ``allow_silent``); its sample rate is
            outside the budget's range. The message names the file.
        AudioTooLargeError: the header announces more than ``budget`` allows (a subclass of
            ``AudioLoadError``).
        ValueError: bad ``sample_rate``/``source_rate`` arguments.
    """
    sample_rate = _check_rate(sample_rate, "sample_rate")
    if isinstance(source, np.ndarray) or _is_tensor(source):
        if source_rate is None:
            raise ValueError(
                "source_rate is required for array/tensor input: pass the rate the samples were "
                "recorded at, e.g. load_audio(x, 44100, source_rate=16000)"
            )
        rate = _check_rate(source_rate, "source_rate")
        mono = _downmix_channels_first(_to_float_array(source))
        name, where = _ARRAY_NAME, None
    else:
        if source_rate is not None and _is_encoded(source):
            raise ValueError(
                f"source_rate={source_rate} was given for the file '{source}'; a file's rate comes from "
                "its header, so pass source_rate only with array input"
            )
        src = _source(source)  # TypeError for anything else
        mono, rate = _decode_file(src, budget, stream)
        name, where = src.name, src.path
    _validate_mono(mono, name, where, allow_silent)
    out = _resample(mono, rate, sample_rate)
    return np.ascontiguousarray(out, dtype=np.float32)


def iter_audio_blocks(
    path: AudioSource,
    sample_rate: int,
    block_seconds: float,
    *,
    allow_silent: bool = False,
    stream: int | None = None,
    budget: DecodeBudget = _STREAM_BUDGET,
) -> Iterator[np.ndarray]:
    """Decode a long file block by block: mono float32 blocks at ``sample_rate``.

    Only about one block (plus the resampler's filter state) is held in memory, so an hour-long file can
    be embedded or indexed in constant memory. Every yielded block has exactly
    ``round(block_seconds * sample_rate)`` samples except the last, which holds the rest; concatenated,
    the blocks equal :func:`load_audio` (same soxr filter, streamed) to within float32 rounding.

    Validation happens as the file is read: a corrupt block raises when it is reached, and silence
    (every sample 0) or a short read can only be known, and is raised, after the last block.

    ``budget`` is checked against the header as in :func:`load_audio`; by default only the sample rate
    is bounded (1-384 kHz), since memory here does not grow with the file's length.

    Raises:
        AudioFileNotFoundError, AudioLoadError: as :func:`load_audio`.
        ValueError: ``block_seconds`` is not positive or gives an empty block.
    """
    sample_rate = _check_rate(sample_rate, "sample_rate")
    if not (isinstance(block_seconds, (int, float)) and math.isfinite(block_seconds) and block_seconds > 0):
        raise ValueError(f"block_seconds must be a positive number, got {block_seconds!r}")
    out_block = round(block_seconds * sample_rate)
    if out_block < 1:
        raise ValueError(f"block_seconds={block_seconds} gives no samples at {sample_rate} Hz")
    src = _source(path)
    name, p = src.name, src.path
    with _open(src, stream) as f:
        check_decode_budget(_header(f), budget, name, p)
        rate, expected = int(f.samplerate), int(f.frames)
        exact = isinstance(f, sf.SoundFile)  # FFmpeg's frame count is the container's, not exact
        if exact and expected == 0:
            raise AudioLoadError(f"{name} contains no audio (0 frames); re-export it", p)
        in_block = max(1, round(block_seconds * rate))
        resampler = (
            None
            if rate == sample_rate
            else soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        )
        pending: list[np.ndarray] = []
        n_pending = 0
        decoded = 0
        peak = 0.0
        while True:
            try:
                data = f.read(in_block, dtype="float32", always_2d=True)  # (frames, channels)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise _read_error(name, p, exc) from exc
            last = len(data) < in_block or (exact and decoded + len(data) >= expected)
            if len(data):
                mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float64)
                mono = np.ascontiguousarray(mono, dtype=np.float32)
                if not np.isfinite(mono).all():
                    _validate_mono(mono, name, p, allow_silent=True)  # raises with the count
                peak = max(peak, float(np.abs(mono).max()))
                decoded += len(mono)
            else:
                mono = np.zeros(0, dtype=np.float32)
            out = mono if resampler is None else resampler.resample_chunk(mono, last=last)
            if len(out):
                pending.append(out)
                n_pending += len(out)
            while n_pending >= out_block:
                buf = np.concatenate(pending)
                yield np.ascontiguousarray(buf[:out_block])
                rest = buf[out_block:]
                pending, n_pending = ([rest] if len(rest) else []), len(rest)
            if last:
                break
        if _truncated(f, decoded):
            raise AudioLoadError(
                f"{name} is truncated: its header announces {expected} frames but only {decoded} "
                "could be decoded; re-export or re-download the file",
                p,
            )
    if not allow_silent and peak == 0.0:
        raise AudioLoadError(
            f"{name} is silent (every sample is 0); check the recording or export, "
            "or pass allow_silent=True to accept it",
            p,
        )
    if n_pending:
        yield np.ascontiguousarray(np.concatenate(pending))

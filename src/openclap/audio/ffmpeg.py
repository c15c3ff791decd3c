"""The second decoder: PyAV (FFmpeg's libraries inside the ``av`` wheel) for what libsndfile cannot read.

:class:`FFmpegFile` offers the part of ``soundfile.SoundFile`` that ``openclap.audio.io`` uses
(``samplerate``, ``channels``, ``frames``, ``format``, ``subtype``, ``read``, ``close``, a context
manager), so the whole-file and the block-by-block paths, the decode budget and the downmix are one code
for both decoders. It reads AAC/M4A/MP4/MOV, WebM/MKV (Opus, Vorbis, AAC, FLAC), WMA, AMR, AC-3 and
anything else FFmpeg decodes, including the audio track of a video file.

What it adds of its own: nothing. Samples are FFmpeg's decode, sample for sample: no resampling here,
integer formats scaled by their full range (``s16`` / 2**15, ``s32`` / 2**31, as libsndfile does, so a
lossless file decodes identically through either decoder), planar or packed channels as
``(frames, channels)``. Codec delay that the container does not describe (AC-3, AMR, WMA) is kept,
and so is the padding of an AAC stream's last frame, as FFmpeg itself keeps them.

The header's length: containers with an index (MP4/MOV, Matroska/WebM, ASF/WMA, Ogg) state a duration,
which ``frames`` reports (rounded to the decoded rate) and against which a short read is reported as
truncated (a shortfall over 5 % and 0.25 s: codecs' priming and padding move the exact count by a few
ms). Raw streams (ADTS AAC, MP3 without a header, AMR, AC-3) only have FFmpeg's estimate from the
bitrate, which can be far off; for them ``frames`` is that estimate (``frames_exact`` False) and a cut
file decodes as a shorter clip.
"""

from __future__ import annotations

import mimetypes
import os
from collections import deque
from typing import IO, Any

import numpy as np

__all__ = ["FFmpegFile", "FFmpegUnavailableError", "encode_file", "ffmpeg_available", "named_as_media"]

# Integer sample formats -> scale to [-1, 1] (libsndfile's normalisation: 1 / 2**(bits - 1)).
_INT_SCALE = {"s16": 2.0**-15, "s32": 2.0**-31, "s64": 2.0**-63}

# Containers whose header (index) states the stream's length; others give FFmpeg's bitrate estimate.
_INDEXED_FORMATS = ("mov", "mp4", "matroska", "webm", "asf", "ogg", "wav", "flac", "aiff", "caf", "w64")

# Demuxers that read other files named inside the input (playlists): never followed.
_REFERENCE_FORMATS = ("hls", "concat", "dash", "ffconcat")

TRUNCATION_FRACTION = 0.05  # a short read beyond both of these is "truncated"
TRUNCATION_SECONDS = 0.25


_MEDIA_SUFFIXES = (".mka", ".caf", ".w64", ".weba", ".m4b", ".m4v", ".ts", ".mts")  # beyond mimetypes


def named_as_media(name: Any) -> bool:
    """Whether a file name's extension says audio or video (``mimetypes``, plus a few it lacks).

    Only used to word a failure: a ``.m4a`` that no decoder recognises is a broken recording, counted
    as failed; a ``.txt`` (or a file with no name) is "not audio".
    """
    if not isinstance(name, (str, os.PathLike)):
        return False
    mime = mimetypes.guess_type(os.fspath(name))[0] or ""
    return mime.startswith(("audio/", "video/")) or os.fspath(name).lower().endswith(_MEDIA_SUFFIXES)


class FFmpegUnavailableError(ImportError):
    """PyAV is not installed."""


def ffmpeg_available() -> bool:
    """True when PyAV (``av``) can be imported."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _import_av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise FFmpegUnavailableError(
            "PyAV is not installed: `pip install av` (FFmpeg's decoders in a wheel; openclap installs it "
            "by default) to read AAC/M4A, MP4, WebM/MKV, WMA and the other formats libsndfile cannot"
        ) from exc
    return av


class FFmpegFile:
    """A file, bytes buffer or file-like object decoded by FFmpeg; a ``soundfile.SoundFile`` look-alike.

    ``stream`` picks the audio stream by its position among the file's audio streams (0: the first).
    Opening decodes the first audio frame, so the rate and channel count are the decoder's (HE-AAC
    decodes at twice its core rate) and a file whose audio cannot be decoded fails here, not later.

    Raises ``openclap.audio.io.AudioLoadError`` (``kind`` says "not audio", "no audio stream",
    "unsupported codec" or None) naming ``name``; ``FFmpegUnavailableError`` without PyAV.
    """

    def __init__(
        self, source: str | os.PathLike[str] | IO[bytes], name: str, stream: int = 0, tried: str = ""
    ) -> None:
        from openclap.errors import AudioLoadError

        av = _import_av()
        self.name = name
        self._path = str(source) if isinstance(source, (str, os.PathLike)) else None
        where = self._path
        try:
            # Only local files: FFmpeg never opens a network address on openclap's behalf.
            options = {"protocol_whitelist": "file"} if self._path is not None else {}
            self._container = av.open(
                self._path if self._path is not None else source,
                mode="r",
                options=options,
                metadata_errors="ignore",
            )
        except (av.error.InvalidDataError, av.error.EOFError) as exc:  # EOF: ran out while probing
            which = "libsndfile or FFmpeg" if tried else "FFmpeg"
            why = f"{tried + '; ' if tried else ''}FFmpeg: {_reason(exc)}"
            if named_as_media(self._path or getattr(source, "name", None)):
                raise AudioLoadError(
                    f"cannot decode {name}: its name says audio or video but its content is in no format "
                    f"{which} recognises ({why}); it is corrupt or misnamed: re-export or re-download it",
                    where,
                ) from exc
            raise AudioLoadError(
                f"not audio: {name} is in no format {which} recognises ({why})", where, kind="not audio"
            ) from exc
        except av.error.FFmpegError as exc:
            raise AudioLoadError(f"cannot decode {name}: FFmpeg: {_reason(exc)}", where) from exc
        try:
            self._setup(av, stream, AudioLoadError)
        except BaseException:
            self._container.close()
            raise

    def _setup(self, av: Any, stream: int, error: type) -> None:
        c, name, where = self._container, self.name, self._path
        fmt = c.format.name
        if any(f in _REFERENCE_FORMATS for f in fmt.split(",")):
            raise error(
                f"not audio: {name} is a playlist ({fmt}) naming other files; embed those files instead",
                where,
                kind="not audio",
            )
        audio = list(c.streams.audio)
        if not audio:
            video = [s for s in c.streams.video if not (fmt == "image2" or fmt.endswith("_pipe"))]
            if video:
                raise error(
                    f"no audio stream: {name} is a {_format_name(c)} file with "
                    f"{len(c.streams)} stream(s) ({_stream_list(c)}) but no audio",
                    where,
                    kind="no audio stream",
                )
            raise error(
                f"not audio: {name} is a {_format_name(c)} file without audio ({_stream_list(c)})",
                where,
                kind="not audio",
            )
        if not 0 <= stream < len(audio):
            raise error(
                f"{name} has {len(audio)} audio stream(s) ({_stream_list(c)}); stream={stream} is out of "
                f"range: pass 0..{len(audio) - 1}",
                where,
            )
        self._stream = audio[stream]
        ctx = self._stream.codec_context
        codec = getattr(getattr(ctx, "codec", None), "name", None) if ctx is not None else None
        if codec is None:
            raise error(
                f"unsupported codec: {name} holds audio in a codec FFmpeg cannot decode "
                f"({_stream_list(c)}); re-encode it, e.g. `ffmpeg -i INPUT OUTPUT.flac`",
                where,
                kind="unsupported codec",
            )
        self._av = av
        self._frames_iter = c.decode(self._stream)
        self._queue: deque[np.ndarray] = deque()  # decoded (n, channels) float32 not yet read
        self._queued = 0
        self._eof = False
        self._layout: tuple[int, int] | None = None  # (rate, channels) of the first frame
        first = self._next_frame()
        if first is None:
            raise error(f"{name} contains no audio (0 frames); re-export it", where)
        self.samplerate, self.channels = first
        self.format = _format_name(c)
        self.subtype = codec
        seconds = None
        if self._stream.duration is not None and self._stream.time_base is not None:
            seconds = float(self._stream.duration * self._stream.time_base)
        elif c.duration is not None:
            seconds = c.duration / 1_000_000  # AV_TIME_BASE
        self.frames = max(0, round(seconds * self.samplerate)) if seconds else 0
        self.frames_exact = False  # never sample-exact: see the module docstring
        self.frames_indexed = bool(seconds) and any(f in _INDEXED_FORMATS for f in fmt.split(","))

    def _next_frame(self) -> tuple[int, int] | None:
        """Decode one more frame into the queue; its (rate, channels), or None at the end."""
        from openclap.errors import AudioLoadError

        av = self._av
        try:
            frame = next(self._frames_iter)
        except StopIteration:
            self._eof = True
            return None
        except av.error.FFmpegError as exc:
            raise AudioLoadError(
                f"{self.name} is corrupt or truncated: decoding failed part-way (FFmpeg: {_reason(exc)}); "
                "re-export or re-download the file",
                self._path,
            ) from exc
        data = _frame_samples(frame)
        layout = (int(frame.sample_rate), data.shape[1])
        if self._layout is None:
            self._layout = layout
        elif layout != self._layout:
            raise AudioLoadError(
                f"{self.name} changes from {self._layout[0]} Hz x {self._layout[1]} channel(s) to "
                f"{layout[0]} Hz x {layout[1]} part-way; split or re-encode it "
                "(e.g. `ffmpeg -i INPUT -ac 1 OUTPUT.flac`)",
                self._path,
            )
        if len(data):
            self._queue.append(data)
            self._queued += len(data)
        return layout

    def read(
        self, frames: int = -1, dtype: str = "float32", always_2d: bool = True, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Up to ``frames`` frames (all that is left for -1) as ``(frames, channels)`` float32.

        With ``out`` (a ``(n, channels)`` float32 array) reads ``len(out)`` frames into it and returns the
        filled part. Fewer frames than asked means the end of the stream.
        """
        if dtype != "float32" or not always_2d:
            raise ValueError("FFmpegFile.read returns float32 (frames, channels) only")
        want = len(out) if out is not None else frames
        while not self._eof and (want < 0 or self._queued < want):
            self._next_frame()
        take = self._queued if want < 0 else min(want, self._queued)
        dest = out if out is not None else np.empty((take, self.channels), np.float32)
        filled = 0
        while filled < take:
            head = self._queue[0]
            n = min(len(head), take - filled)
            dest[filled : filled + n] = head[:n]
            filled += n
            if n == len(head):
                self._queue.popleft()
            else:
                self._queue[0] = head[n:]
        self._queued -= take
        return dest[:take]

    def short_read(self, decoded: int) -> bool:
        """Whether ``decoded`` frames fall short of what an indexed container's header states."""
        if not self.frames_indexed:
            return False
        slack = max(TRUNCATION_FRACTION * self.frames, TRUNCATION_SECONDS * self.samplerate)
        return decoded < self.frames - slack

    def close(self) -> None:
        """Close the container."""
        self._container.close()

    def __enter__(self) -> FFmpegFile:  # noqa: PYI034 (Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _frame_samples(frame: Any) -> np.ndarray:
    """An ``av.AudioFrame`` -> ``(samples, channels)`` float32 in [-1, 1]."""
    arr = frame.to_ndarray()  # planar: (channels, samples); packed: (1, samples * channels)
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        arr = arr.reshape(-1, channels).T
    kind = frame.format.name.rstrip("p")
    if kind in ("flt",):
        out = arr
    elif kind == "dbl":
        out = arr.astype(np.float32)
    elif kind in _INT_SCALE:
        out = arr.astype(np.float32) * np.float32(_INT_SCALE[kind])
    elif kind == "u8":
        out = (arr.astype(np.float32) - np.float32(128.0)) * np.float32(2.0**-7)
    else:  # pragma: no cover - FFmpeg's sample formats are the ones above
        raise ValueError(f"unknown FFmpeg sample format {frame.format.name!r}")
    return np.ascontiguousarray(out.T, dtype=np.float32)


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip()


def _format_name(container: Any) -> str:
    return str(container.format.long_name or container.format.name)


def _stream_list(container: Any) -> str:
    parts = []
    for s in container.streams:
        ctx = s.codec_context
        codec = getattr(getattr(ctx, "codec", None), "name", None) if ctx is not None else None
        parts.append(f"{s.type} {codec or 'unknown codec'}")
    return ", ".join(parts) or "no streams"


def encode_file(
    path: str | os.PathLike[str],
    wave: np.ndarray | list[np.ndarray] | None,
    sample_rate: int,
    codec: str,
    container: str | None = None,
    *,
    codec_rate: int | None = None,
    bit_rate: int | None = None,
    video: str | None = None,
    video_seconds: float = 2.0,
    start_seconds: float = 0.0,
) -> None:
    """Write ``wave`` (``(channels, samples)`` int16 or float32) with FFmpeg's encoder ``codec``.

    For test fixtures and benchmarks: ``container`` is FFmpeg's muxer name (default: from the
    extension), ``codec_rate`` the rate to encode at (resampled by FFmpeg; default ``sample_rate``),
    ``video`` a video codec (e.g. ``"mpeg4"``, ``"libvpx"``) for a small 32x32 picture track. A list of
    waves gives one audio stream each; ``wave=None`` with ``video`` writes a video without audio.
    ``start_seconds`` > 0 starts the audio's timestamps there (a stream cut from a live recording).
    """
    from fractions import Fraction

    av = _import_av()
    waves = [] if wave is None else wave if isinstance(wave, list) else [wave]
    out = av.open(os.fspath(path), mode="w", format=container)
    try:
        streams = []
        for w in waves:
            w = np.ascontiguousarray(np.atleast_2d(w))
            layout = {1: "mono", 2: "stereo"}[w.shape[0]]
            s = out.add_stream(codec, rate=codec_rate or sample_rate, layout=layout)
            if bit_rate:
                s.bit_rate = bit_rate
            s.format = s.codec_context.codec.audio_formats[0].name
            streams.append((s, w, layout))
        vstream = None
        if video:
            vstream = out.add_stream(video, rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 32, 32, "yuv420p"
        for s, w, layout in streams:
            fmt, dtype = ("s16p", np.int16) if w.dtype == np.int16 else ("fltp", np.float32)
            frame = av.AudioFrame.from_ndarray(w.astype(dtype), format=fmt, layout=layout)
            frame.sample_rate, frame.time_base = sample_rate, Fraction(1, sample_rate)
            frame.pts = round(start_seconds * sample_rate)
            resampler = av.AudioResampler(
                format=s.format.name,
                layout=layout,
                rate=s.codec_context.sample_rate,
                frame_size=s.codec_context.frame_size or None,
            )
            for chunk in resampler.resample(frame) + resampler.resample(None):
                out.mux(s.encode(chunk))
            out.mux(s.encode(None))
        if vstream is not None:
            for i in range(max(1, round(video_seconds * 10))):
                picture = np.full((32, 32, 3), (i * 7) % 256, np.uint8)
                out.mux(vstream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
            out.mux(vstream.encode(None))
    finally:
        out.close()

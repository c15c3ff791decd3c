"""Every file a user has: AAC/M4A, MP4, WebM, MKV, WMA, video tracks, bytes; and what is not audio.

The files are made in the test from the bundled demo FLAC clips by FFmpeg's own encoders (PyAV),
as a stereo pair whose channels differ (dog left, rain right), so a wrong channel mix shows. The
reference for a lossy file is FFmpeg's own decode, done here with a plain PyAV loop independent of
``openclap.audio.ffmpeg``: openclap's decoder must add nothing (no offset, no lost or extra samples at
the ends, the right rate and channel mix).
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

import openclap
from openclap.audio.ffmpeg import FFmpegFile, encode_file
from openclap.audio.io import AudioLoadError, audio_info, is_not_audio, iter_audio_blocks, load_audio
from openclap.bulk import EmbedOptions, embed_to_arrays, run_embed_job
from openclap.cli import main as cli_main

DEMO = Path(openclap.__file__).parent / "assets" / "demo"
RATE = 16000  # the demo clips' rate

# name -> (codec, muxer, codec rate, extra options); all from the same stereo pair
LOSSLESS = {"alac.m4a": ("alac", "ipod", RATE, {}), "flac.mkv": ("flac", "matroska", RATE, {})}
LOSSY = {
    "aac.m4a": ("aac", "ipod", RATE, {}),
    "aac.mp4": ("aac", "mp4", RATE, {}),
    "aac.mkv": ("aac", "matroska", RATE, {}),
    "opus.webm": ("libopus", "webm", 48000, {}),
    "wma.wma": ("wmav2", "asf", 44100, {"bit_rate": 64000}),
    "video.mp4": ("aac", "mp4", RATE, {"video": "mpeg4"}),
    "video.webm": ("libopus", "webm", 48000, {"video": "libvpx"}),
}


@pytest.fixture(scope="session")
def stereo() -> np.ndarray:
    """(2, 80000) int16: the dog clip left, the rain clip right (5 s at 16 kHz)."""
    left, _ = sf.read(DEMO / "4-183992-A-dog.flac", dtype="int16")
    right, _ = sf.read(DEMO / "4-160999-A-rain.flac", dtype="int16")
    return np.stack([left, right])


@pytest.fixture(scope="session")
def media(tmp_path_factory, stereo) -> Path:
    """A folder of the files above, the reference FLAC (soundfile), a two-track MKV, Ogg Opus."""
    d = tmp_path_factory.mktemp("media")
    sf.write(d / "reference.flac", stereo.T, RATE, subtype="PCM_16")
    for name, (codec, muxer, rate, extra) in {**LOSSLESS, **LOSSY}.items():
        encode_file(d / name, stereo, RATE, codec, muxer, codec_rate=rate, **extra)
    encode_file(d / "two_tracks.mkv", [stereo[:1], stereo[1:]], RATE, "aac", "matroska")
    # Ogg Opus starting at a later granule position, as a stream cut from a live recording does
    encode_file(d / "opus.opus", stereo, RATE, "libopus", "opus", codec_rate=48000, start_seconds=1.0)
    return d


def ffmpeg_reference(path: Path) -> tuple[np.ndarray, int]:
    """FFmpeg's own decode of the first audio stream: channel-averaged float, and its rate."""
    with av.open(str(path)) as container:
        frames = [f for f in container.decode(audio=0)]
    rate = frames[0].sample_rate
    chunks = []
    for f in frames:
        x = f.to_ndarray().astype(np.float64)
        if not f.format.is_planar:
            x = x.reshape(-1, len(f.layout.channels)).T
        chunks.append(x)
    assert all(f.format.name == "fltp" for f in frames)  # lossy decoders give float: no scaling to check
    return np.concatenate(chunks, axis=1).mean(axis=0).astype(np.float32), rate


@pytest.fixture(scope="module")
def mini():
    return openclap.load("openclap-mini")


@pytest.mark.parametrize("name", sorted(LOSSLESS))
def test_lossless_containers_decode_sample_identical_to_soundfile(media, name):
    ours = load_audio(media / name, RATE)
    ref = load_audio(media / "reference.flac", RATE)  # soundfile's decode of the same audio
    assert audio_info(media / name).subtype == name.split(".")[0]  # FFmpeg decoded it, not libsndfile
    assert ours.shape == ref.shape and np.array_equal(ours, ref)
    assert np.array_equal(load_audio(media / name, 44100), load_audio(media / "reference.flac", 44100))


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_ffmpeg_decoder_equals_soundfile_on_the_same_file(tmp_path, stereo, subtype):
    # Forced through FFmpeg, a WAV decodes to soundfile's samples: integer scaling and channel layout.
    path = tmp_path / f"x_{subtype}.wav"
    sf.write(path, stereo.T.astype(np.float32) / 32768 * 0.9, RATE, subtype=subtype)
    with FFmpegFile(path, "x") as f:
        ours = f.read()
    ref, _ = sf.read(path, dtype="float32", always_2d=True)
    assert ours.shape == ref.shape == (stereo.shape[1], 2) and np.array_equal(ours, ref)


@pytest.mark.parametrize("name", sorted(LOSSY))
def test_lossy_decode_is_ffmpegs_own(media, name):
    ref, rate = ffmpeg_reference(media / name)
    ours = load_audio(media / name, rate)  # at the file's own rate: no resampling in between
    assert audio_info(media / name).sample_rate == rate
    assert ours.shape == ref.shape  # no lost or extra samples at either end
    assert np.abs(ours - ref).max() < 1e-6  # same samples, same channel mix, no offset


@pytest.mark.parametrize("name", ["aac.m4a", "opus.webm", "video.mp4", "wma.wma"])
def test_lossy_file_embeds_like_ffmpegs_decode_as_array(media, mini, name):
    ref, rate = ffmpeg_reference(media / name)
    from_file, from_array = mini.embed_audio([str(media / name), (ref, rate)])
    assert float(from_file @ from_array) >= 0.9999


def test_blocks_bytes_and_file_objects_equal_the_path(media):
    path = media / "aac.m4a"
    whole = load_audio(path, 22050)
    blocks = np.concatenate(list(iter_audio_blocks(path, 22050, 0.37)))  # blocks across codec frames
    assert blocks.shape == whole.shape and np.abs(blocks - whole).max() < 1e-5
    data = path.read_bytes()
    assert np.array_equal(load_audio(data, 22050), whole)
    with open(path, "rb") as f:
        assert np.array_equal(load_audio(f, 22050), whole)
    assert np.array_equal(load_audio(io.BytesIO(data), 22050), whole)
    with pytest.raises(AudioLoadError, match="<bytes input>.*not audio|not audio: <bytes input>"):
        load_audio(b"just some text, not a recording", RATE)


def test_libsndfile_opus_starts_where_ffmpeg_does(media):
    # libsndfile 1.2 places an Ogg Opus stream that starts at a later granule position right only after a
    # seek: without one, its samples were misaligned (max difference to FFmpeg's decode > 1).
    path = media / "opus.opus"
    assert audio_info(path).subtype == "OPUS"  # libsndfile's path
    ref, rate = ffmpeg_reference(path)
    whole = load_audio(path, rate)
    blocks = np.concatenate(list(iter_audio_blocks(path, rate, 0.5)))
    assert whole.shape == blocks.shape == ref.shape and np.array_equal(blocks, whole)
    assert np.abs(whole - ref).max() < 2e-3  # two Opus decoders' float rounding; misaligned: ~0.5


def test_choose_the_audio_stream(media, stereo):
    left = load_audio(stereo[0], RATE, source_rate=RATE)
    right = load_audio(stereo[1], RATE, source_rate=RATE)
    first, second = (load_audio(media / "two_tracks.mkv", RATE, stream=k)[: len(left) - 1024] for k in (0, 1))
    n = len(first)
    assert np.corrcoef(first, left[:n])[0, 1] > 0.99 and np.corrcoef(second, right[:n])[0, 1] > 0.99
    assert np.array_equal(load_audio(media / "two_tracks.mkv", RATE)[:n], first)  # default: the first
    with pytest.raises(AudioLoadError, match="2 audio stream"):
        load_audio(media / "two_tracks.mkv", RATE, stream=2)


def test_what_is_not_audio_says_so(tmp_path, stereo, media):
    encode_file(tmp_path / "no_sound.mp4", None, RATE, "", "mp4", video="mpeg4")
    (tmp_path / "notes.txt").write_text("field recordings, day 2\n")
    # .dat is the VCD extension: FFmpeg's MPEG demuxer takes it and runs out of data while probing
    (tmp_path / "log.dat").write_text("field recordings, day 2\n")
    cut = tmp_path / "cut.webm"
    data = (media / "opus.webm").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    broken = tmp_path / "broken.m4a"
    broken.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    cases = {
        "no_sound.mp4": "no audio stream",
        "notes.txt": "not audio",
        "log.dat": "not audio",
        "cut.webm": None,
        "broken.m4a": None,
    }
    for name, kind in cases.items():
        with pytest.raises(AudioLoadError) as exc_info:
            load_audio(tmp_path / name, RATE)
        err = exc_info.value
        assert err.kind == kind and err.path == str(tmp_path / name) and name in str(err)
        assert is_not_audio(str(err)) == (kind is not None)
    with pytest.raises(AudioLoadError, match="truncated"):
        load_audio(cut, RATE)
    with pytest.raises(AudioLoadError, match="truncated"):
        list(iter_audio_blocks(cut, RATE, 1.0))


def test_mixed_folder_reports_every_file(tmp_path, media, mini, capsys):
    folder = tmp_path / "collection"
    (folder / "videos").mkdir(parents=True)
    for name in ("aac.m4a", "opus.webm", "wma.wma", "aac.mkv"):
        (folder / name).write_bytes((media / name).read_bytes())
    (folder / "videos" / "clip.mp4").write_bytes((media / "video.mp4").read_bytes())
    (folder / "phone_recording.dat").write_bytes((media / "aac.m4a").read_bytes())  # content decides
    encode_file(folder / "videos" / "no_sound.mp4", None, RATE, "", "mp4", video="mpeg4")
    (folder / "README.txt").write_text("what these recordings are\n")
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    every = sorted(str(p.resolve()) for p in folder.rglob("*") if p.is_file())
    assert len(every) == 9

    out = tmp_path / "out"
    report = run_embed_job(mini, [folder], out, EmbedOptions(num_workers=0))
    assert (report.total, report.embedded, report.failed, report.not_audio) == (9, 6, 1, 2)
    assert report.summary() == "embedded 6, failed 1, not audio 2"
    reasons = {Path(p).name: r for p, r in report.errors}
    assert reasons["README.txt"].startswith("not audio:")
    assert reasons["no_sound.mp4"].startswith("no audio stream:")
    assert "broken.wav" in reasons["broken.wav"] and not is_not_audio(reasons["broken.wav"])
    with open(out / "errors.csv") as f:
        assert sum(1 for _ in f) == 1 + 3  # header + every file without an embedding
    vectors, rows = embed_to_arrays(mini, [folder], EmbedOptions(num_workers=0))
    assert sorted(r.path for r in rows) == every and len(vectors) == 6

    # the command line: the same folder, its last line counting them
    code = cli_main(
        [
            "embed",
            str(folder),
            "--out",
            str(tmp_path / "small.npz"),
            "--workers",
            "0",
            "--model",
            "openclap-mini",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1  # broken.wav failed
    assert captured.out.strip().splitlines()[-1].startswith("embedded 6, failed 1, not audio 2")
    assert "skipped: not audio:" in captured.err and "README.txt" in captured.err


def test_decode_budget_holds_for_ffmpeg_formats(media):
    from openclap.audio.io import AudioTooLargeError, DecodeBudget

    path = media / "aac.m4a"  # 5 s of stereo at 16 kHz: 160,000 samples
    assert len(load_audio(path, RATE, budget=DecodeBudget(max_samples=170_000, max_seconds=5.5))) == 80896
    with pytest.raises(AudioTooLargeError, match="aac.m4a' lasts 5.0 s"):  # the header, before decoding
        load_audio(path, RATE, budget=DecodeBudget(max_seconds=4.0))
    with pytest.raises(AudioTooLargeError, match="aac.m4a' declares 80000 frames x 2 channels"):
        load_audio(path, RATE, budget=DecodeBudget(max_samples=150_000))
    # the stated 80,000 frames fit, the 80,896 decoded (AAC's last-frame padding) do not: the decode stops
    with pytest.raises(AudioTooLargeError, match="decodes to more than"):
        load_audio(path, RATE, budget=DecodeBudget(max_samples=160_000))

"""Audio I/O: formats, resampling, and every error case names the file and the reason."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auralens.audio import AudioError, fix_length, load, load_with_info, loop_to_length, write


@pytest.mark.parametrize("ext,fmt", [(".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG"), (".mp3", "MP3")])
def test_load_formats_resample_and_mono(tmp_path, ext, fmt):
    sr = 44100
    t = np.arange(sr) / sr
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], 1) * 0.5
    path = tmp_path / f"a{ext}"
    try:
        sf.write(path, stereo, sr, format=fmt)
    except Exception as exc:  # pragma: no cover - libsndfile without mp3 encoding
        pytest.skip(f"this libsndfile cannot write {fmt}: {exc}")
    wave, info = load_with_info(path, 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) <= 1200  # mp3 adds encoder padding
    assert info.channels == 2 and info.orig_sample_rate == sr and info.sample_rate == 16000
    assert 0.3 < np.sqrt(np.mean(wave**2)) < 0.4  # a 0.5-amplitude sine has RMS 0.354


def test_write_roundtrip_exact(tmp_path, noise):
    p = write(tmp_path / "x.wav", noise, 16000)
    np.testing.assert_array_equal(load(p), noise)
    p = write(tmp_path / "x.flac", noise, 16000)
    np.testing.assert_allclose(load(p), noise, atol=1e-6)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="file not found") as e:
        load(tmp_path / "nope.wav")
    assert str(tmp_path / "nope.wav") in str(e.value)


def test_empty_and_corrupt(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty file"):
        load(tmp_path / "empty.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really a wave file at all" * 10)
    with pytest.raises(AudioError, match="unreadable or corrupt"):
        load(tmp_path / "junk.wav")


def test_truncated(tmp_path, noise):
    p = write(tmp_path / "t.flac", noise, 16000)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    # the decoder's own words in the brackets vary with the libsndfile version
    with pytest.raises(AudioError, match=rf"^{re.escape(str(p))}: unreadable or corrupt audio \(.+\)$") as e:
        load(p)
    assert e.value.path == p and "\n" not in str(e.value)


def test_truncated_wav_is_refused(tmp_path):
    # libsndfile decodes the bytes that are there without complaint; the header still says 2 s.
    p = tmp_path / "cut.wav"
    sf.write(p, np.zeros(32000, np.float32), 16000, subtype="PCM_16")
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(AudioError, match=r"truncated WAV: the header declares 2\.000 s but the file "
                                         r"holds 0\.99\d s") as e:
        load(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def _with_chunk_after_data(path, chunk_id: bytes, body: bytes) -> None:
    """Append a RIFF chunk after the data chunk (as some editors write LIST tags)."""
    data = bytearray(path.read_bytes() + chunk_id + struct.pack("<I", len(body)) + body)
    data[4:8] = struct.pack("<I", len(data) - 8)
    path.write_bytes(bytes(data))


def test_whole_wavs_pass_the_truncation_check(tmp_path, noise):
    n = len(noise)
    paths = [write(tmp_path / "float.wav", noise, 16000)]  # scipy float WAV with a fact chunk
    for subtype in ("PCM_16", "PCM_24", "FLOAT", "PCM_U8"):
        paths.append(tmp_path / f"{subtype}.wav")
        sf.write(paths[-1], noise, 16000, subtype=subtype)
    with sf.SoundFile(tmp_path / "tagged.wav", "w", 16000, 1, subtype="PCM_16") as fh:
        fh.title = "tagged"  # a LIST chunk before the data
        fh.write(noise)
    paths.append(tmp_path / "tagged.wav")
    paths.append(tmp_path / "after.wav")
    sf.write(paths[-1], noise, 16000, subtype="PCM_16")
    _with_chunk_after_data(paths[-1], b"LIST", b"INFOINAM" + struct.pack("<I", 6) + b"hello\x00")
    # A streamed WAV whose writer could not seek back leaves the size at 0xFFFFFFFF.
    paths.append(tmp_path / "streamed.wav")
    sf.write(paths[-1], noise, 16000, subtype="PCM_16")
    raw = bytearray(paths[-1].read_bytes())
    at = raw.find(b"data")
    raw[4:8] = raw[at + 4: at + 8] = struct.pack("<I", 0xFFFFFFFF)
    paths[-1].write_bytes(bytes(raw))
    for path in paths:
        assert load(path).shape == (n,), path


def test_zero_samples(tmp_path):
    sf.write(tmp_path / "z.wav", np.zeros((0,), np.float32), 16000)
    with pytest.raises(AudioError, match="zero samples|empty"):
        load(tmp_path / "z.wav")


def test_too_short_to_survive_resampling(tmp_path):
    """One sample at 44.1 kHz became zero at 16 kHz and failed later as "empty mixture", unnamed."""
    sf.write(tmp_path / "one.wav", np.full(1, 0.1, np.float32), 44100)
    with pytest.raises(AudioError, match=r"one\.wav: too short: 1 sample\(s\) at 44100 Hz leave none at 16000 Hz"):
        load(tmp_path / "one.wav", 16000)
    assert load(tmp_path / "one.wav").shape == (1,)  # at its own rate it is one sample


def test_dc_offset_survives_resampling_without_clicks(tmp_path, noise):
    """soxr pads with zeros: a DC-only file came out with clicks at both ends (peak-to-peak
    0.13 for a constant 0.3), which the activity filter then took for sound."""
    sf.write(tmp_path / "dc.wav", np.full((44100, 2), 0.3, np.float32), 44100, subtype="FLOAT")
    wave = load(tmp_path / "dc.wav", 16000)
    assert wave.shape == (16000,) and np.all(wave == np.float32(0.3))
    from auralens.scene.separate.activity import no_sound

    rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
    assert no_sound(rms, float(np.std(wave.astype(np.float64)))) == "constant (no sound)"
    # Linear: the same offset on real audio resamples as the audio plus the offset.
    sf.write(tmp_path / "n.wav", noise, 16000)
    sf.write(tmp_path / "n_dc.wav", noise + 0.25, 16000, subtype="FLOAT")
    np.testing.assert_allclose(load(tmp_path / "n_dc.wav", 22050),
                               load(tmp_path / "n.wav", 22050) + 0.25, atol=2e-4)


def test_nan_samples(tmp_path, noise):
    bad = noise.copy()
    bad[10] = np.nan
    sf.write(tmp_path / "n.wav", bad, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or Inf"):
        load(tmp_path / "n.wav")


def test_huge_float_samples_mix_down_without_overflow(tmp_path):
    path = tmp_path / "huge.wav"
    square = np.where(np.arange(800) // 20 % 2 == 0, 3e38, -3e38).astype(np.float32)
    sf.write(path, np.stack([square, square], 1), 8000, subtype="FLOAT")
    wave, info = load_with_info(path)  # two channels near the float32 limit average, not sum
    assert np.all(np.isfinite(wave)) and info.peak == pytest.approx(3e38, rel=1e-6)
    with pytest.raises(AudioError, match=r"huge\.wav: sample values too large"):
        load(path, 16000)  # resampling overshoots past the float32 limit


def test_duration_limit(tmp_path, noise):
    p = write(tmp_path / "long.wav", np.tile(noise, 3), 16000)
    with pytest.raises(AudioError, match="exceeds the limit of 2 s"):
        load(p, max_duration=2)
    assert len(load(p, max_duration=None)) == 48000


@pytest.mark.parametrize("ext", [".wav", ".flac", ".mp3"])
def test_head_reads_only_the_opening_past_the_duration_limit(tmp_path, noise, ext):
    p = tmp_path / f"long{ext}"
    sf.write(str(p), np.tile(noise, 3), 16000)
    whole = load(p, max_duration=None)
    head = load(p, max_duration=2, head=0.5)  # a head read is not refused for the file's length
    assert len(head) == 8000
    if ext != ".mp3":  # lossless: exactly the first samples
        assert np.array_equal(head, whole[:8000])
    with pytest.raises(AudioError, match="give a positive duration"):
        load(p, head=0.0)


def test_unsupported_sample_rate(tmp_path):
    sf.write(tmp_path / "lo.wav", np.zeros(100, np.float32) + 0.1, 500)
    with pytest.raises(AudioError, match="unsupported sample rate 500"):
        load(tmp_path / "lo.wav")


def test_silence_and_clipping_are_flags(tmp_path):
    write(tmp_path / "s.wav", np.zeros(1600, np.float32), 16000)
    _, info = load_with_info(tmp_path / "s.wav")
    assert info.silent and not info.clipped
    write(tmp_path / "c.wav", np.ones(1600, np.float32), 16000)
    _, info = load_with_info(tmp_path / "c.wav")
    assert info.clipped


def test_write_refuses_bad(tmp_path):
    with pytest.raises(AudioError, match="NaN"):
        write(tmp_path / "x.wav", np.array([np.nan], np.float32), 16000)
    with pytest.raises(AudioError, match="use .wav or .flac"):
        write(tmp_path / "x.mp3", np.zeros(10, np.float32), 16000)
    # files that could not be read back: written before, now refused naming the file
    for rate in (0, -16000, 16000.5, 10**7):
        for ext in (".wav", ".flac"):
            with pytest.raises(AudioError, match=rf"x{ext}: cannot write at sample rate"):
                write(tmp_path / f"x{ext}", np.zeros(10, np.float32), rate)
    with pytest.raises(AudioError, match=r"cannot write 16000 channels .* pass wave.T"):
        write(tmp_path / "x.wav", np.zeros((16000, 2), np.float32), 16000)
    with pytest.raises(AudioError, match=r"shape \(2, 2, 10\): give \[T\] or \[C, T\]"):
        write(tmp_path / "x.wav", np.zeros((2, 2, 10), np.float32), 16000)
    with pytest.raises(AudioError, match="no samples"):
        write(tmp_path / "x.wav", np.zeros(0, np.float32), 16000)
    assert not list(tmp_path.iterdir())  # nothing half-written
    stereo = write(tmp_path / "s.flac", np.zeros((2, 1600), np.float32), np.int64(16000))
    assert sf.info(str(stereo)).channels == 2
    with pytest.raises(ValueError, match="negative"):
        fix_length(np.zeros(10), -5)


def test_fix_and_loop_length():
    a = np.arange(5, dtype=np.float32)
    assert fix_length(a, 3).tolist() == [0, 1, 2]
    assert fix_length(a, 7).tolist() == [0, 1, 2, 3, 4, 0, 0]
    assert loop_to_length(a, 12).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=0, max_size=4096), st.sampled_from([".wav", ".flac", ".ogg", ".mp3"]))
def test_fuzz_random_bytes_never_crash(tmp_path, data, ext):
    p = tmp_path / f"fuzz{ext}"
    p.write_bytes(data)
    try:
        wave = load(p, max_duration=60)
    except AudioError as exc:
        assert str(p) in str(exc)
    else:
        assert wave.dtype == np.float32 and wave.size > 0 and np.all(np.isfinite(wave))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=2000))
def test_fuzz_valid_header_garbage_body(tmp_path, body):
    """A real WAV header followed by random bytes: decode or AudioError, never a crash."""
    p = tmp_path / "h.wav"
    sf.write(p, np.zeros(64, np.float32), 16000, subtype="FLOAT")
    head = p.read_bytes()[:44]
    p.write_bytes(head + body)
    try:
        wave = load(p)
    except AudioError:
        return
    assert np.all(np.isfinite(wave))


def test_float_wav_is_byte_reproducible(tmp_path, noise):
    a = write(tmp_path / "a.wav", noise, 16000).read_bytes()
    b = write(tmp_path / "b.wav", noise, 16000).read_bytes()
    assert a == b


def _encode(tmp_path, ext: str) -> tuple[np.ndarray, object]:
    """A 1 s stereo 44.1 kHz tone, and the same encoded by ffmpeg as ``ext``."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    sr = 44100
    t = np.arange(sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    src = write(tmp_path / "src.wav", np.stack([tone, tone]), sr)
    out = tmp_path / f"a{ext}"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-c:a", "aac",
                    str(out)], check=True)
    return tone, out


@pytest.mark.parametrize("ext", [".m4a", ".aac", ".M4A"])
def test_m4a_and_aac_are_decoded_with_ffmpeg(tmp_path, ext):
    _, path = _encode(tmp_path, ext)
    wave, info = load_with_info(path, 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) <= 1200  # aac adds encoder padding
    assert info.channels == 2 and info.orig_sample_rate == 44100 and info.sample_rate == 16000
    assert 0.3 < np.sqrt(np.mean(wave**2)) < 0.4  # a 0.5-amplitude sine has RMS 0.354
    with pytest.raises(AudioError) as err:
        load(path, max_duration=0.5)
    assert str(err.value) == (f"{path}: duration exceeds the limit of 0.5 s (decoding stopped at "
                              "1.0 s)")
    assert len(load(path, 16000, max_duration=0.5, head=0.25)) == 4000


def test_m4a_without_ffmpeg_says_ffmpeg_is_needed(tmp_path, monkeypatch):
    import shutil

    path = tmp_path / "a.m4a"
    path.write_bytes(b"\0\0\0\x20ftypM4A " + bytes(200))
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(AudioError) as err:
        load(path)
    assert str(err.value) == (f"{path}: reading .m4a audio needs ffmpeg, which is not on PATH; "
                              "install ffmpeg or convert the file to wav or flac")


def test_corrupt_m4a_is_one_line_naming_the_file(tmp_path):
    import shutil

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    path = tmp_path / "bad.m4a"
    path.write_bytes(b"this is not audio\n" * 10)
    with pytest.raises(AudioError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}: unreadable or corrupt audio (ffmpeg: ")
    assert "\n" not in str(err.value)


def test_a_videos_soundtrack_is_read_and_a_silent_video_named(tmp_path):
    import shutil
    import subprocess

    from auralens.data.folder import audio_files

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    tone, _ = _encode(tmp_path, ".m4a")
    video = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=blue:s=32x32:d=1", "-i", str(tmp_path / "src.wav"), "-shortest",
                    "-c:v", "mpeg4", "-c:a", "aac", str(video)], check=True)
    wave, info = load_with_info(video, 16000)
    assert info.channels == 2 and info.orig_sample_rate == 44100
    assert abs(len(wave) - 16000) <= 1200 and 0.3 < np.sqrt(np.mean(wave**2)) < 0.4
    mute = tmp_path / "mute.mkv"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=red:s=32x32:d=1", "-c:v", "mpeg4", str(mute)], check=True)
    with pytest.raises(AudioError) as err:
        load(mute)
    assert str(err.value) == f"{mute}: no audio track"
    # folders list videos with the audio files, so batch jobs read or report them
    assert {p.name for p in audio_files(tmp_path)} >= {"clip.mp4", "mute.mkv", "a.m4a"}

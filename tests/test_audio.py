"""Audio reading, resampling and features, checked against numpy/scipy oracles and known frequencies."""

import math
import wave

import numpy as np
import pytest
import scipy.fft
import soundfile as sf
import torch
from conftest import one_line

from rnnkit.data import audio
from rnnkit.data.audio import (
    FeatureConfig,
    dct_matrix,
    deltas,
    frame_count,
    frequency_warp,
    hz_to_mel,
    load_audio,
    mel_centers,
    mel_filterbank,
    mel_to_hz,
    normalize_utterance,
    pad_silence,
    plot_spectrogram,
    power_spectrogram,
    resample,
    save_audio,
    spec_augment,
    spectrogram_image,
    time_stretch,
    trim_silence,
)
from rnnkit.errors import RnnkitError


def tone(freq: float, rate: int, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


# ---------------------------------------------------------------- reading

def test_flac_stereo_44k_is_mixed_to_mono_and_resampled(tmp_path):
    left, right = tone(440, 44100), 0.5 * tone(440, 44100)
    path = tmp_path / "a.flac"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="PCM_24")
    x, rate = load_audio(path, 8000)
    assert rate == 8000 and x.dtype == torch.float32 and x.dim() == 1
    assert len(x) == math.ceil(len(left) * 80 / 441)
    assert abs(peak_hz(x.numpy(), 8000) - 440) < 5
    mid = x.numpy()[500:-500]  # away from the resampler's edge transients
    assert np.sqrt(2) * mid.std() == pytest.approx(0.75 * 0.5, rel=0.01)  # mean of the channels' amplitudes


def test_native_rate_when_no_rate_is_asked(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(300, 11025), 11025, subtype="PCM_16")
    x, rate = load_audio(path)
    assert rate == 11025 and len(x) == len(tone(300, 11025))
    assert np.abs(x.numpy() - tone(300, 11025)).max() < 1 / 32767 + 1e-6


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32"])
def test_stdlib_wave_reader_matches_soundfile(tmp_path, subtype):
    rng = np.random.default_rng(0)
    data = rng.uniform(-0.9, 0.9, size=(1000, 2)).astype(np.float32)
    path = tmp_path / "a.wav"
    sf.write(path, data, 16000, subtype=subtype)
    ours, rate = audio._read_wave(path)
    ref, ref_rate = audio._read_soundfile(path)
    assert rate == ref_rate == 16000 and ours.shape == ref.shape == (1000, 2)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_without_soundfile_wav_still_loads_and_flac_is_refused(tmp_path, monkeypatch):
    wav, flac = tmp_path / "a.wav", tmp_path / "a.flac"
    sf.write(wav, tone(500, 16000), 16000, subtype="PCM_16")
    sf.write(flac, tone(500, 16000), 16000)
    expected, _ = load_audio(wav, 8000)
    monkeypatch.setattr(audio, "_soundfile", None)
    x, rate = load_audio(wav, 8000)
    torch.testing.assert_close(x, expected)
    with pytest.raises(RnnkitError, match="soundfile"):
        load_audio(flac)




def test_missing_empty_and_non_audio_files_are_one_line_errors(tmp_path):
    with pytest.raises(RnnkitError, match="no such audio file") as e:
        load_audio(tmp_path / "nope.wav")
    assert "nope.wav" in one_line(e)
    text = tmp_path / "notes.wav"
    text.write_text("this is not a WAV file\n" * 20)
    with pytest.raises(RnnkitError, match="cannot read") as e:
        load_audio(text)
    assert "notes.wav" in one_line(e)
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
    with pytest.raises(RnnkitError, match="no audio samples") as e:
        load_audio(empty)
    assert "empty.wav" in one_line(e)
    with pytest.raises(RnnkitError, match="directory"):
        load_audio(tmp_path)
    cut = tmp_path / "cut.wav"
    save_audio(cut, np.zeros(8000, np.float32), 8000)
    cut.write_bytes(cut.read_bytes()[:100])  # a cut download: the header promises 16,044 bytes
    with pytest.raises(RnnkitError, match="truncated") as e:
        load_audio(cut)
    assert "cut.wav" in one_line(e)


def test_stdlib_reader_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00garbage")
    with pytest.raises(RnnkitError, match="PCM WAV") as e:
        audio._read_wave(bad)
    one_line(e)


def test_resampling_keeps_passband_and_removes_what_would_alias():
    kept = resample(tone(3000, 16000, 1.0), 16000, 8000).numpy()
    assert abs(peak_hz(kept, 8000) - 3000) < 3
    assert kept[200:-200].std() == pytest.approx(tone(3000, 16000).std(), rel=0.05)
    # 6 kHz is above the new 4 kHz Nyquist: plain decimation folds it onto 2 kHz at full strength
    high = tone(6000, 16000, 1.0)
    assert high[::2].std() > 0.3
    assert resample(high, 16000, 8000).numpy()[200:-200].std() < 0.01


def test_save_audio_round_trips_atomically(tmp_path):
    x = tone(700, 8000, 0.3)
    for name in ("out.wav", "out.flac"):
        save_audio(tmp_path / "sub" / name, torch.from_numpy(x), 8000)
        y, rate = load_audio(tmp_path / "sub" / name)
        assert rate == 8000
        np.testing.assert_allclose(y.numpy(), x, atol=1 / 32767 + 1e-6)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["out.flac", "out.wav"]  # no temp files left


# ---------------------------------------------------------------- spectra, mel scale, DCT

def test_dct_matches_scipy_orthonormal_dct():
    x = np.random.default_rng(1).normal(size=(7, 40)).astype(np.float32)
    ours = (torch.from_numpy(x) @ dct_matrix(40, 13)).numpy()
    np.testing.assert_allclose(ours, scipy.fft.dct(x, type=2, norm="ortho", axis=1)[:, :13], atol=1e-5)
    full = dct_matrix(16, 16)
    torch.testing.assert_close(full.T @ full, torch.eye(16), atol=1e-5, rtol=0)  # orthonormal


def test_stft_power_matches_numpy_and_peaks_at_the_sine_bin():
    rate, n_fft, win, hop, k = 8000, 256, 200, 80, 32  # bin 32 is exactly 1000 Hz
    x = tone(k * rate / n_fft, rate, 0.2)
    ours = power_spectrogram(torch.from_numpy(x), win, hop, n_fft).numpy()
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    frames = frame_count(len(x), win, hop)
    padded = np.concatenate([x, np.zeros(frames * hop + n_fft)])
    ref = np.stack([np.abs(np.fft.rfft(padded[t * hop:t * hop + win] * window, n=n_fft)) ** 2
                    for t in range(frames)])
    assert ours.shape == ref.shape == (frames, n_fft // 2 + 1)
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-3)
    assert (ours[:-3].argmax(axis=1) == k).all()  # every full frame peaks at the tone's bin


def test_mel_scales_at_known_points():
    assert hz_to_mel(1000.0) == pytest.approx(1000.0, abs=0.1)  # HTK's scale is anchored at 1 kHz = 1000 mel
    assert hz_to_mel(700.0) == pytest.approx(2595 * math.log10(2))
    assert hz_to_mel(1000.0, "slaney") == pytest.approx(15.0)
    assert hz_to_mel(6400.0, "slaney") == pytest.approx(42.0)  # 27 steps of log(6.4) above 1 kHz
    assert hz_to_mel(200.0, "slaney") == pytest.approx(3.0)  # linear part: 200/3 Hz per mel
    f = np.array([0.0, 55.0, 999.0, 1001.0, 3999.0])
    for scale in ("htk", "slaney"):
        np.testing.assert_allclose(mel_to_hz(hz_to_mel(f, scale), scale), f, atol=1e-6)
    with pytest.raises(RnnkitError, match="mel scale"):
        hz_to_mel(1.0, "bark")


@pytest.mark.parametrize("scale", ["htk", "slaney"])
def test_mel_filters_peak_at_their_centres_and_sum_to_one(scale):
    rate, n_fft, n_mels = 16000, 1024, 40
    fb = mel_filterbank(n_mels, n_fft, rate, 20.0, None, scale).numpy()
    centres = mel_centers(n_mels, rate, 20.0, None, scale)
    bins = np.arange(n_fft // 2 + 1) * rate / n_fft
    assert fb.shape == (n_mels, n_fft // 2 + 1)
    # triangles are lopsided in Hz, so the peak bin is one of the two around the centre, not always the nearer
    assert (np.abs(bins[fb.argmax(axis=1)] - centres) < rate / n_fft).all()
    assert (np.diff(centres) > 0).all() and centres[0] > 20 and centres[-1] < 8000
    inside = (bins >= centres[0]) & (bins <= centres[-1])
    np.testing.assert_allclose(fb[:, inside].sum(axis=0), 1.0, atol=1e-5)
    assert (fb[:, bins < 20] == 0).all()  # nothing below f_min


def test_too_many_mels_for_the_fft_is_a_clear_error():
    with pytest.raises(RnnkitError, match="covers no FFT bin"):
        mel_filterbank(128, 64, 8000)
    with pytest.raises(RnnkitError, match="Nyquist"):
        mel_filterbank(40, 256, 8000, f_max=6000)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 2500.0])
def test_pure_tone_lands_in_the_nearest_mel_band(freq):
    cfg = FeatureConfig()
    feats = cfg.log_mel(tone(freq, cfg.sample_rate))
    centres = mel_centers(cfg.n_mels, cfg.sample_rate, cfg.f_min)
    assert int(feats.mean(0).argmax()) == int(np.abs(centres - freq).argmin())


# ---------------------------------------------------------------- features

def test_feature_shapes_and_frame_counts():
    x = torch.from_numpy(tone(440, 8000, 1.0))
    cfg = FeatureConfig()
    assert (cfg.win_length, cfg.hop_length, cfg.fft_size, cfg.dim) == (200, 80, 256, 40)
    assert cfg(x).shape == (cfg.num_frames(len(x)), 40) == (99, 40)
    mfcc = FeatureConfig(kind="mfcc", deltas=2)
    assert mfcc.dim == 39 and mfcc(x).shape == (99, 39)
    assert FeatureConfig(sample_rate=16000).fft_size == 512


@pytest.mark.parametrize("n", [0, 1, 50, 199, 200, 201])
def test_clips_shorter_than_a_window_are_padded(n):
    x = torch.from_numpy(np.random.default_rng(n).normal(0, 0.1, n).astype(np.float32))
    for cfg in (FeatureConfig(), FeatureConfig(kind="mfcc", deltas=2)):
        f = cfg(x)
        assert f.shape == (cfg.num_frames(n), cfg.dim) and torch.isfinite(f).all()
    assert FeatureConfig().num_frames(n) == (1 if n <= 200 else 2)


def test_normalisation_is_per_column_and_level_independent():
    x = torch.from_numpy(tone(440, 8000) + np.random.default_rng(2).normal(0, 0.01, 4000).astype(np.float32))
    cfg = FeatureConfig(kind="mfcc", deltas=1)
    f = cfg(x)
    torch.testing.assert_close(f.mean(0), torch.zeros(cfg.dim), atol=1e-4, rtol=0)
    torch.testing.assert_close(f.std(0, unbiased=False), torch.ones(cfg.dim), atol=1e-3, rtol=0)
    # a quieter recording of the same sound gives the same normalised features (the log floor is relative)
    torch.testing.assert_close(cfg(0.1 * x), f, atol=1e-3, rtol=0)
    raw = FeatureConfig(normalize=False)
    assert not torch.allclose(raw(0.1 * x), raw(x))


def test_digital_silence_gives_finite_floored_log_mels():
    x = torch.cat([torch.zeros(2000), torch.from_numpy(tone(1000, 8000, 0.25)), torch.zeros(2000)])
    lm = FeatureConfig().log_mel(x)
    assert torch.isfinite(lm).all()
    assert float(lm.max() - lm.min()) == pytest.approx(80 * math.log(10) / 10, rel=1e-4)  # the 80 dB floor


def test_deltas_of_a_ramp_are_its_slope_and_of_a_constant_zero():
    ramp = torch.arange(20, dtype=torch.float32)[:, None] * torch.tensor([[0.5, -2.0]])
    d = deltas(ramp)
    torch.testing.assert_close(d[2:-2], torch.tensor([[0.5, -2.0]]).expand(16, 2))
    assert (d[:2].abs() < torch.tensor([0.5, 2.0])).all()  # the repeated edge frames flatten the slope
    torch.testing.assert_close(deltas(torch.full((5, 3), 7.0)), torch.zeros(5, 3))
    torch.testing.assert_close(normalize_utterance(torch.full((1, 3), 4.0)), torch.zeros(1, 3))


def test_config_round_trip_and_bad_settings():
    cfg = FeatureConfig(kind="mfcc", n_mels=30, n_mfcc=20, deltas=2, mel_scale="slaney")
    again = FeatureConfig.from_dict(cfg.to_dict())
    assert again == cfg
    x = torch.from_numpy(tone(600, 8000, 0.3))
    torch.testing.assert_close(again(x), cfg(x))
    with pytest.raises(RnnkitError, match="unknown feature setting"):
        FeatureConfig.from_dict({"n_mel": 40})
    for bad in ({"kind": "fbank"}, {"deltas": 3}, {"kind": "mfcc", "n_mfcc": 41}, {"mel_scale": "bark"},
                {"win_ms": 0.1}):
        with pytest.raises(RnnkitError):
            FeatureConfig(**bad)


# ---------------------------------------------------------------- SpecAugment

def test_spec_augment_is_seeded_masks_whole_rows_and_columns_and_keeps_the_input():
    feats = torch.randn(100, 40) + 5.0  # nothing is 0 before masking
    a = spec_augment(feats, torch.Generator().manual_seed(3), freq_masks=2, freq_width=8, time_masks=2, time_width=10)
    b = spec_augment(feats, torch.Generator().manual_seed(3), freq_masks=2, freq_width=8, time_masks=2, time_width=10)
    torch.testing.assert_close(a, b)
    assert (feats != 0).all()  # the input is untouched
    masked = a == 0
    rows, cols = masked.all(dim=1), masked.all(dim=0)
    assert torch.equal(masked, rows[:, None] | cols[None, :])  # every masked cell is in a masked row or column
    assert cols.sum() <= 16 and rows.sum() <= 20
    draws = [spec_augment(feats, torch.Generator().manual_seed(s)) == 0 for s in range(20)]
    assert any(d.any() for d in draws) and not all(torch.equal(draws[0], d) for d in draws)


def test_spec_augment_time_masks_respect_the_fraction_on_short_clips():
    feats = torch.ones(12, 10)
    for seed in range(50):
        out = spec_augment(feats, torch.Generator().manual_seed(seed), freq_masks=0, time_masks=1, time_width=50,
                           max_time_fraction=0.2)
        assert int((out == 0).all(dim=1).sum()) <= 2  # at most 20% of 12 frames


def test_time_stretch_resamples_frames_linearly_and_keeps_the_ends():
    ramp = torch.arange(11, dtype=torch.float32)[:, None] * torch.tensor([1.0, -2.0])  # linear in time
    slower = time_stretch(ramp, 1.5)
    assert slower.shape == (16, 2)
    torch.testing.assert_close(slower[[0, -1]], ramp[[0, -1]])  # the first and last frames stay
    torch.testing.assert_close(slower[:, 0], torch.linspace(0, 10, 16))  # a straight line stays straight
    assert time_stretch(ramp, 0.5).shape == (6, 2) and time_stretch(ramp, 0.5, min_frames=9).shape == (9, 2)
    assert time_stretch(ramp, 1.0) is ramp
    half = time_stretch(ramp.half(), 1.2)
    assert half.dtype == torch.float16


# ---------------------------------------------------------------- pictures

def test_spectrogram_image_and_plot(tmp_path):
    x = torch.from_numpy(np.concatenate([tone(500, 8000, 0.3), tone(2000, 8000, 0.3)]))
    img = spectrogram_image(x)
    assert img.shape == (40, FeatureConfig().num_frames(len(x)))
    low, high = img[:, 5].argmax(), img[:, -6].argmax()  # the 500 Hz half lights a lower band than the 2 kHz half
    assert low < high
    frames = 30
    post = torch.softmax(torch.randn(frames, 4), dim=1)
    align = [0] * 5 + [1] * 6 + [0] * 4 + [2] * 5 + [3] * 10
    out = tmp_path / "plots" / "spec.png"
    plot_spectrogram(img.T, out, posteriors=post, labels=["", "a", "b", " "], alignment=align, hop_s=0.01,
                     title="two tones")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_spectrogram(img.T, tmp_path / "plain.png")
    assert (tmp_path / "plain.png").stat().st_size > 1000
    with pytest.raises(RnnkitError, match="alignment has 3 frames"):
        plot_spectrogram(img.T, tmp_path / "x.png", posteriors=post, alignment=[0, 1, 2])


def test_frequency_warp_moves_a_tone_to_the_band_of_its_scaled_frequency():
    config = FeatureConfig(deltas=1)
    feats = config(torch.from_numpy(tone(1000, 8000)))  # log-mels, then their deltas
    centers = config.band_centers
    before = centers[int(feats[:, :40].mean(0).argmax())]
    for factor in (0.85, 1.2):
        warped = frequency_warp(feats, factor, centers)
        assert warped.shape == feats.shape
        peak = int(warped[:, :40].mean(0).argmax())
        assert abs(peak - int(np.abs(centers - before * factor).argmin())) <= 1
        torch.testing.assert_close(warped[:, 40:], frequency_warp(feats[:, 40:], factor, centers))  # each block alike
    assert frequency_warp(feats, 1.0, centers) is feats
    with pytest.raises(ValueError, match="blocks of 40"):
        frequency_warp(feats[:, :30], 1.1, centers)


def test_trim_silence_drops_the_quiet_ends_and_keeps_a_pause_inside():
    rate = 8000
    rng = np.random.default_rng(0)
    quiet = lambda seconds: (1e-4 * rng.standard_normal(int(rate * seconds))).astype(np.float32)  # noqa: E731
    x = np.concatenate([quiet(0.3), tone(500, rate, 0.3), quiet(0.1), tone(900, rate, 0.2), quiet(0.4)])
    raw = FeatureConfig(normalize=False)
    full = raw(torch.from_numpy(x))
    trimmed = FeatureConfig(normalize=False, trim_db=30)(torch.from_numpy(x))
    start = next(i for i in range(len(full)) if torch.equal(full[i], trimmed[0]))
    torch.testing.assert_close(trimmed, full[start:start + len(trimmed)])  # one contiguous stretch
    assert abs(start - 30) <= 3 and abs(len(trimmed) - 60) <= 4  # 0.3 s in, 0.6 s of tones and pause
    torch.testing.assert_close(trim_silence(full, 200.0), full)  # nothing that quiet: every frame stays
    normalised = FeatureConfig(trim_db=30)(torch.from_numpy(x))
    assert normalised.shape == trimmed.shape and abs(float(normalised.mean())) < 1e-4  # trimmed, then normalised
    for bad in (0.0, -10.0):
        with pytest.raises(RnnkitError, match="positive level in dB"):
            FeatureConfig(trim_db=bad)


def test_pad_silence_repeats_the_quietest_frame_at_both_ends():
    feats = torch.tensor([[3.0, 3.0, 9.0], [-2.0, -1.0, 7.0], [5.0, 4.0, -8.0]])
    out = pad_silence(feats, 2, 1, loudness_columns=2)  # loudness from the first two columns: frame 1
    assert out.shape == (6, 3)
    torch.testing.assert_close(out[2:5], feats)
    torch.testing.assert_close(out[[0, 1, 5]], feats[[1, 1, 1]])
    assert pad_silence(feats, 0, 0, 2) is feats
    assert FeatureConfig().loudness_columns == 40 and FeatureConfig(kind="mfcc").loudness_columns == 1

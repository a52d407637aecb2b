"""jnp STFT / iSTFT / mel against librosa and exact reconstruction."""

from __future__ import annotations

import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from musicrl.spectral import istft, log_mel, stft


@pytest.mark.parametrize("n_fft, hop", [(640, 320), (1280, 320), (512, 128)])
def test_stft_matches_librosa(n_fft, hop):
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    ours = np.asarray(stft(jnp.asarray(x[None]), n_fft, hop))[0].T
    ref = librosa.stft(x, n_fft=n_fft, hop_length=hop, window="hann", center=True,
                       pad_mode="reflect")
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-3 * np.abs(ref).max())


@pytest.mark.parametrize("n_fft, hop", [(1280, 320), (640, 160)])
def test_istft_inverts_stft(n_fft, hop):
    x = np.random.default_rng(1).standard_normal((2, 9600)).astype(np.float32)
    y = np.asarray(istft(stft(jnp.asarray(x), n_fft, hop), n_fft, hop, x.shape[1]))
    np.testing.assert_allclose(y, x, atol=1e-4)


def test_istft_rejects_incompatible_hop():
    with pytest.raises(ValueError, match="multiple of hop"):
        istft(jnp.zeros((1, 4, 501), jnp.complex64), 1000, 300, 1200)


def test_log_mel_matches_librosa():
    x = np.random.default_rng(2).standard_normal(16000).astype(np.float32) * 0.1
    ours = np.asarray(log_mel(jnp.asarray(x[None]), 16000, 1024, 256, 80))[0]
    ref = np.log(librosa.feature.melspectrogram(y=x, sr=16000, n_fft=1024, hop_length=256,
                                                n_mels=80, power=1.0, pad_mode="reflect") + 1e-5).T
    np.testing.assert_allclose(ours, ref, atol=1e-3)

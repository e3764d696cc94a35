"""The GPU paths (``device="gpu"``) against the CPU fits.

Each GPU path is written against the array module, so its logic runs here with NumPy
(``emulated_gpu``: the ``gpu`` device resolves to NumPy) on machines without a GPU; the
tests marked ``gpu`` run the same checks on CuPy where a CUDA GPU is present.
"""

from __future__ import annotations

import numpy as np
import pytest

import mflib
from mflib.backend import emulated_gpu, gpu_available, gpu_unavailable_reason
from mflib.data import make_low_rank
from mflib.registry import estimators

GPU_ESTIMATORS = sorted((n, c) for n, c in estimators().items() if "gpu" in c._devices)
real_gpu = pytest.mark.skipif(not gpu_available(), reason=f"no GPU: {gpu_unavailable_reason()}")
BACKENDS = [pytest.param("emulated", id="numpy-as-xp"),
            pytest.param("cupy", id="cupy", marks=[pytest.mark.gpu, real_gpu])]
#: parameters under which each estimator's GPU and CPU fits are compared, and how closely
SETTINGS = {
    "als": ({"n_factors": 4, "max_iter": 5}, 1e-9),
    "bayesianmf": ({"n_factors": 3, "max_iter": 6, "burn_in": 2}, 1e-7),
    # minibatches of one rating: the sequential epoch, in the same shuffled order
    "sgd": ({"n_factors": 3, "max_iter": 3, "parallel": None, "batch_size": 1}, 1e-9),
    "rgd": ({"n_factors": 3, "max_iter": 8, "regularization": 0.1}, 1e-8),
    "ragd": ({"n_factors": 3, "max_iter": 6, "regularization": 0.1}, 1e-8),
    "rsvrg": ({"n_factors": 3, "max_iter": 3, "regularization": 0.1, "batch_size": 8}, 1e-8),
    "rsarah": ({"n_factors": 3, "max_iter": 3, "regularization": 0.1, "batch_size": 8}, 1e-8),
    "rspider": ({"n_factors": 3, "max_iter": 3, "regularization": 0.1, "batch_size": 8}, 1e-8),
    "catalyst": ({"n_factors": 3, "max_iter": 2, "regularization": 0.1, "max_doublings": 2},
                 1e-8),
    "dane": ({"n_factors": 3, "max_iter": 3, "regularization": 0.1, "local_steps": 2}, 1e-8),
    "softimpute": ({"regularization": 2.0, "max_iter": 20}, 1e-6),
    "softimputeals": ({"regularization": 2.0, "n_factors": 4, "max_iter": 20}, 1e-6),
}


@pytest.fixture(scope="module")
def data():
    return make_low_rank(80, 60, 3, 0.3, noise=0.1, random_state=0)[0]


def _on(backend):
    return emulated_gpu() if backend == "emulated" else _nothing()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_every_gpu_estimator_has_settings():
    assert {n for n, _ in GPU_ESTIMATORS} <= set(SETTINGS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,cls", GPU_ESTIMATORS)
def test_gpu_fit_matches_the_cpu_fit(name, cls, backend, data):
    params, rtol = SETTINGS[name]
    params = {**params, "random_state": 0}
    cpu = cls(**params).fit(data)
    with _on(backend):
        gpu = cls(**params, device="gpu").fit(data)
    for attr in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        value = getattr(gpu, attr, None)
        assert value is None or type(value) is np.ndarray, f"{attr} must be NumPy"
    np.testing.assert_allclose(gpu.predict(data), cpu.predict(data), rtol=rtol, atol=rtol)
    key = cls._monitor if cls._monitor in cpu.history_ else "train_rmse"
    np.testing.assert_allclose(gpu.history_[key], cpu.history_[key], rtol=max(rtol, 1e-9))


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_picks_the_gpu_and_models_save_from_any_device(backend, data, tmp_path):
    with _on(backend):
        model = mflib.ALS(n_factors=3, max_iter=3, device="auto", random_state=0).fit(data)
        assert mflib.execution.policy_for(model).device == "gpu"
    loaded = mflib.load(model.save(tmp_path / "als.npz"))
    np.testing.assert_array_equal(loaded.predict(data), model.predict(data))


@pytest.mark.skipif(gpu_available(), reason="a GPU is present, so no error is expected")
def test_gpu_without_a_gpu_is_a_clear_error(data):
    with pytest.raises(mflib.backend.DeviceError, match="device='gpu' was requested"):
        mflib.ALS(device="gpu").fit(data)
    assert mflib.execution.policy_for(mflib.ALS(device="auto")).device == "cpu"

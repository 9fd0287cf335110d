import numpy as np

from labctl.design.objective import Adam, softmax_cross_entropy


def test_gradient_matches_central_differences():
    rng = np.random.default_rng(0)
    energies = rng.uniform(0.1, 2.0, (4, 10))
    labels = np.array([0, 3, 9, 3])
    res = softmax_cross_entropy(energies, labels, temperature=7.0)
    numeric = np.zeros_like(energies)
    eps = 1e-6
    for idx in np.ndindex(energies.shape):
        up, down = energies.copy(), energies.copy()
        up[idx] += eps
        down[idx] -= eps
        numeric[idx] = (softmax_cross_entropy(up, labels, 7.0).loss - softmax_cross_entropy(down, labels, 7.0).loss) / (
            2 * eps
        )
    np.testing.assert_allclose(res.dL_dE, numeric, rtol=1e-6, atol=1e-9)


def test_loss_depends_on_shares_not_on_total_power():
    energies = np.array([[1.0, 2.0, 3.0, 4.0]])
    a = softmax_cross_entropy(energies, np.array([3]), 10.0)
    b = softmax_cross_entropy(energies * 1e-9, np.array([3]), 10.0)
    assert abs(a.loss - b.loss) < 1e-12
    assert a.predictions[0] == 3
    # all the light on the right detector is the best achievable: loss = log(1 + 3 e^-T)
    best = softmax_cross_entropy(np.array([[0.0, 0.0, 0.0, 1.0]]), np.array([3]), 10.0)
    assert abs(best.loss - np.log1p(3 * np.exp(-10.0))) < 1e-12


def test_adam_minimizes_a_quadratic():
    target = np.array([1.0, -2.0, 3.0])
    x = np.zeros(3)
    adam = Adam(x.shape)
    for _ in range(500):
        adam.step(x, 2 * (x - target), 0.05)
    np.testing.assert_allclose(x, target, atol=1e-2)
    assert adam.step_count == 500

"""The linear-Gaussian latent variable model: the tests' reference with every quantity in closed form.

``z ~ N(0, I_d)``, ``x | z ~ N(W z + b, sigma^2 I_D)``. Then ``p(x) = N(b, W W^T + sigma^2 I)`` and
``p(z | x) = N(P^{-1} W^T (x - b) / sigma^2, P^{-1})`` with ``P = I + W^T W / sigma^2``.
"""

import pyro
import pyro.distributions as dist
import torch


class LinearGaussian:
    """The model with weights ``W`` (D, d), offset ``b`` (D,) and noise scale ``sigma``."""

    def __init__(self, W: torch.Tensor, b: torch.Tensor, sigma: float):
        self.W, self.b, self.sigma = W, b, sigma
        self.D, self.d = W.shape

    @classmethod
    def random(cls, d: int = 2, D: int = 3, sigma: float = 0.5, seed: int = 0, dtype=torch.float64) -> "LinearGaussian":
        g = torch.Generator().manual_seed(seed)
        return cls(torch.randn(D, d, generator=g, dtype=dtype), torch.randn(D, generator=g, dtype=dtype), sigma)

    def model(self, x, index=None):
        """The generative story for x (N, D); ``index`` is accepted (and ignored) for per-example guides."""
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.d, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.sigma).to_event(1), obs=x)

    def marginal(self) -> dist.MultivariateNormal:
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(self.D, dtype=self.W.dtype)
        return dist.MultivariateNormal(self.b, cov)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_n), shape (N,)."""
        return self.marginal().log_prob(x)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (N, d) and precision (d, d) of p(z | x)."""
        precision = torch.eye(self.d, dtype=self.W.dtype) + self.W.T @ self.W / self.sigma**2
        mean = torch.linalg.solve(precision, (self.W.T @ (x - self.b).T) / self.sigma**2).T
        return mean, precision

    def exact_guide(self, x):
        """q(z | x) = p(z | x)."""
        mean, precision = self.posterior(x)
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.MultivariateNormal(mean, torch.linalg.inv(precision)))

    def prior_guide(self, x):
        """q(z | x) = p(z)."""
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(torch.zeros(self.d, dtype=x.dtype), 1.0).to_event(1))

    def sample(self, n: int) -> torch.Tensor:
        """n draws of x (n, D), from torch's global generator."""
        z = torch.randn(n, self.d, dtype=self.W.dtype)
        return z @ self.W.T + self.b + self.sigma * torch.randn(n, self.D, dtype=self.W.dtype)


def correlated_linear_gaussian() -> LinearGaussian:
    """d=2, D=3, with a strongly correlated posterior (a mean-field guide cannot be exact)."""
    W = torch.tensor([[1.0, 0.8], [0.9, 1.1], [0.3, -0.5]])
    return LinearGaussian(W, torch.tensor([0.5, -1.0, 0.2]), 0.5)


class LinearGaussianHierarchy:
    """Two latent layers, ``z2 -> z1 -> x``, every quantity in closed form.

    ``z2 ~ N(0, I_d2)``, ``z1 | z2 ~ N(A z2 + c, tau^2 I_d1)``, ``x | z1 ~ N(W z1 + b, sigma^2 I_D)``. Then
    ``p(x) = N(W c + b, S)`` with ``S = W (A A^T + tau^2 I) W^T + sigma^2 I``; the posterior factors as
    ``p(z2 | x) = N(A^T W^T S^{-1} (x - W c - b), I - A^T W^T S^{-1} W A)`` and
    ``p(z1 | z2, x) = N(P^{-1} ((A z2 + c) / tau^2 + W^T (x - b) / sigma^2), P^{-1})``, ``P = I / tau^2 + W^T W / sigma^2``.
    """

    def __init__(self, A, c, tau: float, W, b, sigma: float):
        self.A, self.c, self.tau, self.W, self.b, self.sigma = A, c, tau, W, b, sigma
        self.D, self.d1 = W.shape
        self.d2 = A.shape[1]

    @classmethod
    def random(cls, d2: int = 2, d1: int = 3, D: int = 4, seed: int = 0, dtype=torch.float64) -> "LinearGaussianHierarchy":
        g = torch.Generator().manual_seed(seed)
        A, c = torch.randn(d1, d2, generator=g, dtype=dtype), torch.randn(d1, generator=g, dtype=dtype)
        W, b = torch.randn(D, d1, generator=g, dtype=dtype), torch.randn(D, generator=g, dtype=dtype)
        return cls(A, c, 0.7, W, b, 0.5)

    def model(self, x):
        """The story for x (N, D): z2 (N, d2), then z1 (N, d1), then x, all in the plate "data" at dim -1."""
        with pyro.plate("data", x.shape[0], dim=-1):
            z2 = pyro.sample("z2", dist.Normal(torch.zeros(self.d2, dtype=x.dtype), 1.0).to_event(1))
            z1 = pyro.sample("z1", dist.Normal(z2 @ self.A.T + self.c, self.tau).to_event(1))
            pyro.sample("x", dist.Normal(z1 @ self.W.T + self.b, self.sigma).to_event(1), obs=x)

    def marginal(self) -> dist.MultivariateNormal:
        eye = torch.eye(self.d1, dtype=self.W.dtype)
        cov = self.W @ (self.A @ self.A.T + self.tau**2 * eye) @ self.W.T + self.sigma**2 * torch.eye(self.D, dtype=self.W.dtype)
        return dist.MultivariateNormal(self.W @ self.c + self.b, cov)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_n), shape (N,)."""
        return self.marginal().log_prob(x)

    def z2_posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        """p(z2 | x), batch (N,), event (d2,)."""
        marginal = self.marginal()
        gain = torch.linalg.solve(marginal.covariance_matrix, self.W @ self.A).T  # A^T W^T S^{-1}, (d2, D)
        cov = torch.eye(self.d2, dtype=x.dtype) - gain @ self.W @ self.A
        return dist.MultivariateNormal((x - marginal.loc) @ gain.T, cov)

    def z1_posterior(self, z2: torch.Tensor, x: torch.Tensor) -> dist.MultivariateNormal:
        """p(z1 | z2, x) for z2 (..., N, d2) and x (N, D): batch (..., N), event (d1,); broadcasts over leading dims."""
        precision = torch.eye(self.d1, dtype=x.dtype) / self.tau**2 + self.W.T @ self.W / self.sigma**2
        cov = torch.linalg.inv(precision)
        natural = (z2 @ self.A.T + self.c) / self.tau**2 + (x - self.b) @ self.W / self.sigma**2
        return dist.MultivariateNormal(natural @ cov, cov)  # cov is symmetric: (P^{-1} n)^T = n^T P^{-1}

    def exact_guide(self, x):
        """q(z2 | x) q(z1 | z2, x) = p(z2, z1 | x), sampled in the story's order."""
        with pyro.plate("data", x.shape[0], dim=-1):
            z2 = pyro.sample("z2", self.z2_posterior(x))
            pyro.sample("z1", self.z1_posterior(z2, x))

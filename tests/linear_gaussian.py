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

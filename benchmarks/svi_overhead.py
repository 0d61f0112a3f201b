"""Pyro overhead: one VAE training step through pyro_lvm against the same step in plain PyTorch.

pyro_lvm side: :func:`pyro_lvm.infer.train.svi_step` (the step :func:`~pyro_lvm.infer.train`
runs) on ``DeepLatentGaussian.model`` with an ``AmortizedNormal`` guide. Plain side: the same
encoder and decoder (weights copied), one reparameterized sample, Bernoulli log-likelihood
and the analytic Gaussian KL written out by hand, ``torch.optim.Adam``. MNIST-sized MLP
(784-200-200-50, tanh), batches of 128 and 1024.

Each case is a pyro_lvm configuration; ``ratio`` = pyro_lvm step time / plain step time
(paired, median). Reading down the cases of one batch size shows where the overhead goes:

- ``default``: ``train(model.model, guide, x, steps=...)`` with no options, timed step by step
  inside that call (a callback times the train step since the previous callback, then one plain
  step on a reshuffled batch, as a hand-written loop over shuffled data would run); the first
  ``DEFAULT_WARMUP`` steps (validated, then compiling) are not timed. Its ``elbo``,
  ``optimizer`` and ``validation`` columns are what ``History.fast_path`` says ran;
- ``pyro``: what ``train()`` did with no options before the fast path (``fast=False``):
  ``Trace_ELBO`` (Monte Carlo KL), ``pyro.optim.Adam`` (one torch optimizer per parameter),
  Pyro validation on;
- ``meanfield``: ``TraceMeanField_ELBO`` (analytic KL), otherwise as ``pyro``;
- ``meanfield_novalidate``: and ``pyro.enable_validation(False)``;
- ``fast``: and one ``torch.optim.Adam`` over all parameters (``svi_step`` accepts it);
- ``jit``: :class:`pyro_lvm.infer.JitTraceMeanField_ELBO` (Pyro's compiled mean-field ELBO
  with its compile cache fixed) with the ``fast`` settings;
- ``jit_fused``: and torch's fused Adam (one kernel for all parameters), as the default uses;
  the plain step keeps ``torch.optim.Adam``'s defaults, so this row's gain over ``jit`` is the
  optimizer's, which a hand-written loop can also have (``fused=True``);
- ``jit_pyro``: Pyro 1.9.2's own ``JitTraceMeanField_ELBO``, which re-traces every step
  (not in ``--quick``).

A peer row, ``numpyro``, times the same step in NumPyro (``jax.jit`` of ``SVI.update`` with
``TraceMeanField_ELBO``, stax networks of the same sizes, XLA pinned to one thread with
``--threads 1``) against the plain PyTorch step, both by the wall clock (JAX computes on
its own threads); it is skipped, with a note, when NumPyro is not installed
(``pip install numpyro jax``).

Cases with the analytic KL also check the result: from the same weights and the same random
draw, one pyro_lvm step and one plain step must give the same loss and the same new weights
(``loss_rel_diff``, ``param_max_diff``).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import pyro
import pyro.optim
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import clock_name, jax_peer_available, pair_summary, paired_ratio, parser, row, setup, timed, write_results  # noqa: E402

from pyro_lvm.guides import AmortizedNormal  # noqa: E402
from pyro_lvm.infer import JitTraceMeanField_ELBO, LambdaCallback, train  # noqa: E402
from pyro_lvm.infer.train import svi_step  # noqa: E402
from pyro_lvm.models import DeepLatentGaussian  # noqa: E402

__all__ = ["CONFIGS", "build_parser", "main"]

NAME = "svi_overhead"
TARGET = {"cpu": 1.10, "cuda": 1.2}

#: case name -> (ELBO class, optimizer kind, Pyro validation)
#: untimed first steps of the ``default`` row: the validated ones and the one that compiles
DEFAULT_WARMUP = 12

CONFIGS = {
    "pyro": (pyro.infer.Trace_ELBO, "pyro", True),
    "meanfield": (pyro.infer.TraceMeanField_ELBO, "pyro", True),
    "meanfield_novalidate": (pyro.infer.TraceMeanField_ELBO, "pyro", False),
    "fast": (pyro.infer.TraceMeanField_ELBO, "torch", False),
    "jit": (JitTraceMeanField_ELBO, "torch", False),
    "jit_fused": (JitTraceMeanField_ELBO, "torch_fused", False),
    "jit_pyro": (pyro.infer.JitTraceMeanField_ELBO, "torch", False),
}


class PlainVAE:
    """The same VAE step in plain PyTorch: copies of the encoder and decoder, analytic KL."""

    def __init__(self, encoder: torch.nn.Module, decoder: torch.nn.Module, lr: float) -> None:
        self.encoder, self.decoder = copy.deepcopy(encoder), copy.deepcopy(decoder)
        self.optimizer = torch.optim.Adam([*self.encoder.parameters(), *self.decoder.parameters()], lr=lr)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Negative ELBO summed over the batch x (N, D), one reparameterized sample."""
        loc, raw_scale = self.encoder(x).chunk(2, dim=-1)
        scale = F.softplus(raw_scale) + 1e-5
        z = loc + scale * torch.randn_like(loc)
        log_lik = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="sum")
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1.0).sum() - scale.log().sum()
        return kl - log_lik

    def step(self, x: torch.Tensor) -> float:
        loss = self.loss(x)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()


class PyroLVMStep:
    """One ``svi_step`` of ``DeepLatentGaussian.model`` / ``AmortizedNormal`` in a given configuration."""

    def __init__(self, model: DeepLatentGaussian, guide: AmortizedNormal, config: str, lr: float) -> None:
        elbo_cls, optim_kind, self.validate = CONFIGS[config]
        # one bound method for every step: a JIT ELBO keys its compiled trace on id(model)
        self.model_fn, self.guide = model.model, guide
        self.loss = elbo_cls(ignore_jit_warnings=True) if "Jit" in elbo_cls.__name__ else elbo_cls()
        if optim_kind in ("torch", "torch_fused"):
            fused = optim_kind == "torch_fused"
            self.optimizer = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=lr, fused=fused)
        else:
            self.optimizer = pyro.optim.Adam({"lr": lr})

    def step(self, x: torch.Tensor) -> float:
        pyro.enable_validation(self.validate)
        return svi_step(self.model_fn, self.guide, self.loss, self.optimizer, (x,), {})


class NumPyroVAE:
    """The same VAE step in NumPyro: ``jax.jit(SVI.update)``, TraceMeanField_ELBO, Adam."""

    def __init__(self, x, hidden: tuple[int, ...], z_dim: int, lr: float, seed: int) -> None:
        import jax
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as ndist
        from jax.example_libraries import stax

        def mlp(out_dim):
            layers = [layer for h in hidden for layer in (stax.Dense(h), stax.Tanh)]
            return stax.serial(*layers, stax.Dense(out_dim))

        n, data_dim = x.shape
        encoder_nn, decoder_nn = mlp(2 * z_dim), mlp(data_dim)

        def model(x):
            decode = numpyro.module("decoder", decoder_nn, (n, z_dim))
            with numpyro.plate("data", n):
                z = numpyro.sample("z", ndist.Normal(jnp.zeros(z_dim), 1.0).to_event(1))
                numpyro.sample("x", ndist.Bernoulli(logits=decode(z)).to_event(1), obs=x)

        def guide(x):
            encode = numpyro.module("encoder", encoder_nn, (n, data_dim))
            with numpyro.plate("data", n):
                loc, raw_scale = jnp.split(encode(x), 2, axis=-1)
                numpyro.sample("z", ndist.Normal(loc, jax.nn.softplus(raw_scale) + 1e-5).to_event(1))

        svi = numpyro.infer.SVI(model, guide, numpyro.optim.Adam(lr), numpyro.infer.TraceMeanField_ELBO())
        self.x = jnp.asarray(x.cpu().numpy())
        self.state = svi.init(jax.random.PRNGKey(seed), self.x)
        self.update = jax.jit(svi.update)

    def step(self) -> float:
        self.state, loss = self.update(self.state, self.x)
        return float(loss.block_until_ready())


def time_default_train(model, guide, x: torch.Tensor, lr: float, steps: int, device: torch.device) -> tuple[dict, dict]:
    """Time ``train(model.model, guide, x, steps=steps)`` (no options, one batch of all rows per
    step) step by step against a plain step after each; returns (pair summary, History.fast_path)."""
    plain = PlainVAE(guide.encoder, model.decoder, lr)
    clock = clock_name(device)
    now = getattr(time, clock)
    ta, tb, mark = [], [], [None]

    def pair(state) -> None:
        if state.step > DEFAULT_WARMUP:
            ta.append(now() - mark[0])
        if state.step >= DEFAULT_WARMUP:
            tb.append(timed(lambda: plain.step(x[torch.randperm(len(x), device=x.device)]), device, clock)[0])
        if device.type == "cuda":
            torch.cuda.synchronize()
        mark[0] = now()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JIT tracer warnings
        history = train(model.model, guide, x, steps=steps, batch_size=len(x), lr=lr, progress=False,
                        callbacks=[LambdaCallback(on_step_end=pair)])
    return pair_summary(ta, tb[: len(ta)], clock), history.fast_path


def _networks(data_dim: int, hidden: tuple[int, ...], z_dim: int, device: torch.device, seed: int):
    torch.manual_seed(seed)
    model = DeepLatentGaussian(data_dim, z_dim, hidden).to(device)
    guide = AmortizedNormal(data_dim, z_dim, hidden).to(device)
    return model, guide


def _same_step(model, guide, config: str, x: torch.Tensor, lr: float, seed: int) -> dict:
    """One step each from the same weights and random draw: loss and weight differences."""
    pyro.clear_param_store()
    plain = PlainVAE(guide.encoder, model.decoder, lr)
    model, guide = copy.deepcopy(model), copy.deepcopy(guide)
    ours = PyroLVMStep(model, guide, config, lr)
    if hasattr(ours.loss, "differentiable_loss") and "Jit" in type(ours.loss).__name__:
        ours.loss.differentiable_loss(ours.model_fn, guide, x)  # compile first (tracing draws its own noise)
    torch.manual_seed(seed)
    loss_ours = ours.step(x)
    torch.manual_seed(seed)
    loss_plain = plain.step(x)
    diffs = [
        (a - b).abs().max().item()
        for ma, mb in ((guide.encoder, plain.encoder), (model.decoder, plain.decoder))
        for a, b in zip(ma.parameters(), mb.parameters())
    ]
    pyro.clear_param_store()
    return {"loss_rel_diff": abs(loss_ours - loss_plain) / abs(loss_plain), "param_max_diff": max(diffs)}


def _numpyro_rows(args, device, batches, hidden, data_dim, z_dim, pairs, lr) -> list[dict]:
    """Peer rows: NumPyro's jitted step over the plain PyTorch step (CPU only: JAX here is CPU-only)."""
    if device.type != "cpu":
        return []
    if not jax_peer_available(args.threads, "numpyro"):
        print(f"{NAME}: NumPyro is not installed (pip install numpyro jax); no numpyro rows")
        return []
    import numpyro

    rows = []
    for batch in batches:
        x = torch.bernoulli(torch.full((batch, data_dim), 0.13, device=device))
        model, guide = _networks(data_dim, hidden, z_dim, device, args.seed)
        plain = PlainVAE(guide.encoder, model.decoder, lr)
        peer = NumPyroVAE(x, hidden, z_dim, lr, args.seed)
        timing = paired_ratio(peer.step, lambda: plain.step(x), device, repeats=pairs, warmup=3, clock="perf_counter")
        rows.append(row(
            NAME, f"batch {batch}, numpyro", device, args.quick,
            batch=batch, config="numpyro", elbo="numpyro TraceMeanField_ELBO", optimizer="numpyro.optim.Adam",
            validation=False, ratio=timing["ratio"], ratio_q25=timing["ratio_q25"], ratio_q75=timing["ratio_q75"],
            numpyro_ms=timing["a_ms"], plain_ms=timing["b_ms"], pairs=timing["pairs"], clock=timing["clock"],
            numpyro=numpyro.__version__,
        ))
        print(f"{NAME} batch {batch:5d} numpyro                ratio {timing['ratio']:.3f} "
              f"({timing['a_ms']:.2f} ms vs {timing['b_ms']:.2f} ms, wall clock)", flush=True)
    return rows


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's command line: the flags every benchmark takes."""
    return parser(NAME, __doc__.split("\n\n")[0])


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    device = setup(args)
    if args.smoke:
        batches, hidden, data_dim, z_dim, pairs = (16,), (32,), 64, 4, 3
        configs = ["default", "pyro", "fast", "jit"]
    elif args.quick:
        batches, hidden, data_dim, z_dim, pairs = (128, 1024), (200, 200), 784, 50, 15
        configs = ["default", *(c for c in CONFIGS if c != "jit_pyro")]
    else:
        batches, hidden, data_dim, z_dim, pairs = (128, 1024), (200, 200), 784, 50, 41
        configs = ["default", *CONFIGS]
    lr = 1e-3
    rows = []
    validation_before = pyro.infer.util.is_validation_enabled()
    try:
        for batch in batches:
            x = torch.bernoulli(torch.full((batch, data_dim), 0.13, device=device))
            for config in configs:
                model, guide = _networks(data_dim, hidden, z_dim, device, args.seed)
                if config == "default":
                    pyro.clear_param_store()
                    steps = DEFAULT_WARMUP + max(pairs, 100)  # long enough for the default to compile
                    timing, ran = time_default_train(model, guide, x, lr, steps, device)
                    rows.append(row(
                        NAME, f"batch {batch}, default", device, args.quick or args.smoke, batch=batch, config=config,
                        elbo=ran["loss"], optimizer=ran["optimizer"], validation=ran["validation"],
                        compiled=ran["compiled"], compile_timing=ran.get("compile_timing"), ratio=timing["ratio"],
                        ratio_q25=timing["ratio_q25"],
                        ratio_q75=timing["ratio_q75"], pyro_lvm_ms=timing["a_ms"], plain_ms=timing["b_ms"],
                        pairs=timing["pairs"], target=TARGET.get(device.type),
                    ))
                    print(f"{NAME} batch {batch:5d} {config:22s} ratio {timing['ratio']:.3f} "
                          f"({timing['a_ms']:.2f} ms vs {timing['b_ms']:.2f} ms)", flush=True)
                    pyro.clear_param_store()
                    continue
                check = {"loss_rel_diff": None, "param_max_diff": None}
                if CONFIGS[config][0] is not pyro.infer.Trace_ELBO:
                    check = _same_step(model, guide, config, x, lr, args.seed)
                pyro.clear_param_store()
                plain = PlainVAE(guide.encoder, model.decoder, lr)
                ours = PyroLVMStep(model, guide, config, lr)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # JIT tracer warnings
                    timing = paired_ratio(lambda: ours.step(x), lambda: plain.step(x), device, repeats=pairs, warmup=3)
                elbo_cls, optim_kind, validate = CONFIGS[config]
                rows.append(row(
                    NAME, f"batch {batch}, {config}", device, args.quick or args.smoke,
                    batch=batch,
                    config=config,
                    elbo=f"{elbo_cls.__module__.split('.')[0]}.{elbo_cls.__name__}",
                    optimizer={"pyro": "pyro.optim.Adam", "torch": "torch.optim.Adam",
                               "torch_fused": "torch.optim.Adam(fused=True)"}[optim_kind],
                    validation=validate,
                    ratio=timing["ratio"],
                    ratio_q25=timing["ratio_q25"],
                    ratio_q75=timing["ratio_q75"],
                    pyro_lvm_ms=timing["a_ms"],
                    plain_ms=timing["b_ms"],
                    pairs=timing["pairs"],
                    target=TARGET.get(device.type),
                    **check,
                ))
                print(f"{NAME} batch {batch:5d} {config:22s} ratio {timing['ratio']:.3f} "
                      f"({timing['a_ms']:.2f} ms vs {timing['b_ms']:.2f} ms)", flush=True)
                pyro.clear_param_store()
    finally:
        pyro.enable_validation(validation_before)
    if not args.smoke:
        rows += _numpyro_rows(args, device, batches, hidden, data_dim, z_dim, pairs, lr)
    path = write_results(NAME, rows, args.out)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()

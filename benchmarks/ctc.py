"""Enumerated CTC against the native kernel: ``ctc_log_likelihood(method="enum")`` vs ``F.ctc_loss``.

warp-ctc's published settings: T = 150 frames, labels of length L = 40 over an alphabet of
28 (characters) and L = 20 over 5000 (words), minibatches N in {1, 64, 128}. Each timed call
is a training step's worth of work: log-softmax of random logits, the log-likelihood of every
sequence, and the backward pass to the logits.

Metrics: ``enum_over_native`` = enumerated chain time / torch's native kernel time (paired,
median); ``wrapper_over_native`` the same for ``ctc_log_likelihood(method="native")`` (the
kernel plus pyro_lvm's input checks and gradient correction); on CUDA also
``cudnn_over_native`` (torch's cuDNN path: float32, blank 0, concatenated int32 targets on the
CPU, every input of full length, labels <= 256 long; torch falls back to its native kernel
otherwise). ``value_max_diff`` and
``grad_max_diff``: largest absolute differences of the enumerated log-likelihoods and
logit gradients from the native kernel's.

What bounds the enumerated chain where messages are small (N = 1), each measured in the same
run: ``recursion_over_native`` = time of its forward-backward recursion alone (the banded
chain's messages, from a built chain, no autograd) / the native step; ``enum_ops`` and
``native_ops``: tensor operations one step dispatches (counted, views excluded); ``op_us``:
thread time of one of the smallest operations there are (``torch.add`` of two message-sized
tensors into a third, 100 a call, paired with the native step); ``ops_floor_over_native`` =
``enum_ops`` operations at ``op_us`` each / the native step: what the enumerated step would cost
with no arithmetic at all, only the fixed cost of its operations. Where the chain takes few wide
steps (messages of at most ``pyro_lvm.ops.chain._SMALL_MESSAGE`` entries), ``loop_steps``:
its dependent steps, ``ceil((T - 1) / F)`` for ``F`` frames a step, and ``loop_floor_over_native``
= ``loop_steps`` x the time of one step (one add and one ``logsumexp`` over its window of
``2F + 1`` states, timed alone, paired with the native step) / the native step: the part of the
recursion that no batching over frames can shorten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import paired_ratio, parser, row, setup, write_results  # noqa: E402

from pyro_lvm.ops import chain  # noqa: E402
from pyro_lvm.ops.ctc import _alignment_chain, _check, ctc_log_likelihood  # noqa: E402

__all__ = ["build_parser", "main"]

NAME = "ctc"
TARGET = {"cpu": 5.0, "cuda": 3.0}

#: (T, L, alphabet incl. blank, N)
FULL_CASES = [(150, 40, 28, n) for n in (1, 64, 128)] + [(150, 20, 5000, n) for n in (1, 64, 128)]
QUICK_CASES = [(150, 40, 28, 1), (150, 40, 28, 64), (150, 20, 5000, 64)]
SMOKE_CASES = [(20, 5, 6, 4)]


def _inputs(T: int, L: int, C: int, N: int, device: torch.device, generator: torch.Generator):
    logits = torch.randn(T, N, C, generator=generator).to(device).requires_grad_()
    targets = torch.randint(1, C, (N, L), generator=generator).to(device)
    input_lengths = torch.full((N,), T, dtype=torch.long, device=device)
    target_lengths = torch.full((N,), L, dtype=torch.long, device=device)
    return logits, targets, input_lengths, target_lengths


def _native(logits, targets, input_lengths, target_lengths, cudnn: bool = False):
    """Torch's own kernel: native (cuDNN disabled) or cuDNN (given inputs in the form it requires)."""
    log_probs = logits.log_softmax(-1)
    if cudnn:
        with torch.backends.cudnn.flags(enabled=True):
            loss = F.ctc_loss(
                log_probs, targets.flatten().int().cpu(), input_lengths.int().cpu(), target_lengths.int().cpu(), reduction="none"
            )
    else:
        with torch.backends.cudnn.flags(enabled=False):
            loss = F.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction="none")
    return -loss


def _ours(logits, targets, input_lengths, target_lengths, method: str):
    with torch.backends.cudnn.flags(enabled=False):
        return ctc_log_likelihood(logits.log_softmax(-1), targets, input_lengths, target_lengths, method=method)


def _step(fn, logits, *args, **kwargs):
    """Value and logit gradient of the summed log-likelihood."""
    logits.grad = None
    value = fn(logits, *args, **kwargs)
    value.sum().backward()
    return value.detach(), logits.grad.detach().clone()


class _CountOps(TorchDispatchMode):
    """Counts the tensor operations that reach the dispatcher, views excluded (they move no data)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += not func.is_view
        return func(*args, **(kwargs or {}))


def _ops(fn) -> int:
    """Tensor operations (views excluded) one call of ``fn`` dispatches, backward pass included."""
    with _CountOps() as counter:
        fn()
    return counter.count


def _recursion(logits, targets, input_lengths, target_lengths):
    """The enumerated chain's forward-backward recursion alone, on a chain built once: the banded
    messages that ``method="enum"`` computes for the log-likelihood and its gradient."""
    chain = _alignment_chain(_check(logits.detach().log_softmax(-1), targets, input_lengths, target_lengths, 0), 0)

    def run():
        with torch.no_grad():
            return chain.transition.messages(chain.init, chain.emissions, chain.lengths, chain.final)

    return run


def _small_ops(logits, targets):
    """100 of the smallest tensor operations there are: an add of two message-sized tensors
    (2N rows, 2L + 1 states) into a third."""
    shape = (2 * targets.size(0), 2 * targets.size(1) + 1)
    a, b, out = (torch.zeros(shape, dtype=logits.dtype, device=logits.device) for _ in range(3))

    def run():
        for _ in range(100):
            torch.add(a, b, out=out)

    return run


def _loop_steps(T: int, L: int, N: int) -> int | None:
    """Dependent steps of the few-wide-steps loop for this case, None where the chain steps frame by frame."""
    if 2 * N * (2 * L + 1) > chain._SMALL_MESSAGE:
        return None
    return -(-(T - 1) // chain._FRAMES_PER_STEP)


def _loop_step(logits, targets):
    """100 steps of the few-wide-steps loop alone: an add of the messages' windows of ``2F + 1``
    states and the band's weights, and a ``logsumexp`` over the window into the next message."""
    width = 2 * chain._FRAMES_PER_STEP + 1
    shape = (2 * targets.size(0), 2 * targets.size(1) + 1)
    windows, weights = (torch.zeros(*shape, width, dtype=logits.dtype, device=logits.device) for _ in range(2))
    out = torch.zeros(shape, dtype=logits.dtype, device=logits.device)

    def run():
        for _ in range(100):
            torch.logsumexp(windows + weights, -1, out=out)

    return run


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's command line: the flags every benchmark takes."""
    return parser(NAME, __doc__.split("\n\n")[0])


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    device = setup(args)
    cases = SMOKE_CASES if args.smoke else QUICK_CASES if args.quick else FULL_CASES
    pairs = 3 if args.smoke else 7 if args.quick else 11
    generator = torch.Generator().manual_seed(args.seed)
    rows = []
    for T, L, C, N in cases:
        inputs = _inputs(T, L, C, N, device, generator)
        native = lambda: _step(_native, *inputs)  # noqa: E731
        enum = lambda: _step(_ours, *inputs, method="enum")  # noqa: E731
        wrapper = lambda: _step(_ours, *inputs, method="native")  # noqa: E731
        v_native, g_native = native()
        v_enum, g_enum = enum()
        t_enum = paired_ratio(enum, native, device, repeats=pairs)
        t_wrapper = paired_ratio(wrapper, native, device, repeats=pairs)
        t_recursion = paired_ratio(_recursion(*inputs), native, device, repeats=pairs)
        t_ops = paired_ratio(_small_ops(*inputs[:2]), native, device, repeats=pairs)
        enum_ops, native_ops = _ops(enum), _ops(native)
        steps = _loop_steps(T, L, N)
        t_step = paired_ratio(_loop_step(*inputs[:2]), native, device, repeats=pairs) if steps else None
        extra = {}
        if device.type == "cuda" and torch.backends.cudnn.is_available():
            cudnn = lambda: _step(_native, *inputs, cudnn=True)  # noqa: E731
            v_cudnn, _ = cudnn()
            t_cudnn = paired_ratio(cudnn, native, device, repeats=pairs)
            extra = {"cudnn_over_native": t_cudnn["ratio"], "cudnn_ms": t_cudnn["a_ms"],
                     "cudnn_value_max_diff": (v_cudnn - v_native).abs().max().item()}
        rows.append(row(
            NAME, f"T={T} L={L} C={C} N={N}", device, args.quick or args.smoke,
            T=T, L=L, alphabet=C, N=N,
            enum_over_native=t_enum["ratio"],
            enum_over_native_q25=t_enum["ratio_q25"],
            enum_over_native_q75=t_enum["ratio_q75"],
            enum_ms=t_enum["a_ms"],
            native_ms=t_enum["b_ms"],
            wrapper_over_native=t_wrapper["ratio"],
            recursion_over_native=t_recursion["ratio"],
            enum_ops=enum_ops,
            native_ops=native_ops,
            op_us=10 * t_ops["a_ms"],
            ops_floor_over_native=t_ops["ratio"] * enum_ops / 100,
            loop_steps=steps,
            loop_floor_over_native=t_step["ratio"] * steps / 100 if steps else None,
            pairs=pairs,
            value_max_diff=(v_enum - v_native).abs().max().item(),
            grad_max_diff=(g_enum - g_native).abs().max().item(),
            target=TARGET.get(device.type),
            **extra,
        ))
        print(f"{NAME} {rows[-1]['case']:28s} enum/native {t_enum['ratio']:.2f} ({t_enum['a_ms']:.2f} ms vs "
              f"{t_enum['b_ms']:.2f} ms), recursion/native {t_recursion['ratio']:.2f}, {enum_ops} ops vs {native_ops}, "
              f"{10 * t_ops['a_ms']:.2f} us an op, ops floor/native {rows[-1]['ops_floor_over_native']:.2f}, "
              + (f"loop floor/native {rows[-1]['loop_floor_over_native']:.2f} ({steps} steps), " if steps else "")
              + f"wrapper/native {t_wrapper['ratio']:.2f}, "
              f"max |dvalue| {rows[-1]['value_max_diff']:.1e}, max |dgrad| {rows[-1]['grad_max_diff']:.1e}", flush=True)
    path = write_results(NAME, rows, args.out)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()

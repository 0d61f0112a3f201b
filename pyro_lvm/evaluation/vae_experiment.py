"""One run of the deep latent Gaussian model: data, model, guide family, objective, training, evaluation.

:func:`run_vae_experiment` trains :class:`~pyro_lvm.models.DeepLatentGaussian` (or, with
``stochastic_layers=2``, :class:`~pyro_lvm.models.HierarchicalDeepLatentGaussian`; with
``encoder="conv"``, :class:`~pyro_lvm.models.ConvDeepLatentGaussian` and a
:class:`~pyro_lvm.guides.conv_encoder.ConvEncoder`) with one guide family and objective and
evaluates it with :func:`evaluate_latent_gaussian`; its ``metrics`` are
the record ``examples/vae.py`` writes to ``metrics.json``. ``examples/vae.py`` runs one from its
command line and draws the figures; ``benchmarks/guide_families.py`` runs one per family, in
the same process.
"""

from __future__ import annotations

import contextlib
import resource
from dataclasses import asdict, dataclass, field

import pyro
import pyro.infer
import torch

from pyro_lvm import runs
from pyro_lvm.data import (
    dynamic_binarize,
    load_binarized_mnist,
    load_digits,
    load_mnist,
)
from pyro_lvm.evaluation.latent_gaussian import (
    LatentGaussianEvaluation,
    evaluate_latent_gaussian,
)
from pyro_lvm.guides import AmortizedSite, ConvEncoder, LatentGuide, NormalHead, make_guide
from pyro_lvm.infer import (
    History,
    JitTraceMeanField_ELBO,
    apply_to_first,
    linear_warmup,
    load_weights,
    train,
)
from pyro_lvm.models import ConvDeepLatentGaussian, DeepLatentGaussian, HierarchicalDeepLatentGaussian

__all__ = [
    "CONV_GUIDES",
    "DATASETS",
    "ENCODERS",
    "JIT_GUIDES",
    "TWO_LAYER_GUIDES",
    "VAEData",
    "VAEExperiment",
    "VAEExperimentResult",
    "load_vae_data",
    "run_vae_experiment",
]

#: The data sets a run can use.
DATASETS = ("binarized_mnist", "digits", "mnist")
#: Guide families whose programs compile with ``torch.jit.trace`` (mvn and lowrank do not).
JIT_GUIDES = ("normal", "delta")
#: The networks of a run: ``"mlp"`` (dense encoder and decoder) or ``"conv"`` (a convolutional VAE).
ENCODERS = ("mlp", "conv")
#: Guide families that take the convolutional encoder: every family with an encoder.
CONV_GUIDES = ("delta", "iaf", "lowrank", "mvn", "normal", "semi")
#: Guide families of the two-stochastic-layer story (a ``q(z1 | x) q(z2 | z1)`` of that family).
TWO_LAYER_GUIDES = ("normal",)
#: The convolutional VAE's channels: the encoder's stride-2 convolutions and the decoder's (C0, C1).
CONV_ENCODER_CHANNELS, CONV_DECODER_CHANNELS = (16, 32), (64, 32)


@dataclass
class VAEData:
    """A data set of binary images, flattened: ``x_train`` (N, D) grey levels or bits, ``x_test`` (M, D) bits."""

    x_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor | None  #: (M,) digit labels, None where the data set has none
    side: int  #: images are side x side
    dynamic: bool  #: x_train holds grey levels, binarized anew for every batch


def load_vae_data(dataset: str, data_dir: str | None = None, seed: int = 0) -> VAEData:
    """Load ``dataset`` (see :data:`DATASETS`) from ``data_dir`` (default ``$PYRO_LVM_DATA``).

    ``digits``: scikit-learn's 8x8 digits (offline; the split depends on ``seed``); ``mnist``:
    IDX files, dynamically binarized; ``binarized_mnist``: Larochelle's static binarization. A
    dynamically binarized test set is binarized once, with a fixed seed, so every run scores the
    same pixels.
    """
    if dataset == "digits":
        x_train, _ = load_digits("train", seed=seed)
        x_test, y_test = load_digits("test", seed=seed)
        dynamic = True
    elif dataset == "mnist":
        x_train, _ = load_mnist(data_dir, "train")
        x_test, y_test = load_mnist(data_dir, "test")
        dynamic = True
    elif dataset == "binarized_mnist":
        x_train = load_binarized_mnist(data_dir, "train")
        x_test, y_test = load_binarized_mnist(data_dir, "test"), None
        dynamic = False
    else:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {list(DATASETS)}")
    side = x_train.shape[-1]
    x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    if dynamic:
        x_test = dynamic_binarize(x_test, generator=torch.Generator().manual_seed(1234))
    return VAEData(x_train, x_test, y_test, side, dynamic)


@dataclass
class VAEExperiment:
    """The settings of one run; the names and meanings of ``examples/vae.py``'s flags (see its ``--help``)."""

    dataset: str = "digits"
    guide: str = "normal"  #: a family of :data:`~pyro_lvm.guides.GUIDE_FAMILIES`
    loss: str = "elbo"  #: ``"elbo"`` or ``"iwae"`` (RenyiELBO, alpha=0, with ``particles`` samples)
    particles: int = 1
    z_dim: int = 2  #: the latent size; with two stochastic layers, the top layer's (z2)
    hidden: list[int] = field(default_factory=lambda: [200, 200])  #: conv: the last is the encoder's feature size
    stochastic_layers: int = 1  #: 1: z -> x; 2: z2 -> z1 -> x (Burda et al.'s two-layer model)
    z1_dim: int = 100  #: two layers: size of z1
    z_hidden: list[int] = field(default_factory=lambda: [100, 100])  #: two layers: hidden sizes between z1 and z2
    encoder: str = "mlp"  #: one of :data:`ENCODERS`
    activation: str = "tanh"
    rank: int = 2  #: lowrank guide
    flows: int = 2  #: iaf guide
    refine_steps: int = 5  #: semi guide
    refine_lr: float = 1e-2  #: semi guide
    local_steps: int = 500  #: local guide: Adam steps fitting the test examples' rows
    epochs: int = 300
    batch_size: int = 100
    lr: float = 1e-3
    lr_decay: float = 1.0  #: learning-rate factor per epoch
    kl_warmup: int = 0  #: steps over which beta rises from 0 to 1 (0: none)
    eval_samples: int = 5000
    eval_examples: int | None = None  #: the first N test examples (None: all)
    gap_examples: int = 100
    gap_steps: int = 300
    jit: bool = False  #: compiled mean-field ELBO, Pyro's validation off during the run
    device: str = "cpu"
    seed: int = 0
    checkpoint: str | None = None
    resume: bool = False
    init_from: str | None = None  #: another run's checkpoint to start from

    def __post_init__(self) -> None:
        if self.stochastic_layers not in (1, 2):
            raise ValueError(f"stochastic_layers must be 1 or 2, got {self.stochastic_layers!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; expected one of {list(ENCODERS)}")
        if self.stochastic_layers == 2 and (self.guide not in TWO_LAYER_GUIDES or self.encoder != "mlp"):
            raise ValueError(f"two stochastic layers take the guide {' or '.join(TWO_LAYER_GUIDES)} and the mlp encoder "
                             f"(got guide {self.guide!r}, encoder {self.encoder!r})")
        if self.encoder == "conv" and self.guide not in CONV_GUIDES:
            raise ValueError(f"the conv encoder needs a guide family with an encoder, one of {list(CONV_GUIDES)}; got {self.guide!r}")
        if self.jit and (self.stochastic_layers != 1 or self.encoder != "mlp"):
            raise ValueError("jit compiles the one-layer MLP VAE only (stochastic_layers 1, encoder 'mlp')")
        if self.guide == "delta" and self.loss == "iwae":
            raise ValueError("guide 'delta' has no density (it trains the hard ELBO); loss 'iwae' needs a guide with one")
        if self.jit and (self.loss != "elbo" or self.guide not in JIT_GUIDES or self.kl_warmup):
            raise ValueError(f"jit compiles the mean-field ELBO for the {', '.join(JIT_GUIDES)} guides: it needs loss "
                             f"'elbo', one of those guides and no kl_warmup (got {self.loss!r}, {self.guide!r}, {self.kl_warmup})")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VAEExperimentResult:
    """What a run leaves: its record and the objects the figures are drawn from."""

    metrics: dict  #: the record of ``metrics.json`` (which also names the pyro_lvm version)
    model: DeepLatentGaussian
    guide: torch.nn.Module  #: the guide that covers ``x_eval`` (new rows for a local guide)
    history: History
    evaluation: LatentGaussianEvaluation
    x_eval: torch.Tensor  #: (N, D) the evaluated test examples, on the run's device
    y_eval: torch.Tensor | None  #: (N,) their labels


def _loss(e: VAEExperiment) -> pyro.infer.ELBO:
    if e.jit:
        return JitTraceMeanField_ELBO(num_particles=e.particles, vectorize_particles=e.particles > 1, max_plate_nesting=1,
                                      ignore_jit_warnings=True)
    if e.loss == "iwae":
        return pyro.infer.RenyiELBO(alpha=0.0, num_particles=e.particles, vectorize_particles=True, max_plate_nesting=1)
    if e.stochastic_layers == 2:
        # q(z1 | x) q(z2 | z1) is not mean-field in the story's order (z2, then z1): an analytic KL of z1 taken
        # at a z2 drawn from q(z2 | z1) is not the ELBO's term, so the Monte Carlo ELBO it is
        return pyro.infer.Trace_ELBO(num_particles=e.particles, vectorize_particles=e.particles > 1, max_plate_nesting=1)
    return pyro.infer.TraceMeanField_ELBO(num_particles=e.particles, vectorize_particles=e.particles > 1, max_plate_nesting=1)


def _model(e: VAEExperiment, data: VAEData) -> DeepLatentGaussian:
    """The story of this run: one or two stochastic layers, MLP or convolutional networks."""
    bias = DeepLatentGaussian.output_bias_from_data(data.x_train)
    if e.encoder == "conv":
        return ConvDeepLatentGaussian(data.side, e.z_dim, CONV_DECODER_CHANNELS, e.activation, output_bias=bias)
    if e.stochastic_layers == 2:
        return HierarchicalDeepLatentGaussian(data.x_train.shape[1], e.z1_dim, e.z_dim, e.hidden, e.z_hidden, e.activation,
                                              output_bias=bias)
    return DeepLatentGaussian(data.x_train.shape[1], e.z_dim, e.hidden, e.activation, output_bias=bias)


def _guide(e: VAEExperiment, model: DeepLatentGaussian, data: VAEData) -> torch.nn.Module:
    """The guide family with this run's encoder architecture and family options."""
    data_dim, num_train = data.x_train.shape[1], len(data.x_train)
    if e.stochastic_layers == 2:  # q(z1 | x) q(z2 | z1), the mirror of the story's networks
        return LatentGuide([
            AmortizedSite("z1", NormalHead(e.z1_dim), inputs=("x",), input_dims=(data_dim,), hidden_dims=e.hidden,
                          activation=e.activation),
            AmortizedSite("z2", NormalHead(e.z_dim), inputs=("z1",), input_dims=(e.z1_dim,), hidden_dims=e.z_hidden,
                          activation=e.activation),
        ], model=model.forward)  # the story's signature (x, index)
    encoder = ({"encoder": ConvEncoder(data.side, CONV_ENCODER_CHANNELS, e.hidden[-1], e.activation)} if e.encoder == "conv"
               else {"hidden_dims": e.hidden, "activation": e.activation})  # the family's output layer reads its features
    options = {
        "lowrank": {**encoder, "rank": e.rank},
        "iaf": {**encoder, "num_flows": e.flows},
        "semi": {**encoder, "model": model.model, "refine_steps": e.refine_steps, "refine_lr": e.refine_lr},
        "local": {"num_examples": num_train, "model": model.model},  # binds the ids to the model's argument index
    }.get(e.guide, encoder)
    return make_guide(e.guide, data_dim, e.z_dim, **options)


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: CUDA memory allocated by torch since the last reset, or on CPU the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_vae_experiment(e: VAEExperiment, data: VAEData | None = None, *, progress: bool = True) -> VAEExperimentResult:
    """Seed, build, train and evaluate one run; ``data`` defaults to ``load_vae_data(e.dataset, seed=e.seed)``.

    :raises ValueError: for more ``eval_examples`` than the test set has (before training).
    """
    with pyro.validation_enabled(False) if e.jit else contextlib.nullcontext():
        return _run(e, load_vae_data(e.dataset, seed=e.seed) if data is None else data, progress)


def _run(e: VAEExperiment, data: VAEData, progress: bool) -> VAEExperimentResult:
    runs.set_seed(e.seed)
    device = runs.resolve_device(e.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    x_train, x_test = data.x_train, data.x_test
    if e.eval_examples is not None and e.eval_examples > len(x_test):
        raise ValueError(f"eval_examples {e.eval_examples}: {e.dataset} has only {len(x_test)} test examples")
    pyro.clear_param_store()
    model = _model(e, data)
    guide = _guide(e, model, data)
    pretrained = None if e.init_from is None else load_weights(e.init_from, model.model, guide)
    local = e.guide == "local"  # its model and guide calls carry the example ids
    optimizer = pyro.optim.ExponentialLR({"optimizer": torch.optim.Adam, "optim_args": {"lr": e.lr}, "gamma": e.lr_decay})
    n_eval = len(x_test) if e.eval_examples is None else e.eval_examples
    x_eval = x_test[:n_eval].to(device)

    history = train(
        model.model, guide, (x_train, torch.arange(len(x_train))) if local else x_train,
        loss=_loss(e), optimizer=optimizer, epochs=e.epochs,
        batch_size=e.batch_size, device=device, beta=linear_warmup(e.kl_warmup) if e.kl_warmup else 1.0,
        batch_transform=apply_to_first(dynamic_binarize) if data.dynamic else None, val_data=None if local else x_eval,
        val_every=max(1, e.epochs // 10), checkpoint=e.checkpoint, resume=e.resume, progress=progress,
    )
    train_seconds = history.train_seconds  # all epochs, those of an earlier run that resume continued too

    model.eval()
    guide.eval()
    evaluation = evaluate_latent_gaussian(
        model.model, guide, x_eval, num_samples=e.eval_samples, gap_examples=e.gap_examples,
        gap_steps=e.gap_steps, local_steps=e.local_steps, latent_sites=model.latent_sites if e.stochastic_layers == 2 else None,
    )
    is_bound = evaluation.test_elbo_is_bound
    metrics = {
        "dataset": e.dataset,
        "guide": e.guide,
        "loss": e.loss,
        "particles": e.particles,
        "jit": e.jit,
        "z_dim": e.z_dim,
        "hidden": e.hidden,
        "stochastic_layers": e.stochastic_layers,
        "encoder": e.encoder,
        "z1_dim": e.z1_dim if e.stochastic_layers == 2 else None,
        "z_hidden": e.z_hidden if e.stochastic_layers == 2 else None,
        "parameters": {"model": _parameters(model), "guide": _parameters(guide)},
        "epochs": e.epochs,
        "train_examples": len(x_train),
        "objective": ("hard ELBO (rate-distortion: no entropy term; not a bound on log p(x))" if not is_bound
                      else "ELBO" if e.loss == "elbo" else f"IWAE bound, K={e.particles}"),
        **evaluation.to_dict(),
        "active_units_per_layer": evaluation.active_units_per_layer,
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(1, len(history.epochs)),
        "examples_per_second": len(x_train) * len(history.epochs) / train_seconds,
        "peak_memory_mb": peak_memory_mb(device),
        "device": str(device),
        "device_name": runs.device_name(device),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "seed": e.seed,
        "init_from": None if pretrained is None else {
            "checkpoint": str(e.init_from), "epochs": len(pretrained.epochs), "train_seconds": pretrained.train_seconds,
            "final_train_loss": pretrained.epochs[-1]["train_loss"] if pretrained.epochs else None,
        },
        "history": history.epochs,
    }
    y_eval = None if data.y_test is None else data.y_test[:n_eval]
    return VAEExperimentResult(metrics, model, evaluation.guide, history, evaluation, x_eval, y_eval)

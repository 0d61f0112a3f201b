"""The semi-supervised VAE (M2): its enumerated loss is Kingma et al.'s bound summed over y by hand; its data checks.

References: the unlabelled loss ``-sum_n [sum_y q(y|x_n) L(x_n, y, z_ny) + H(q(y|x_n))]`` and the
labelled one ``-sum_n [L(x_n, y_n, z_n) + alpha log q(y_n|x_n)]`` written out with torch's
distributions, ``L = log p(x|y,z) + log p(y) + log p(z) - log q(z|x,y)``, at the same draws of z
(same seed), against Pyro's ``TraceEnum_ELBO``; scikit-learn's stratified split.
"""

import json
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch
import torch.distributions as td
from pyro.infer import TraceEnum_ELBO

from pyro_lvm.data import SemiSupervisedBatches, labelled_split
from pyro_lvm.models import SemiSupervisedVAE

ROOT = Path(__file__).resolve().parents[1]
C, D, Z = 3, 6, 2


def _tiny_m2():
    torch.manual_seed(0)
    model = SemiSupervisedVAE(D, C, Z, (5,)).double()
    x = torch.bernoulli(torch.full((4, D), 0.4, dtype=torch.float64))
    return model, x


def _bound_terms(model, x, y_onehot, z):
    """``L(x, y, z)`` without ``- log q(z | x, y)``: log p(x | y, z) + log p(y) + log p(z), by hand."""
    logits = model.decoder(torch.cat([z, y_onehot.expand(*z.shape[:-1], C)], -1))
    log_px = td.Bernoulli(logits=logits).log_prob(x).sum(-1)
    return log_px + torch.log(torch.tensor(1.0 / C, dtype=x.dtype)) + td.Normal(0.0, 1.0).log_prob(z).sum(-1)


def _q_z(model, x, y_onehot):
    """The guide's ``q(z | x, y)``, event shape (Z,), from the site's parameters and head."""
    site = model.z_guide.sites[0]
    return site.head.distribution(site.params((x, y_onehot)))


def test_unlabelled_enumerated_loss_is_the_sum_over_y_by_hand():
    model, x = _tiny_m2()
    with torch.no_grad():
        pyro.set_rng_seed(1)
        loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model.objective, model.guide, x)
        pyro.set_rng_seed(1)
        q_y = torch.softmax(model.classifier.network(x), -1)  # (N, C)
        eye = torch.eye(C, dtype=x.dtype)[:, None, :]  # every y, (C, 1, C)
        q_z = _q_z(model, x, eye)  # batch (C, N, Z)
        z = q_z.rsample()
        L = _bound_terms(model, x, eye, z) - q_z.log_prob(z)  # (C, N)
        entropy = -(q_y * q_y.log()).sum(-1)
        by_hand = -((q_y.T * L).sum(0) + entropy).sum()
    assert loss == pytest.approx(by_hand.item(), rel=1e-10)


@pytest.mark.parametrize("alpha", [0.0, 2.5])
@pytest.mark.filterwarnings("ignore:TraceEnum_ELBO found no sample sites")
def test_labelled_loss_adds_alpha_log_q_y_by_hand(alpha):
    model, x = _tiny_m2()
    y = torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        pyro.set_rng_seed(2)
        loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model.objective, model.guide, x, y, alpha=alpha)
        pyro.set_rng_seed(2)
        y_onehot = torch.nn.functional.one_hot(y, C).double()
        q_z = _q_z(model, x, y_onehot)
        z = q_z.rsample()
        L = _bound_terms(model, x, y_onehot, z) - q_z.log_prob(z)
        log_q_y = torch.log_softmax(model.classifier.network(x), -1).gather(-1, y[:, None])[:, 0]
        by_hand = -(L + alpha * log_q_y).sum()
    assert loss == pytest.approx(by_hand.item(), rel=1e-10)


def test_log_likelihood_with_y_summed_is_close_to_the_logsumexp_of_the_labelled_ones():
    model, x = _tiny_m2()
    pyro.set_rng_seed(3)
    summed = model.log_likelihood(x, num_samples=4000, chunk_size=1000)
    per_label = torch.stack([model.log_likelihood(x, torch.full((4,), k), num_samples=4000, chunk_size=1000) for k in range(C)])
    assert summed.shape == (4,)
    assert torch.allclose(summed, per_label.logsumexp(0), atol=0.15)


def test_labels_out_of_range_are_named():
    model, x = _tiny_m2()
    with pytest.raises(ValueError, match=r"y \(the semi-supervised labels\): label 3 at index 1 .* expected integers in \[0, 3\)"):
        model(x, torch.tensor([0, 3, 1, 2]))
    with pytest.raises(ValueError, match=r"y must be a tensor of 4 labels"):
        model(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels: label -1 at index 2"):
        labelled_split(torch.tensor([0, 1, -1, 2] * 5), 4, num_classes=3)
    with pytest.raises(ValueError, match="num_labelled must be an int in"):
        labelled_split(torch.arange(20) % 3, 2, num_classes=3)


def test_labelled_split_is_stratified_seeded_and_covers_every_example():
    labels = torch.arange(1000) % 10
    labelled, unlabelled = labelled_split(labels, 100, seed=4)
    assert torch.equal(torch.bincount(labels[labelled]), torch.full((10,), 10))
    assert torch.equal(torch.sort(torch.cat([labelled, unlabelled])).values, torch.arange(1000))
    assert torch.equal(labelled_split(labels, 100, seed=4)[0], labelled)
    assert not torch.equal(labelled_split(labels, 100, seed=5)[0], labelled)


def test_semisupervised_batches_alternate_and_see_every_unlabelled_example_once():
    x, labels = torch.arange(50.0)[:, None], torch.arange(50) % 5
    labelled, unlabelled = labelled_split(labels, 10, num_classes=5)
    batches = list(SemiSupervisedBatches(x, labels, labelled, unlabelled, batch_size=16, seed=0))
    assert len(batches) == len(SemiSupervisedBatches(x, labels, labelled, unlabelled, batch_size=16)) == 6
    assert [len(b) for b in batches] == [1, 2] * 3
    seen = torch.cat([b[0][:, 0] for b in batches[::2]]).long()
    assert torch.equal(torch.sort(seen).values, unlabelled)
    for xb, yb in batches[1::2]:
        assert set(xb[:, 0].long().tolist()) <= set(labelled.tolist()) and torch.equal(yb, labels[xb[:, 0].long()])


def test_quick_example_runs(tmp_path):
    out = tmp_path / "ssvae"
    done = subprocess.run([sys.executable, str(ROOT / "examples/ssvae.py"), "--quick", "--no-progress", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["labels"] for row in metrics["results"]] == metrics["args"]["labels"]
    for row in metrics["results"]:
        assert 0.0 <= row["test_error"] <= 1.0 and row["test_log_likelihood"] < 0
    assert (out / "analogies.png").exists()

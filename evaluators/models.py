"""Proxy problems written for a leading replica axis.

A `Problem` is a model bound to its data. It trains R independent replicas at once: every
parameter is a tensor ``[R, *shape]`` and every loss is a vector ``[R]``, so one batched
matrix multiply (`torch.baddbmm`) or one grouped convolution does the work of R separate
models. Replicas never interact: the gradient of ``loss.sum()`` with respect to replica r's
parameters is the gradient of replica r's own loss.

Parameters use torch's layouts (``nn.Linear`` weights are ``[out, in]``, convolution kernels
``[out, in, kh, kw]``) so that the language's matrix ops (`orth`, `row_mean`, `col_mean`) see
the same matrices here as on a user's model after export.

Randomness is per seed and independent of R: `init(gen)` draws one replica's parameters and
`plan(gen, steps, batch)` draws one seed's whole sampling plan (minibatch indices, noise), both
on the CPU from a `torch.Generator` the trainer seeds, so a seed trains the same way on any
device and in any batch of replicas.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .data import Arrays, TextCorpus, load_source

Tensor = torch.Tensor
Shapes = tuple[tuple[str, tuple[int, ...]], ...]

__all__ = ["Problem", "PROBLEMS", "build_problem", "Quadratic", "Rosenbrock", "LogisticRegression",
           "MLP", "DigitsCNN", "CharTransformer", "TransformerLM", "GRURegressor",
           "MatrixFactorization", "Autoencoder", "ResidualMLP"]


class Problem:
    """Interface of a proxy problem (see module doc).

    `shapes` lists each parameter's per-replica shape, in order. `init(gen)` returns one
    replica's parameters (CPU, float32). `plan(gen, steps, batch_size)` returns one seed's
    sampling plan, a tensor whose first axis is the step. `loss(params, batch)` takes the
    parameters ``[R, ...]`` and the plan rows of one step for each replica (``[R, ...]``) and
    returns the training loss ``[R]``. `val_loss(params)` is the validation metric ``[R]``.
    `flops_per_example` counts the multiply-adds of the forward pass times 2 (for throughput
    figures; 0 where not meaningful).
    """

    shapes: Shapes
    flops_per_example: int = 0

    def init(self, gen: torch.Generator) -> list[Tensor]:
        raise NotImplementedError

    def plan(self, gen: torch.Generator, steps: int, batch_size: int) -> Tensor:
        raise NotImplementedError

    def loss(self, params: Sequence[Tensor], batch: Tensor) -> Tensor:
        raise NotImplementedError

    def val_loss(self, params: Sequence[Tensor]) -> Tensor:
        raise NotImplementedError


def _uniform(gen: torch.Generator, shape: tuple[int, ...], bound: float) -> Tensor:
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


def _linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Batched ``x @ w^T + b``: x ``[R, B, in]``, w ``[R, out, in]``, b ``[R, out]``."""
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def _index_plan(gen: torch.Generator, steps: int, batch_size: int, n: int) -> Tensor:
    """Minibatch indices ``[steps, batch_size]``, drawn uniformly with replacement."""
    return torch.randint(n, (steps, batch_size), generator=gen)


def _dense_stack(dims: Sequence[int]) -> tuple[Shapes, int]:
    """The parameter shapes (``layer{k}.weight`` ``[out, in]``, ``layer{k}.bias``) and the
    forward FLOPs per example of dense layers ``dims[0] -> dims[1] -> ...``."""
    shapes = []
    for k in range(len(dims) - 1):
        shapes.append((f"layer{k}.weight", (dims[k + 1], dims[k])))
        shapes.append((f"layer{k}.bias", (dims[k + 1],)))
    return tuple(shapes), 2 * sum(a * b for a, b in zip(dims, dims[1:]))


def _per_replica_mean(x: Tensor, replicas: int) -> Tensor:
    return x.reshape(replicas, -1).mean(dim=1)


# ---- synthetic objectives -----------------------------------------------------------------

class Quadratic(Problem):
    """An ill-conditioned noisy quadratic (the noisy quadratic model of Zhang et al., 2019).

        f(w) = 1/2 sum_i h_i w_i^2,   h_i log-spaced in [scale / cond, scale]

    in a random order of coordinates. A minibatch of size B sees
    ``1/2 sum_i h_i (w_i - c_i)^2`` with ``c_i ~ N(0, noise^2 / (B h_i))``: its gradient is the
    true gradient plus noise of covariance ``noise^2 H / B``, as for a linear model near a
    minimum. The validation loss is the exact f(w) (the population risk). Initial
    ``w ~ N(0, I)``.
    """

    def __init__(self, dim: int, cond: float, scale: float, noise: float, seed: int,
                 device: torch.device):
        gen = torch.Generator().manual_seed(seed)
        h = scale * torch.logspace(-math.log10(cond), 0.0, dim, dtype=torch.float64)
        h = h[torch.randperm(dim, generator=gen)]
        self.h = h.to(torch.float32).to(device)
        self.noise = noise
        self.dim = dim
        self.shapes = (("w", (dim,)),)

    def init(self, gen):
        return [torch.randn(self.dim, generator=gen)]

    def plan(self, gen, steps, batch_size):
        # standard normal draws scaled by noise / sqrt(B); the loss divides by sqrt(h_i)
        return torch.randn(steps, self.dim, generator=gen) * (self.noise / batch_size ** 0.5)

    def loss(self, params, batch):
        (w,) = params
        offset = batch * self.h.rsqrt()
        return 0.5 * ((w - offset).square() * self.h).sum(dim=1)

    def val_loss(self, params):
        (w,) = params
        return 0.5 * (w.square() * self.h).sum(dim=1)


class Rosenbrock(Problem):
    """The extended Rosenbrock function in `dim` dimensions (a curved, narrow valley),

        f(x) = sum_{i<dim-1} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2,

    from the classic start (-1.2, 1, -1.2, 1, ...) plus N(0, jitter^2) per seed. Deterministic:
    training and validation loss are the same function; minimum 0 at x = 1.
    """

    def __init__(self, dim: int, jitter: float, device: torch.device):
        self.dim = dim
        self.jitter = jitter
        self.shapes = (("x", (dim,)),)
        start = torch.tensor([-1.2 if i % 2 == 0 else 1.0 for i in range(dim)])
        self.start = start

    def init(self, gen):
        return [self.start + self.jitter * torch.randn(self.dim, generator=gen)]

    def plan(self, gen, steps, batch_size):
        return torch.zeros(steps, 0)

    @staticmethod
    def _f(x: Tensor) -> Tensor:
        a, b = x[:, :-1], x[:, 1:]
        return (100.0 * (b - a * a).square() + (1.0 - a).square()).sum(dim=1)

    def loss(self, params, batch):
        return self._f(params[0])

    def val_loss(self, params):
        return self._f(params[0])


# ---- supervised models on arrays ------------------------------------------------------------

class _Supervised(Problem):
    """Shared minibatching for models trained on an `Arrays` dataset."""

    def __init__(self, data: Arrays, device: torch.device):
        self.x_train = data.x_train.to(device)
        self.y_train = data.y_train.to(device)
        self.x_val = data.x_val.to(device)
        self.y_val = data.y_val.to(device)

    def plan(self, gen, steps, batch_size):
        return _index_plan(gen, steps, batch_size, len(self.x_train))

    def loss(self, params, batch):
        return self._replicas_loss(params, self.x_train[batch], self.y_train[batch])

    def val_loss(self, params):
        replicas = params[0].shape[0]
        x = self.x_val.unsqueeze(0).expand(replicas, *self.x_val.shape)
        y = self.y_val.unsqueeze(0).expand(replicas, *self.y_val.shape)
        return self._replicas_loss(params, x, y)

    def _replicas_loss(self, params, x, y):
        """`_loss`, with a lone replica computed beside a detached copy of itself: torch
        runs a batch of one along other paths (a one-row matmul, a one-group convolution)
        that give other bits, forward and backward, and a replica's numbers must not depend
        on how many train beside it."""
        if params[0].shape[0] != 1:
            return self._loss(params, x, y)
        pair = [torch.cat([p, p.detach()]) for p in params]
        return self._loss(pair, torch.cat([x, x]), torch.cat([y, y]))[:1]

    def _loss(self, params, x, y) -> Tensor:
        raise NotImplementedError


class LogisticRegression(_Supervised):
    """Binary logistic regression, loss = mean binary cross-entropy with logits. PyTorch's
    ``nn.Linear`` initialisation, U(-1/sqrt(in), 1/sqrt(in))."""

    def __init__(self, data: Arrays, device: torch.device):
        super().__init__(data, device)
        self.in_dim = data.x_train.shape[1]
        self.shapes = (("weight", (1, self.in_dim)), ("bias", (1,)))
        self.flops_per_example = 2 * self.in_dim

    def init(self, gen):
        bound = 1 / math.sqrt(self.in_dim)
        return [_uniform(gen, (1, self.in_dim), bound), _uniform(gen, (1,), bound)]

    def _loss(self, params, x, y):
        w, b = params
        logits = _linear(x, w, b).squeeze(2)
        bce = F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none")
        return bce.mean(dim=1)


class MLP(_Supervised):
    """A multilayer perceptron ``in -> hidden... -> out`` with `activation` between layers.

    Classification (`out` > 1 classes, integer targets): mean cross-entropy. Regression
    (`out` == 1, float targets): mean squared error. Initialisation: weights
    N(0, gain^2 / fan_in) (gain 1 for tanh, sqrt 2 for relu, as LeCun / He), zero biases.
    """

    ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], float]] = {
        "relu": (torch.relu, math.sqrt(2.0)),
        "tanh": (torch.tanh, 1.0),
    }

    def __init__(self, data: Arrays, device: torch.device, hidden: Sequence[int],
                 activation: str, out: int):
        super().__init__(data, device)
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        self.act, self.gain = self.ACTIVATIONS[activation]
        self.dims = [data.x_train.shape[1], *hidden, out]
        self.regression = out == 1
        self.shapes, self.flops_per_example = _dense_stack(self.dims)

    def init(self, gen):
        params = []
        for k in range(len(self.dims) - 1):
            fan_in, fan_out = self.dims[k], self.dims[k + 1]
            gain = self.gain if k < len(self.dims) - 2 else 1.0
            params.append(torch.randn(fan_out, fan_in, generator=gen) * (gain / fan_in ** 0.5))
            params.append(torch.zeros(fan_out))
        return params

    def _loss(self, params, x, y):
        h = x
        n_layers = len(self.dims) - 1
        for k in range(n_layers):
            h = _linear(h, params[2 * k], params[2 * k + 1])
            if k < n_layers - 1:
                h = self.act(h)
        replicas = h.shape[0]
        if self.regression:
            return (h.squeeze(2) - y).square().mean(dim=1)
        ce = F.cross_entropy(h.reshape(-1, h.shape[-1]), y.reshape(-1), reduction="none")
        return _per_replica_mean(ce, replicas)


class DigitsCNN(_Supervised):
    """A small convolutional network on the 8x8 digit images:

        conv 3x3 (1 -> c1, pad 1) - relu - conv 3x3 (c1 -> c2, stride 2, pad 1) - relu
        - linear (c2 * 4 * 4 -> 10), cross-entropy.

    The R replicas run as one grouped convolution: replicas are stacked along the channel
    axis (``[B, R * c, 8, 8]``) and ``groups = R`` keeps them apart. PyTorch's default
    initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """

    def __init__(self, data: Arrays, device: torch.device, c1: int, c2: int):
        super().__init__(data, device)
        if data.x_train.shape[1] != 64:
            raise ValueError("DigitsCNN needs 8x8 images")
        self.c1, self.c2 = c1, c2
        self.shapes = (("conv1.weight", (c1, 1, 3, 3)), ("conv1.bias", (c1,)),
                       ("conv2.weight", (c2, c1, 3, 3)), ("conv2.bias", (c2,)),
                       ("fc.weight", (10, c2 * 16)), ("fc.bias", (10,)))
        self.flops_per_example = 2 * (64 * c1 * 9 + 16 * c2 * c1 * 9 + c2 * 16 * 10)

    def init(self, gen):
        out = []
        for _, shape in self.shapes[::2]:
            fan_in = math.prod(shape[1:])
            bound = 1 / math.sqrt(fan_in)
            out.append(_uniform(gen, shape, bound))
            out.append(_uniform(gen, shape[:1], bound))
        return out

    def _loss(self, params, x, y):
        w1, b1, w2, b2, wf, bf = params
        r, b = x.shape[0], x.shape[1]
        # [R, B, 64] -> [B, R, 8, 8]: the replica axis becomes the channel axis.
        img = x.transpose(0, 1).reshape(b, r, 8, 8)
        h = F.conv2d(img, w1.reshape(r * self.c1, 1, 3, 3), b1.reshape(-1), padding=1, groups=r)
        h = torch.relu(h)
        h = F.conv2d(h, w2.reshape(r * self.c2, self.c1, 3, 3), b2.reshape(-1), stride=2,
                     padding=1, groups=r)
        h = torch.relu(h)
        h = h.reshape(b, r, self.c2 * 16).transpose(0, 1)  # [R, B, c2 * 16]
        logits = _linear(h, wf, bf)
        ce = F.cross_entropy(logits.reshape(-1, 10), y.reshape(-1), reduction="none")
        return _per_replica_mean(ce, r)


# ---- a character-level transformer language model -------------------------------------------

class CharTransformer(Problem):
    """A tiny pre-norm decoder-only transformer over characters:

        x = E[tokens] + P;  x += Attn(LN(x));  x += MLP(LN(x));  logits = LN(x) W_out^T

    with causal multi-head self-attention (`heads` heads, fused qkv projection), a GELU MLP of
    width 4 d, layer norms without affine parameters, and an untied output layer. Loss: mean
    next-character cross-entropy over windows of `context` characters. Validation: fixed,
    evenly spaced windows of a held-out stdlib file. Initialisation N(0, 0.02^2) as GPT-2,
    zero biases.
    """

    def __init__(self, corpus: TextCorpus, device: torch.device, d_model: int, heads: int,
                 context: int, val_windows: int):
        if d_model % heads:
            raise ValueError("d_model must be a multiple of heads")
        self.train_ids = corpus.train.to(device)
        self.vocab = corpus.vocab_size
        self.d, self.heads, self.context = d_model, heads, context
        d, v = d_model, corpus.vocab_size
        self.shapes = (("embed", (v, d)), ("pos", (context, d)),
                       ("attn.qkv.weight", (3 * d, d)), ("attn.qkv.bias", (3 * d,)),
                       ("attn.out.weight", (d, d)), ("attn.out.bias", (d,)),
                       ("mlp.in.weight", (4 * d, d)), ("mlp.in.bias", (4 * d,)),
                       ("mlp.out.weight", (d, 4 * d)), ("mlp.out.bias", (d,)),
                       ("head.weight", (v, d)))
        self.flops_per_example = context * 2 * (3 * d * d + d * d + 8 * d * d + v * d
                                                + context * d)  # + attention scores/values
        span = len(corpus.val) - context - 1
        starts = torch.linspace(0, span, val_windows).long()
        self.val_tokens = corpus.val[starts[:, None] + torch.arange(context + 1)].to(device)
        self.offsets = torch.arange(context + 1, device=device)

    def init(self, gen):
        return [torch.randn(shape, generator=gen) * 0.02 if len(shape) > 1 else torch.zeros(shape)
                for _, shape in self.shapes]

    def plan(self, gen, steps, batch_size):
        return torch.randint(len(self.train_ids) - self.context - 1, (steps, batch_size),
                             generator=gen)

    def loss(self, params, batch):
        tokens = self.train_ids[batch.unsqueeze(-1) + self.offsets]  # [R, B, T + 1]
        return self._loss(params, tokens)

    def val_loss(self, params):
        r = params[0].shape[0]
        return self._loss(params, self.val_tokens.unsqueeze(0).expand(r, *self.val_tokens.shape))

    def _loss(self, params, tokens):
        (embed, pos, qkv_w, qkv_b, out_w, out_b, in_w, in_b, mo_w, mo_b, head_w) = params
        r, b, t1 = tokens.shape
        t, d, nh = t1 - 1, self.d, self.heads
        inputs, targets = tokens[:, :, :-1], tokens[:, :, 1:]
        # Embedding lookup for all replicas at once: row (replica, token) of the stacked tables.
        rows = inputs + (torch.arange(r, device=tokens.device) * self.vocab).view(r, 1, 1)
        x = embed.reshape(r * self.vocab, d)[rows] + pos[:, :t].unsqueeze(1)  # [R, B, T, d]
        x = x.reshape(r, b * t, d)
        q, k, v = (_linear(F.layer_norm(x, (d,)), qkv_w, qkv_b)
                   .reshape(r, b, t, 3, nh, d // nh).permute(3, 0, 1, 4, 2, 5))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [R, B, nh, T, d/nh]
        x = x + _linear(a.permute(0, 1, 3, 2, 4).reshape(r, b * t, d), out_w, out_b)
        x = x + _linear(F.gelu(_linear(F.layer_norm(x, (d,)), in_w, in_b)), mo_w, mo_b)
        logits = torch.bmm(F.layer_norm(x, (d,)), head_w.transpose(1, 2))
        ce = F.cross_entropy(logits.reshape(-1, self.vocab), targets.reshape(-1),
                             reduction="none")
        return _per_replica_mean(ce, r)


# ---- held-out (validation-suite) problems ---------------------------------------------------
#
# Models of kinds no search suite trains (see `evaluators.validation_tasks`): a deeper
# transformer with learned layer-norm gains, a recurrent net unrolled over time, a bilinear
# matrix factorisation, a bottleneck autoencoder, a residual MLP with layer norm.

def _layer_norm(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Layer norm over the last axis with per-replica gain and bias: x ``[R, N, d]``,
    weight and bias ``[R, d]``."""
    return torch.addcmul(bias.unsqueeze(1), F.layer_norm(x, x.shape[-1:]), weight.unsqueeze(1))


def _torch_linear_init(gen: torch.Generator, out_dim: int, in_dim: int) -> list[Tensor]:
    """``nn.Linear``'s default initialisation: weight and bias U(-1/sqrt(in), 1/sqrt(in))."""
    bound = 1 / math.sqrt(in_dim)
    return [_uniform(gen, (out_dim, in_dim), bound), _uniform(gen, (out_dim,), bound)]


class TransformerLM(Problem):
    """A pre-LayerNorm decoder-only transformer language model over any token vocabulary
    (`corpus.vocab_size`), `layers` blocks deep (GPT-2's layout at toy scale):

        x = E[tokens] + P
        for each block:  x += Attn(LN_1(x));  x += MLP(LN_2(x))
        logits = LN_f(x) W_out^T

    Causal multi-head self-attention (`heads` heads, fused qkv projection with bias, output
    projection), a GELU MLP of width 4 d, layer norms WITH learned gain and bias (vectors an
    optimizer must treat sensibly: their gradients are on another scale than the matrices'),
    an untied output layer. Loss: mean next-token cross-entropy (nats) over windows of
    `context` tokens drawn uniformly from the training text; validation: `val_windows`
    fixed, evenly spaced windows of the held-out text. Initialisation as GPT-2: matrices
    N(0, 0.02^2), the two residual projections of each block N(0, 0.02^2 / (2 layers)),
    zero biases, unit gains.
    """

    def __init__(self, corpus: TextCorpus, device: torch.device, d_model: int, heads: int,
                 layers: int, context: int, val_windows: int):
        if d_model % heads:
            raise ValueError("d_model must be a multiple of heads")
        if layers < 1:
            raise ValueError("layers must be >= 1")
        self.train_ids = corpus.train.to(device)
        self.vocab = corpus.vocab_size
        self.d, self.heads, self.layers, self.context = d_model, heads, layers, context
        d, v = d_model, corpus.vocab_size
        block = (("ln1.weight", (d,)), ("ln1.bias", (d,)),
                 ("attn.qkv.weight", (3 * d, d)), ("attn.qkv.bias", (3 * d,)),
                 ("attn.out.weight", (d, d)), ("attn.out.bias", (d,)),
                 ("ln2.weight", (d,)), ("ln2.bias", (d,)),
                 ("mlp.in.weight", (4 * d, d)), ("mlp.in.bias", (4 * d,)),
                 ("mlp.out.weight", (d, 4 * d)), ("mlp.out.bias", (d,)))
        self.per_block = len(block)
        self.shapes = ((("embed", (v, d)), ("pos", (context, d)))
                       + tuple((f"block{i}.{name}", shape) for i in range(layers)
                               for name, shape in block)
                       + (("ln_f.weight", (d,)), ("ln_f.bias", (d,)), ("head.weight", (v, d))))
        self.flops_per_example = context * 2 * (layers * (12 * d * d + context * d) + v * d)
        span = len(corpus.val) - context - 1
        if span < 0:
            raise ValueError("the validation text is shorter than one context window")
        starts = torch.linspace(0, span, val_windows).long()
        self.val_tokens = corpus.val[starts[:, None] + torch.arange(context + 1)].to(device)
        self.offsets = torch.arange(context + 1, device=device)

    def init(self, gen):
        out = []
        residual_std = 0.02 / math.sqrt(2 * self.layers)
        for name, shape in self.shapes:
            if name.endswith(("attn.out.weight", "mlp.out.weight")):
                out.append(torch.randn(shape, generator=gen) * residual_std)
            elif len(shape) > 1:
                out.append(torch.randn(shape, generator=gen) * 0.02)
            elif name.endswith(("ln1.weight", "ln2.weight", "ln_f.weight")):
                out.append(torch.ones(shape))
            else:
                out.append(torch.zeros(shape))
        return out

    def plan(self, gen, steps, batch_size):
        return torch.randint(len(self.train_ids) - self.context - 1, (steps, batch_size),
                             generator=gen)

    def loss(self, params, batch):
        return self._loss(params, self.train_ids[batch.unsqueeze(-1) + self.offsets])

    def val_loss(self, params):
        r = params[0].shape[0]
        return self._loss(params, self.val_tokens.unsqueeze(0).expand(r, *self.val_tokens.shape))

    def _loss(self, params, tokens):
        embed, pos = params[0], params[1]
        ln_w, ln_b, head_w = params[-3:]
        r, b, t1 = tokens.shape
        t, d, nh = t1 - 1, self.d, self.heads
        inputs, targets = tokens[:, :, :-1], tokens[:, :, 1:]
        rows = inputs + (torch.arange(r, device=tokens.device) * self.vocab).view(r, 1, 1)
        x = (embed.reshape(r * self.vocab, d)[rows] + pos[:, :t].unsqueeze(1)).reshape(r, b * t, d)
        for i in range(self.layers):
            (ln1_w, ln1_b, qkv_w, qkv_b, out_w, out_b, ln2_w, ln2_b, in_w, in_b, mo_w,
             mo_b) = params[2 + i * self.per_block: 2 + (i + 1) * self.per_block]
            q, k, v = (_linear(_layer_norm(x, ln1_w, ln1_b), qkv_w, qkv_b)
                       .reshape(r, b, t, 3, nh, d // nh).permute(3, 0, 1, 4, 2, 5))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [R, B, nh, T, d/nh]
            x = x + _linear(a.permute(0, 1, 3, 2, 4).reshape(r, b * t, d), out_w, out_b)
            x = x + _linear(F.gelu(_linear(_layer_norm(x, ln2_w, ln2_b), in_w, in_b)), mo_w,
                            mo_b)
        logits = torch.bmm(_layer_norm(x, ln_w, ln_b), head_w.transpose(1, 2))
        ce = F.cross_entropy(logits.reshape(-1, self.vocab), targets.reshape(-1),
                             reduction="none")
        return _per_replica_mean(ce, r)


class GRURegressor(_Supervised):
    """A gated recurrent unit (Cho et al., 2014) read out at the last step, for sequence
    regression (the adding problem). Per step, in ``nn.GRU``'s form and parameter layout
    (gates r, z, n stacked in that order):

        r = sigmoid(W_ir x_t + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x_t + b_iz + W_hz h + b_hz)
        n = tanh(W_in x_t + b_in + r * (W_hn h + b_hn))
        h = (1 - z) * n + z * h,         h_0 = 0
        y_hat = w_out . h_T + b_out,     loss = mean squared error

    The unroll is a Python loop over the sequence's time steps (one batched matmul per step
    for all replicas); backpropagation through time over the whole sequence. Initialisation
    as ``nn.GRU``/``nn.Linear``: U(-1/sqrt(H), 1/sqrt(H)) for everything, H = `units`.
    x: ``[N, T, in]``.
    """

    def __init__(self, data: Arrays, device: torch.device, units: int):
        super().__init__(data, device)
        if data.x_train.dim() != 3:
            raise ValueError("GRURegressor needs sequences [N, T, in]")
        self.in_dim, self.h = data.x_train.shape[2], units
        steps = data.x_train.shape[1]
        h = units
        self.shapes = (("weight_ih", (3 * h, self.in_dim)), ("weight_hh", (3 * h, h)),
                       ("bias_ih", (3 * h,)), ("bias_hh", (3 * h,)),
                       ("head.weight", (1, h)), ("head.bias", (1,)))
        self.flops_per_example = 2 * steps * 3 * h * (self.in_dim + h) + 2 * h

    def init(self, gen):
        bound = 1 / math.sqrt(self.h)
        return [_uniform(gen, shape, bound) for _, shape in self.shapes]

    def _loss(self, params, x, y):
        w_ih, w_hh, b_ih, b_hh, w_out, b_out = params
        r, b, t, _ = x.shape
        hd = self.h
        gi = _linear(x.reshape(r, b * t, self.in_dim), w_ih, b_ih).reshape(r, b, t, 3 * hd)
        h = x.new_zeros(r, b, hd)
        # unbind, not gi[:, :, k]: its backward stacks the T slices' gradients once instead of
        # adding T full-size zero-padded ones (quadratic in T).
        for g in gi.unbind(2):
            gh = _linear(h, w_hh, b_hh)
            rz = torch.sigmoid(g[..., :2 * hd] + gh[..., :2 * hd])
            n = torch.tanh(torch.addcmul(g[..., 2 * hd:], rz[..., :hd], gh[..., 2 * hd:]))
            h = torch.addcmul(n, rz[..., hd:], h - n)
        pred = _linear(h, w_out, b_out).squeeze(2)
        return (pred - y).square().mean(dim=1)


class MatrixFactorization(_Supervised):
    """Low-rank matrix completion by factorisation (Burer-Monteiro): predict entry (i, j) of
    an unknown matrix as ``U_i . V_j`` with factors U ``[rows, rank]``, V ``[cols, rank]``;
    loss = mean squared error over a minibatch of observed entries, validation = MSE on
    entries never observed. Bilinear, so non-convex with a rescaling symmetry
    (U c, V / c) and saddle points (U = V = 0 among them); `rank` above the data's true rank
    over-parameterises it, and what the optimizer converges to then decides how well
    unseen entries are predicted. Initialisation small, N(0, init_scale^2), as in the
    studies of implicit low-rank bias; rows and cols come from the data's largest indices.
    """

    def __init__(self, data: Arrays, device: torch.device, rank: int, init_scale: float):
        super().__init__(data, device)
        both = torch.cat([data.x_train, data.x_val])
        self.rows, self.cols = int(both[:, 0].max()) + 1, int(both[:, 1].max()) + 1
        self.rank, self.init_scale = rank, init_scale
        self.shapes = (("U", (self.rows, rank)), ("V", (self.cols, rank)))
        self.flops_per_example = 2 * rank

    def init(self, gen):
        return [torch.randn(shape, generator=gen) * self.init_scale for _, shape in self.shapes]

    def _loss(self, params, x, y):
        u, v = params
        k = self.rank
        u_rows = u.gather(1, x[..., 0:1].expand(-1, -1, k))  # [R, N, rank]
        v_cols = v.gather(1, x[..., 1:2].expand(-1, -1, k))
        pred = (u_rows * v_cols).sum(dim=2)
        return (pred - y).square().mean(dim=1)


class Autoencoder(_Supervised):
    """A bottleneck autoencoder (an MLP that reconstructs its input):

        in -> encoder... -> code -> reversed(encoder)... -> in

    `activation` after every layer except the code layer (a linear bottleneck, as in PCA)
    and the output layer; loss = mean squared reconstruction error per input coordinate
    (y is x). Deep autoencoders are a classic hard optimisation testbed (Hinton &
    Salakhutdinov, 2006; Martens, 2010): the bottleneck couples all layers. Initialisation
    as `MLP`'s: N(0, gain^2 / fan_in) for a layer followed by the activation (gain 1 for
    tanh, sqrt 2 for relu), N(0, 1 / fan_in) for the others, zero biases.
    """

    def __init__(self, data: Arrays, device: torch.device, encoder: Sequence[int], code: int,
                 activation: str):
        super().__init__(data, device)
        if activation not in MLP.ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        self.act, self.gain = MLP.ACTIVATIONS[activation]
        in_dim = data.x_train.shape[1]
        self.dims = [in_dim, *encoder, code, *reversed(tuple(encoder)), in_dim]
        self.code_layer = len(encoder)  # the layer whose output is the code
        self.shapes, self.flops_per_example = _dense_stack(self.dims)

    def _activated(self, k: int) -> bool:
        return k != self.code_layer and k < len(self.dims) - 2

    def init(self, gen):
        params = []
        for k in range(len(self.dims) - 1):
            fan_in, fan_out = self.dims[k], self.dims[k + 1]
            gain = self.gain if self._activated(k) else 1.0
            params.append(torch.randn(fan_out, fan_in, generator=gen) * (gain / fan_in ** 0.5))
            params.append(torch.zeros(fan_out))
        return params

    def _loss(self, params, x, y):
        h = x
        for k in range(len(self.dims) - 1):
            h = _linear(h, params[2 * k], params[2 * k + 1])
            if self._activated(k):
                h = self.act(h)
        return (h - y).square().flatten(1).mean(dim=1)


class ResidualMLP(_Supervised):
    """A pre-LayerNorm residual MLP for tabular data (the transformer's MLP half, stacked):

        x = W_in x + b_in
        for each of `blocks` blocks:  x += W_2 gelu(W_1 LN(x) + b_1) + b_2   (hidden 2 width)
        out = W_head LN_f(x) + b_head

    with learned layer-norm gains and biases. Classification (`out` > 1 classes): mean
    cross-entropy; regression (`out` == 1): mean squared error. Initialisation: ``nn.Linear``'s
    default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), unit gains, zero layer-norm biases.
    """

    def __init__(self, data: Arrays, device: torch.device, width: int, blocks: int, out: int):
        super().__init__(data, device)
        self.in_dim, self.width, self.blocks, self.out = data.x_train.shape[1], width, blocks, out
        self.regression = out == 1
        w, h = width, 2 * width
        shapes = [("in.weight", (w, self.in_dim)), ("in.bias", (w,))]
        for i in range(blocks):
            shapes += [(f"block{i}.ln.weight", (w,)), (f"block{i}.ln.bias", (w,)),
                       (f"block{i}.fc1.weight", (h, w)), (f"block{i}.fc1.bias", (h,)),
                       (f"block{i}.fc2.weight", (w, h)), (f"block{i}.fc2.bias", (w,))]
        shapes += [("ln_f.weight", (w,)), ("ln_f.bias", (w,)),
                   ("head.weight", (out, w)), ("head.bias", (out,))]
        self.shapes = tuple(shapes)
        self.flops_per_example = 2 * (self.in_dim * w + blocks * 2 * w * h + w * out)

    def init(self, gen):
        w, h = self.width, 2 * self.width
        params = _torch_linear_init(gen, w, self.in_dim)
        for _ in range(self.blocks):
            params += [torch.ones(w), torch.zeros(w)]
            params += _torch_linear_init(gen, h, w) + _torch_linear_init(gen, w, h)
        params += [torch.ones(w), torch.zeros(w)] + _torch_linear_init(gen, self.out, w)
        return params

    def _loss(self, params, x, y):
        h = _linear(x, params[0], params[1])
        for i in range(self.blocks):
            ln_w, ln_b, w1, b1, w2, b2 = params[2 + 6 * i: 8 + 6 * i]
            h = h + _linear(F.gelu(_linear(_layer_norm(h, ln_w, ln_b), w1, b1)), w2, b2)
        out = _linear(_layer_norm(h, params[-4], params[-3]), params[-2], params[-1])
        if self.regression:
            return (out.squeeze(2) - y).square().mean(dim=1)
        ce = F.cross_entropy(out.reshape(-1, self.out), y.reshape(-1), reduction="none")
        return _per_replica_mean(ce, out.shape[0])


# ---- the registry -------------------------------------------------------------------------

def _quadratic(data, device, **kw):
    return Quadratic(device=device, **kw)


def _rosenbrock(data, device, **kw):
    return Rosenbrock(device=device, **kw)


PROBLEMS: dict[str, Callable[..., Problem]] = {
    "quadratic": _quadratic,
    "rosenbrock": _rosenbrock,
    "logistic_regression": LogisticRegression,
    "mlp": MLP,
    "digits_cnn": DigitsCNN,
    "char_transformer": CharTransformer,
    "transformer_lm": TransformerLM,
    "gru_regressor": GRURegressor,
    "matrix_factorization": MatrixFactorization,
    "autoencoder": Autoencoder,
    "residual_mlp": ResidualMLP,
}


def build_problem(model: str, model_args: dict, data: str | None, data_args: tuple,
                  device: torch.device) -> Problem:
    """Build the problem `model` on data source `data` (None for synthetic objectives)."""
    try:
        factory = PROBLEMS[model]
    except KeyError:
        raise ValueError(f"unknown model {model!r} (known: {', '.join(sorted(PROBLEMS))})") \
            from None
    source = load_source(data, data_args) if data is not None else None
    return factory(source, device, **model_args)

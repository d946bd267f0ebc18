"""The shell of staged exported optimizers (`dsl.export.group`): real code, inlined by source.

A staged module's class holds `runtime_shell.OptimizerShell`'s methods except those named in
`REPLACED`, and the methods of `GroupShell` below in their place; the functions in
`INLINED` are copied into the module too, with the whole-group reductions of
`dsl.model_ops` and the Rademacher and Hutchinson functions of `dsl.context` (their source,
annotations dropped), so that the file still needs only torch.

How a step runs, per param group: every parameter with a gradient gets its values (the
parameter, the gradient, the state as stored, the shape scalars, the Hessian estimate);
then stage 0 runs for each parameter, barrier 0 once for the group (a reduction over all
its parameters, or a call of the closure at the perturbed parameters), stage 1, ... The last
stage gives the step and the new state; only then are the state and the parameters written.
The Hessian estimates of all groups are computed before any group's grad_at moves a
parameter (a Hessian-vector product needs the graph of the closure's backward intact).
"""

import torch

from .runtime_shell import OptimizerShell, _betas_tuple

REPLACED = ("__setstate__", "step", "_step_group")
INLINED = ("_stored_shape", "_narrow", "_grad_at", "_group_value", "_save_generator",
           "_load_generator")

# ---- supplied by each staged module; placeholders here, never inlined -------------------------

_STATE_KEYS: tuple = ()
_HYPER_NAMES: tuple = ()
_BETA_NAMES: tuple = ()
_LOW_PRECISION = (torch.bfloat16, torch.float16)
_SLOT_KINDS: tuple = ()
_NEEDS: tuple = ()
_SHAPE_READS: tuple = ()
_READS_HESS = False
_READS_LOSS = False
_EAGER = False
_STAGES: tuple = ()
_BARRIERS: tuple = ()
RULE_NAME = ""


def _scalars(values: list) -> torch.Tensor:
    raise NotImplementedError("defined by each exported module")


def _compiled_stage(k: int):
    raise NotImplementedError("defined by each staged module")


def _update_param(*tensors_and_scalars: object) -> None:
    raise NotImplementedError("defined by each per-tensor staged module")


def _update_foreach(*lists_and_scalars: object) -> None:
    raise NotImplementedError("defined by each per-tensor staged module")


def global_sum(lead: int, xs: list, params: list) -> torch.Tensor:
    raise NotImplementedError("inlined from dsl.model_ops")


def global_norm(lead: int, xs: list, params: list) -> torch.Tensor:
    raise NotImplementedError("inlined from dsl.model_ops")


def rademacher(shapes: list, generator: torch.Generator, dtype: torch.dtype,
               device: torch.device) -> list:
    raise NotImplementedError("inlined from dsl.context")


def hutchinson(grads: list, params: list, z: list) -> list:
    raise NotImplementedError("inlined from dsl.context")


# ---- inlined ---------------------------------------------------------------------------------

class GroupShell(OptimizerShell):
    """The methods a staged optimizer has instead of `OptimizerShell`'s `REPLACED` ones."""

    def __getstate__(self):
        state = super().__getstate__()
        if _READS_HESS:  # torch keeps defaults, state and param groups only
            state = dict(state, hessian_seed=self._hessian_seed,
                         hessian_generator=self._hessian_generator.get_state())
        return state

    def __setstate__(self, state):
        state = dict(state)
        seed = state.pop("hessian_seed", 0)
        generator = state.pop("hessian_generator", None)
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("compile", False)
            group.setdefault("maximize", False)
        # unpickled: set the generator up again (load_state_dict calls this too, with the
        # generator in place and its state restored by _load_generator)
        if _READS_HESS and "_hessian_generator" not in self.__dict__:
            self._hessian_setup(seed)
        if generator is not None:
            self._hessian_generator.set_state(generator)

    @torch.no_grad()
    def step(self, closure=None):
        """Performs a single optimization step.

        Args:
            closure: a callable that zeroes the gradients, re-evaluates the model, calls
                backward and returns the loss (required when the rule reads the loss, the
                Hessian estimate or grad_at; see the class docstring).
        """
        name = type(self).__name__
        if closure is None and _NEEDS:
            raise RuntimeError(
                f"{name} (rule {RULE_NAME!r}) reads {', '.join(_NEEDS)}, which only a closure "
                f"can give: call step(closure) with a closure that zeroes the gradients, "
                f"computes the loss, calls " + ("loss.backward(create_graph=True)"
                                                if _READS_HESS else "loss.backward()")
                + " and returns the loss (as for torch.optim.LBFGS)")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        value = None
        if _READS_LOSS:
            if loss is None:
                raise RuntimeError(f"{name} (rule {RULE_NAME!r}) reads the loss, but the "
                                   f"closure returned None; return the loss from it")
            value = float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
        groups = [self._prepare_group(i, group, value) for i, group in
                  enumerate(self.param_groups)]
        for index, (group, entries) in enumerate(zip(self.param_groups, groups)):
            if entries:
                self._step_group(index, group, entries, closure)
        return loss

    def _prepare_group(self, index, group, loss):
        """The values of every parameter of `group` that has a gradient."""
        name = type(self).__name__
        values = [float(group["lr"]), 0.0]
        if _BETA_NAMES:
            betas = _betas_tuple(group["betas"])
        for hyper in _HYPER_NAMES:
            if hyper in _BETA_NAMES:
                values.append(float(betas[_BETA_NAMES.index(hyper)]))
            else:
                values.append(float(group[hyper]))
        if _READS_LOSS:
            values.append(-loss if group["maximize"] else loss)
        sign = -1.0 if group["maximize"] else 1.0
        scalars = {}
        entries = []
        for p in group["params"]:
            g = self._gradient(p, index)
            if g is None:
                continue
            state = self.state[p]
            low = p.dtype in _LOW_PRECISION
            cdtype = torch.float32 if low else p.dtype
            if not state:
                state["step"] = 0
                for key, kind in zip(_STATE_KEYS, _SLOT_KINDS):
                    state[key] = torch.zeros(_stored_shape(kind, p.shape), dtype=cdtype,
                                             device=p.device)
            for key, kind in zip(_STATE_KEYS, _SLOT_KINDS):
                stored = _stored_shape(kind, p.shape)
                if tuple(state[key].shape) != stored:
                    raise RuntimeError(
                        f"{name}: the state {key!r} of a parameter of shape {tuple(p.shape)} "
                        f"has shape {tuple(state[key].shape)}, but the rule keeps it as "
                        f"{kind} state, of shape {stored} (was the state dict saved by "
                        f"another optimizer or rule?)")
            state["step"] += 1
            t = state["step"]
            if t not in scalars:
                values[1] = float(t)
                scalars[t] = _scalars(values)
            g = g.detach()
            g = g if g.dtype == p.dtype else g.to(p.dtype)
            g = torch.neg(g) if group["maximize"] else g
            V = {"w": p.float() if low else p, "g": g.float() if low else g}
            for k, key in enumerate(_STATE_KEYS):
                V[f"s{k}"] = state[key]
            dims = (p.shape[0] if p.dim() >= 1 else 1, 1, p.numel())
            if p.dim() >= 2:
                dims = (dims[0], p.numel() // dims[0], dims[2])
            for shape_name in _SHAPE_READS:
                value = dims[("rows", "cols", "numel").index(shape_name)]
                V[shape_name] = torch.tensor(value, dtype=cdtype, device=p.device)
            S = scalars[t].to(dtype=cdtype, device=p.device)
            V["F"] = scalars[t]
            entries.append((p, V, S, state))
        if entries and (_READS_HESS or _BARRIERS):
            kinds = {(p.device, p.dtype) for p, _, _, _ in entries}
            if len(kinds) > 1:
                raise RuntimeError(f"{name} (rule {RULE_NAME!r}) computes values over a whole "
                                   f"param group; the parameters of param group {index} must "
                                   f"share one device and dtype, not {sorted(map(str, kinds))}")
        if entries and _READS_HESS:
            params = [e[0] for e in entries]
            # a gradient without a graph does not depend on any parameter: its row of the
            # Hessian (and, by symmetry, its column) is zero; none with a graph: no
            # create_graph
            linked = [i for i, p in enumerate(params) if p.grad.requires_grad]
            if not linked:
                raise RuntimeError(
                    f"{name} (rule {RULE_NAME!r}) reads hess, a Hessian-vector product: "
                    f"the closure's backward must keep its graph, "
                    f"loss.backward(create_graph=True)")
            z = rademacher([p.shape for p in params], self._hessian_generator,
                           params[0].dtype, params[0].device)
            with torch.enable_grad():
                hz = hutchinson([params[i].grad for i in linked], [params[i] for i in linked],
                                [z[i] for i in linked])
            h = [torch.zeros_like(p) for p in params]
            for i, hi in zip(linked, hz):
                h[i] = hi
            for (p, V, _, _), hp in zip(entries, h):
                hp = hp.detach() * sign
                V["hess"] = hp.float() if p.dtype in _LOW_PRECISION else hp
        return entries

    def _hessian_setup(self, seed):
        """The optimizer's own generator of Rademacher vectors, saved in its state dict."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"hessian_seed must be an int, not {type(seed).__name__}")
        self._hessian_seed = seed
        self._hessian_generator = torch.Generator().manual_seed(seed)
        self.register_state_dict_post_hook(_save_generator)
        self.register_load_state_dict_pre_hook(_load_generator)

    def _step_group(self, index, group, entries, closure):
        compiled = group["compile"]
        if _EAGER and not compiled:
            self._step_eager(group, entries)
            return
        for k, (fn, inputs, outputs) in enumerate(_STAGES):
            if k:
                op, arg, result = _BARRIERS[k - 1]
                xs = [V[arg] if isinstance(arg, str) else S[arg] for _, V, S, _ in entries]
                for (_, V, _, _), value in zip(entries, _group_value(
                        self, op, xs, entries, closure, -1.0 if group["maximize"] else 1.0)):
                    V[result] = value
            run = _compiled_stage(k) if compiled else fn
            results = [run(*[V[n] for n in inputs], S) for _, V, S, _ in entries]
            for (_, V, _, _), values in zip(entries, results):
                V.update(zip(outputs, values))
        for (p, V, _, state), (step, *news) in zip(entries, results):
            w = V["w"]
            for key, kind, new in zip(_STATE_KEYS, _SLOT_KINDS, news):
                if new is not None:
                    state[key].copy_(_narrow(kind, new, w.shape))
            if p.dtype in _LOW_PRECISION:
                p.copy_(w - step)
            else:
                p.sub_(step)


    def _step_eager(self, group, entries):
        """A rule without whole-group steps: the in-place updaters of the per-tensor form,
        per parameter or (foreach) per device, dtype and step count."""
        foreach = group["foreach"]
        buckets = {}
        for p, V, _, state in entries:
            # one bucket per step count: V["F"] is the same tensor for the same count
            key = (p.device, p.dtype, id(V["F"])) if foreach is not False else id(p)
            bucket = buckets.setdefault(key, [])
            bucket.append((p, V, [state[k] for k in _STATE_KEYS]))
        for bucket in buckets.values():
            p0, V0, _ = bucket[0]
            F = V0["F"].tolist()
            shapes = [[V[n] for _, V, _ in bucket] for n in _SHAPE_READS]
            use_foreach = foreach if foreach is not None else p0.device.type == "cuda"
            low = p0.dtype in _LOW_PRECISION
            if use_foreach:
                ws = [V["w"] for _, V, _ in bucket]
                states = [list(s) for s in zip(*[st for _, _, st in bucket])] or [
                    [] for _ in _STATE_KEYS]
                _update_foreach(ws, [V["g"] for _, V, _ in bucket], *states, *shapes, F)
                if low:
                    torch._foreach_copy_([p for p, _, _ in bucket], ws)
                continue
            for (p, V, st), *shape in zip(bucket, *shapes):
                _update_param(V["w"], V["g"], *st, *shape, F)
                if low:
                    p.copy_(V["w"])


def _stored_shape(kind, shape):
    """The storage shape of a state slot of kind full, row, col or scalar (dsl.slots)."""
    if kind == "full" or len(shape) == 0:
        return tuple(shape)
    if kind == "row":
        return (shape[0],) + (1,) * (len(shape) - 1)
    if kind == "col":
        return (1,) + tuple(shape[1:])
    return (1,) * len(shape)


def _narrow(kind, value, shape):
    """A slot's new value (of the parameter's shape, or broadcasting to it) as stored: the
    first entry along every axis the storage drops (the rule keeps it constant there)."""
    full = value.expand(shape) if value.shape != shape else value
    if kind == "full" or len(shape) == 0:
        return full
    keep = _stored_shape(kind, shape)
    return full[tuple(slice(None) if k == d else slice(0, 1) for k, d in zip(keep, shape))]


def _grad_at(opt, entries, es, closure, sign):
    """The gradient of the closure's loss at w + e for every parameter of `entries`: the
    group's parameters are moved, the closure is called once, and the parameters and every
    gradient of the optimizer are restored exactly."""
    if closure is None:
        raise RuntimeError(f"{type(opt).__name__} (rule {RULE_NAME!r}) calls grad_at, which "
                           f"needs step(closure)")
    every = [p for group in opt.param_groups for p in group["params"]]
    firsts = [p.grad for p in every]
    kept = [None if g is None else g.detach().clone() for g in firsts]
    params = [p for p, _, _, _ in entries]
    saved = [p.detach().clone() for p in params]
    for p, e in zip(params, es):
        p.add_(e.to(p.dtype).expand(p.shape))
    try:
        with torch.enable_grad():
            closure()
        out = []
        for p, (_, V, _, _) in zip(params, entries):
            g = torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
            g = g * sign if sign != 1.0 else g
            out.append(g.to(V["w"].dtype))
    finally:
        for p, w in zip(params, saved):
            p.copy_(w)
        for p, g, k in zip(every, firsts, kept):
            if g is not None and p.grad is g:
                g.copy_(k)
            else:
                p.grad = g
    return out


def _group_value(opt, op, xs, entries, closure, sign):
    """A whole-group op's value for every parameter of `entries`."""
    ws = [V["w"] for _, V, _, _ in entries]
    if op == "grad_at":
        return _grad_at(opt, entries, [x.expand(w.shape) for x, w in zip(xs, ws)], closure,
                        sign)
    value = (global_sum if op == "global_sum" else global_norm)(0, xs, ws)
    return [value] * len(entries)


def _save_generator(opt, state_dict):
    """A state dict hook: the Hessian generator's state goes with the optimizer's."""
    state_dict["hessian_generator"] = opt._hessian_generator.get_state()
    return state_dict


def _load_generator(opt, state_dict):
    """A load hook: the Hessian generator continues where the saved one stopped."""
    state_dict = dict(state_dict)
    saved = state_dict.pop("hessian_generator", None)
    if saved is not None:
        opt._hessian_generator.set_state(saved)
    return state_dict

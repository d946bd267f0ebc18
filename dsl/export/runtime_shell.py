"""The shell of every exported optimizer: real code, linted here and inlined by source.

`dsl.export.inline` copies the body of `OptimizerShell` into each exported class (after the
generated ``__init__``, which calls ``self._setup``) and the functions below it into the
module, so that the exported file needs nothing but torch. The shell is the torch.optim
contract (param groups, betas, closures, state dicts, validation with torch's messages);
the rule itself arrives through the names each exported module defines (below, as
placeholders that are never inlined): the scalar section ``_scalars``, the updaters
``_update_param`` / ``_update_foreach`` / ``_compiled_update`` and the constants
``_STATE_KEYS``, ``_HYPER_NAMES``, ``_BETA_NAMES``, ``_DEFAULT_BETAS``, ``_RENAMED``,
``_CHECKED`` and ``_LOW_PRECISION``.

Inlined source must run on every Python that torch 2.1 supports: no annotations that
Python would have to evaluate beyond builtins and torch.
"""

import torch

INLINED = ("OptimizerShell", "_refuse_renamed", "_check_ranges", "_number", "_betas_tuple")
"""What an exported module copies from here, in this order."""

# ---- supplied by each exported module; placeholders here, never inlined ----------------------

_STATE_KEYS: tuple = ()
_HYPER_NAMES: tuple = ()
_BETA_NAMES: tuple = ()
_DEFAULT_BETAS: tuple = ()
_RENAMED: dict = {}
_CHECKED: dict = {}
_LOW_PRECISION = (torch.bfloat16, torch.float16)


def _scalars(values: list) -> torch.Tensor:
    raise NotImplementedError("defined by each exported module")


def _update_param(*tensors_and_scalars: object) -> None:
    raise NotImplementedError("defined by each exported module")


def _update_foreach(*lists_and_scalars: object) -> None:
    raise NotImplementedError("defined by each exported module")


def _compiled_update():
    raise NotImplementedError("defined by each exported module")


# ---- inlined ---------------------------------------------------------------------------------

class OptimizerShell(torch.optim.Optimizer):
    """The methods of every exported optimizer class (its ``__init__`` is generated)."""

    def _setup(self, params, lr, hyper, betas, maximize, foreach, compile):
        lr = _number("lr", lr)
        if not 0.0 <= lr:  # NaN too
            raise ValueError(f"Invalid learning rate: {lr}")
        defaults = {"lr": lr}
        hyper = {name: _number(name, value) for name, value in hyper.items()}
        if _BETA_NAMES:
            given = tuple(hyper.pop(name) for name in _BETA_NAMES)
            if betas is not None:
                betas = _betas_tuple(betas)
                declared = _DEFAULT_BETAS
                if any(b != d and b != x for b, d, x in zip(given, declared, betas)):
                    raise ValueError(f"pass either betas or {', '.join(_BETA_NAMES)}, not both")
                given = betas
            defaults["betas"] = given
        elif betas is not None:
            raise TypeError("this rule has no beta1, beta2, ... hyperparameters; betas is not "
                            "an argument of it")
        defaults.update(hyper)
        _check_ranges(defaults)
        defaults["maximize"] = bool(maximize)
        defaults["foreach"] = foreach
        defaults["compile"] = bool(compile)
        super().__init__(params, defaults)

    def add_param_group(self, param_group):
        if isinstance(param_group, dict):
            _refuse_renamed(type(self).__name__, param_group, "a param group")
        # Accept beta1=..., beta2=... in a param group as well as betas=(...).
        if _BETA_NAMES and isinstance(param_group, dict) and any(
                name in param_group for name in _BETA_NAMES):
            param_group = dict(param_group)
            betas = list(_betas_tuple(param_group.get("betas", self.defaults["betas"])))
            for i, name in enumerate(_BETA_NAMES):
                if name in param_group:
                    betas[i] = _number(name, param_group.pop(name))
            param_group["betas"] = tuple(betas)
        if isinstance(param_group, dict):
            _check_ranges(param_group)
        super().add_param_group(param_group)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("compile", False)
            group.setdefault("maximize", False)

    @torch.no_grad()
    def step(self, closure=None):
        """Performs a single optimization step.

        Args:
            closure: a callable that re-evaluates the model and returns the loss (optional).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            self._step_group(index, group)
        return loss

    def _gradient(self, p, index):
        """`p`'s gradient, or None when `p` takes no step (no gradient, no entries); a
        sparse gradient or a complex parameter is refused."""
        g = p.grad
        if g is None:
            return None
        if g.is_sparse:
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients "
                               f"(param group {index}); use dense gradients, e.g. "
                               f"torch.nn.Embedding(..., sparse=False)")
        if torch.is_complex(p):
            raise RuntimeError(f"{type(self).__name__} does not support complex "
                               f"parameters (param group {index})")
        return None if p.numel() == 0 else g

    def _step_group(self, index, group):
        values = [float(group["lr"]), 0.0]
        if _BETA_NAMES:
            betas = _betas_tuple(group["betas"])
        for name in _HYPER_NAMES:
            if name in _BETA_NAMES:
                values.append(float(betas[_BETA_NAMES.index(name)]))
            else:
                values.append(float(group[name]))
        scalars = {}
        buckets = {}
        for p in group["params"]:
            g = self._gradient(p, index)
            if g is None:
                continue
            state = self.state[p]
            cdtype = torch.float32 if p.dtype in _LOW_PRECISION else p.dtype
            if not state:
                state["step"] = 0
                for key in _STATE_KEYS:
                    state[key] = torch.zeros_like(p, dtype=cdtype,
                                                  memory_format=torch.preserve_format)
            state["step"] += 1
            t = state["step"]
            if t not in scalars:
                values[1] = float(t)
                scalars[t] = _scalars(values)
            key = (p.device, p.dtype, t)
            bucket = buckets.setdefault(key, ([], [], [[] for _ in _STATE_KEYS]))
            bucket[0].append(p)
            g = g if g.dtype == p.dtype else g.to(p.dtype)
            bucket[1].append(torch.neg(g) if group["maximize"] else g)
            for lst, skey in zip(bucket[2], _STATE_KEYS):
                lst.append(state[skey])
        for (device, dtype, t), (params, grads, states) in buckets.items():
            if group["compile"]:
                # 0-d parameters take the eager path: torch.compile drops in-place updates
                # of 0-d float64 inputs (seen with torch 2.13 on CPU).
                traced = [i for i, p in enumerate(params) if p.dim() > 0]
                if traced:
                    cdtype = torch.float32 if dtype in _LOW_PRECISION else dtype
                    S = scalars[t].to(dtype=cdtype, device=device)
                    _compiled_update()([params[i] for i in traced], [grads[i] for i in traced],
                                       *[[s[i] for i in traced] for s in states], S)
                if len(traced) == len(params):
                    continue
                rest = [i for i, p in enumerate(params) if p.dim() == 0]
                params, grads = [params[i] for i in rest], [grads[i] for i in rest]
                states = [[s[i] for i in rest] for s in states]
            F = scalars[t].tolist()
            foreach = group["foreach"] and not group["compile"]
            if foreach is None:
                foreach = device.type == "cuda"
            if foreach:
                if dtype in _LOW_PRECISION:
                    w = [p.float() for p in params]
                    _update_foreach(w, [g.float() for g in grads], *states, F)
                    torch._foreach_copy_(params, w)
                else:
                    _update_foreach(params, grads, *states, F)
                continue
            for i, p in enumerate(params):
                tensors = [s[i] for s in states]
                if dtype in _LOW_PRECISION:
                    w = p.float()
                    _update_param(w, grads[i].float(), *tensors, F)
                    p.copy_(w)
                else:
                    _update_param(p, grads[i], *tensors, F)

    def load_state_dict(self, state_dict):
        """Loads the optimizer state; the float32 state of bfloat16/float16 parameters is
        restored at full precision (torch's loader casts state to the parameter's dtype).
        A state dict of another optimizer (other state names or hyperparameters) is refused
        with a ValueError naming what is missing and what is extra."""
        self._check_loadable(state_dict)
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # state dicts of exports without these keys
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("compile", False)
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        for saved, group in zip(saved_groups, self.param_groups):
            for saved_id, p in zip(saved["params"], group["params"]):
                entry = saved_state.get(saved_id)
                if entry is None or p not in self.state:
                    continue
                cdtype = torch.float32 if p.dtype in _LOW_PRECISION else p.dtype
                for key in _STATE_KEYS:
                    value = entry.get(key)
                    if isinstance(value, torch.Tensor):
                        self.state[p][key] = value.to(device=p.device, dtype=cdtype, copy=True)

    def _check_loadable(self, state_dict):
        name = type(self).__name__
        expected = (*_STATE_KEYS, "step")
        for pid, entry in dict(state_dict.get("state", {})).items():
            keys = list(entry) if isinstance(entry, dict) else []
            missing = [k for k in expected if k not in keys]
            extra = [k for k in keys if k not in expected]
            if missing or extra:
                raise ValueError(
                    f"cannot load this state dict into {name}: the state of parameter {pid} "
                    f"lacks {', '.join(missing) or 'nothing'} and has "
                    f"{', '.join(map(str, extra)) or 'nothing'} extra; {name} keeps "
                    f"{', '.join(expected)} per parameter (was it saved by another "
                    f"optimizer or rule?)")
        required = ["lr"] + (["betas"] if _BETA_NAMES else []) + [
            n for n in _HYPER_NAMES if n not in _BETA_NAMES]
        for i, group in enumerate(state_dict.get("param_groups", [])):
            missing = [k for k in required if k not in group]
            if missing:
                extra = sorted(str(k) for k in group if k not in self.defaults
                               and k not in ("params", "initial_lr"))
                raise ValueError(
                    f"cannot load this state dict into {name}: param group {i} lacks "
                    f"{', '.join(missing)}" + (f" and has {', '.join(extra)} extra" if extra
                                               else "")
                    + " (was it saved by another optimizer or rule?)")
            _refuse_renamed(name, group, f"param group {i} of the state dict")


def _refuse_renamed(name, group, where):
    """A conventional key (weight_decay, momentum, ...) that this rule renamed or dropped
    would be ignored silently; refuse it instead."""
    for old, new in _RENAMED.items():
        if old in group:
            if new is None:
                raise ValueError(f"{where} sets {old}, which {name} does not use (the rule "
                                 f"never reads it); remove it")
            raise ValueError(f"{where} sets {old}, but {name}'s coefficient named {old} in "
                             f"the rule is not a {old} in torch's sense and is called {new}; "
                             f"set {new} to change it (see the module docstring)")


def _check_ranges(values):
    """Refuse out-of-range values as torch.optim does (Invalid ... value: ...)."""
    if _BETA_NAMES and "betas" in values:
        for i, b in enumerate(_betas_tuple(values["betas"])):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b}")
    for name, check in _CHECKED.items():
        if name not in values:
            continue
        value = _number(name, values[name])
        kind, label = check.split(":", 1)
        if not 0.0 <= value or (kind == "unit" and not value < 1.0):
            raise ValueError(f"Invalid {label}: {value}")


def _number(name, value):
    """A hyperparameter value as a float (0-d tensors are accepted, as torch does for lr)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a single number, got a tensor of shape "
                             f"{tuple(value.shape)}")
        value = value.item()
    return float(value)


def _betas_tuple(betas):
    try:
        betas = tuple(betas)
    except TypeError:
        raise TypeError(f"betas must be a tuple of {len(_BETA_NAMES)} numbers") from None
    if len(betas) != len(_BETA_NAMES):
        raise ValueError(f"betas must have {len(_BETA_NAMES)} values "
                         f"({', '.join(_BETA_NAMES)}), got {len(betas)}")
    return tuple(_number(name, b) for name, b in zip(_BETA_NAMES, betas))

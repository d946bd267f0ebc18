"""Export: a rule as the source of a standalone, drop-in `torch.optim.Optimizer` module.

    >>> source = export_module(program, "MyAdam", provenance="seed 'adam'")
    >>> open("my_adam.py", "w").write(source)           # imports torch and nothing else
    >>> MyAdam = optimizer_class(program)               # or import it in memory

The generated module holds one `torch.optim.Optimizer` subclass:

* constructor ``(params, lr=<default>, <each hyperparameter by name>=<default>, *,
  betas=None, maximize=False, foreach=None, compile=False)``; where the rule has
  ``beta1, beta2, ...`` the param groups carry them as one ``betas`` tuple, as torch's
  optimizers do (so schedulers that cycle ``betas[0]`` work), and ``betas=(...)`` is accepted;
* hyperparameters are named as `dsl.roles.export_names` decides: a torch convention name
  (``weight_decay``, ``beta1``..., ``momentum``, ``eps``) only where the rule still uses it in
  that role, else ``c_<name>``; one the rule never reads is dropped. A param group (or a
  loaded state dict) that sets a renamed or dropped name is refused, since the rule would
  ignore it;
* values are checked as torch.optim.Adam checks them, with its messages: ``lr`` NaN or
  negative, betas outside [0, 1), negative ``eps``, ``weight_decay`` or ``momentum``;
  ``maximize=True`` runs the rule on -g;
* ``step(closure=None)`` with torch's closure semantics; parameters without a gradient are
  skipped; sparse gradients and complex parameters are refused with a clear message;
* per-parameter state: the rule's state tensors (zeros at the first step, stored under the
  rule's state names) and ``step``, the parameter's own 1-based step count ``t``;
* three paths computing the same rule: per parameter (the default on CPU), ``foreach``
  (``torch._foreach_*`` over all parameters of a group; the default when they are all on
  CUDA) and ``compile=True`` (one ``torch.compile``d function for a group);
* float64 and float32 parameters are updated in their own dtype; bfloat16 and float16
  parameters keep their state in float32, the rule runs in float32 and the parameter is
  rounded once per step;
* ``state_dict()`` / ``load_state_dict()`` round trip exactly (float32 state of low-precision
  parameters included, which torch's loader would otherwise cast down); a state dict of
  another optimizer (other state names, missing hyperparameters) is a ValueError naming what
  is missing and extra, at load time rather than as a KeyError at the next step.

Rules that reach beyond their tensor
------------------------------------
A rule that reads a context input (``loss``, ``hess``, ``rows``, ``cols``, ``numel``), calls
a whole-group op (``global_sum``, ``global_norm``, ``grad_at``) or keeps factored state is
exported in *stages* (`group`, `runtime_group`): per param group and step, each stage runs
for every parameter, the whole-group op between two stages runs once for the group (the
reductions are `dsl.model_ops`' own code, copied in), and parameters and state are written
after the last stage. Such a rule follows `dsl.run_group_step` with the group as given:

* ``step(closure)`` is required when the rule reads ``loss``, ``hess`` or calls ``grad_at``
  (closure protocol of torch.optim.LBFGS: zero the gradients, compute the loss, backward,
  return the loss); without a closure, a RuntimeError names the optimizer and what it reads;
* ``hess``: the closure must call ``loss.backward(create_graph=True)`` (else a RuntimeError
  says so); the Rademacher vectors come from the optimizer's own ``torch.Generator``, seeded
  by the constructor keyword ``hessian_seed`` (default 0), drawn once per group and step in
  parameter order, and saved in ``state_dict()``;
* ``grad_at(e)``: the group's parameters are moved by e, the closure is called once, and the
  parameters and every gradient are restored exactly; several grad_at statements are several
  calls, in order;
* factored slots are stored reduced in ``optimizer.state`` (a row slot of a 1000 x 500 matrix
  holds 1000 numbers), and saved and loaded so;
* ``maximize=True`` is the rule on the negated objective: -g, -loss, -hess, -grad_at;
* ``compile=True`` compiles each stage; per parameter and ``foreach`` run the stage
  functions (``foreach`` is the same per-tensor code), except for rules that only read the
  shape scalars or keep factored state, which keep the in-place updaters of both.

Every other rule is exported exactly as before this form existed (below).

How the rule becomes code
-------------------------
The program (dead statements dropped) is split by the checker's kinds:

* the *scalar section*, every statement whose arguments are all scalars (``lr``, ``t``,
  hyperparameters, constants: bias corrections, schedules). It runs once per group and step
  count on 0-d float64 tensors, so it follows IEEE-754 exactly as the interpreter does
  (``0 ** -1 == inf``, ``sqrt(-1)`` is NaN), in double precision as torch.optim computes its
  scalars; its results reach the tensor code as Python floats (eager paths) or as one 0-d
  tensor each in the parameter's compute dtype (compiled path);
* the *tensor section*, everything else, rendered three times: a pure function ``_rule``
  (what ``compile=True`` traces, and the clearest statement of the rule), and two eager
  updaters (per parameter and foreach) that write results into buffers that die at the same
  statement and into the state tensors directly, the way hand-written optimizers use
  in-place ops, so that the eager paths allocate little.

Reductions keep their reduced shape (``norm(x)`` is a 0-d or all-ones-shaped tensor) and
broadcast where they are used, instead of materialising the broadcast copy the interpreter
makes; their values are the same. Generated identifiers are positional (``x3``, ``s0``,
``F[2]``), so no name in a rule can collide with Python, torch or the generated code. Only
hyperparameters keep their names (or take ``c_`` names, above), as the constructor's
keywords; where Python would mangle one inside a class (``__x``), the constructor is defined
outside it. The rule's docstring and
source are embedded as string literals that read back exactly, whatever characters they hold.

The package
-----------
`analysis` (scalar and tensor sections; `interp` and `clip` lowered by their rewrite rules),
`lowering` (the eager paths' rewrites and in-place plan), `tables` (the code of each op in
each path, keyed by the op table), `render` (the functions of the module), `module` (the
module assembled, and imported in memory), `names` and `text` (identifiers and literals),
`inline` with `runtime_ops` and `runtime_shell` (the helpers and the optimizer shell: real,
linted modules whose source each export copies, so that the file needs only torch).

`tests/dsl/test_export.py` checks every path against the reference interpreter;
`tests/dsl/test_export_inputs.py` checks odd docstrings and names;
`tests/dsl/test_export_faithful.py` checks names, roles, maximize and validation;
`tests/dsl/test_export_completeness.py` checks that every op has code in every path;
`tests/dsl/test_closure_export.py` checks staged rules against `dsl.run_group_step` on a small
model with a real loss closure.
"""

from .module import export_module, optimizer_class
from .names import (
    _MODULE_NAMES as _MODULE_NAMES,  # for tests: names a class may not take
)
from .names import (
    DEFAULT_LR,
    RESERVED_HYPERPARAMETER_NAMES,
    ExportError,
    default_class_name,
)

__all__ = ["DEFAULT_LR", "RESERVED_HYPERPARAMETER_NAMES", "ExportError", "default_class_name",
           "export_module", "optimizer_class"]

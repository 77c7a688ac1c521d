"""PyTorch: check an ``nn.Module``'s gradients, or a function's, against finite differences.

Import it as ``fastgc.torch`` (``pip install "fastgc[torch]"``). Everything runs in float64
on private copies: the caller's module, tensors, ``.grad`` and modes are never touched.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import threading
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .._check import check
from .._errors import CostError, CostTypeError, InvalidInputError
from .._optional import import_optional
from .._result import CheckResult
from .._threads import interrupts_deferred, resolve_n_threads
from .._validation import exception_text

torch = import_optional("torch", "torch", purpose="fastgc.torch")

__all__ = ["check_function", "check_module"]


def check_module(
    module: "torch.nn.Module",
    closure: Callable[["torch.nn.Module"], "torch.Tensor"],
    *,
    n_threads: int | None = None,
    seed: int | None = None,
    **options: Any,
) -> CheckResult:
    """Check the gradients autograd gives for an ``nn.Module``'s parameters.

    The analytic gradients come from autograd on a float64 copy of the module, so its custom
    ``autograd.Function``s and hand-written backward code are what is checked; the numeric
    ones from evaluating ``closure`` on float64 copies with each parameter moved.

    Parameters
    ----------
    module : torch.nn.Module
        The module. Never modified: its parameters, buffers, ``.grad`` and training mode stay
        as they are. The check runs on deep copies, converted to float64 on the CPU, in the
        module's own mode (``train()`` or ``eval()``: put it in the mode to check).
    closure : callable
        ``closure(m) -> loss``: runs the copy ``m`` on your data and returns a scalar tensor,
        for example ``lambda m: F.cross_entropy(m(X), y)``. Floating tensors passed to
        ``m(...)`` are cast to float64; tensors the closure makes itself (targets, constants)
        must be float64 or be promoted by the arithmetic. A closure that calls
        ``loss.backward()`` itself (an optimizer closure) works too: the gradients it leaves
        in ``m``'s parameters are used.
    n_threads : int, optional
        How many evaluations run side by side, each on its own copy of the module (its
        buffers, such as batch-norm running statistics, reset after every evaluation), with
        torch's intra-op threads set to one meanwhile (restored afterwards); the closure must
        then keep no shared state of its own (counters, global random numbers). Default 1
        (or the :func:`fastgc.set_num_threads` default): evaluations one at a time, each using
        torch's own intra-op threads, which is usually faster, since torch holds the GIL
        between its kernels.
    seed : int, optional
        For a stochastic module (dropout in training mode): ``torch.manual_seed(seed)`` is
        called before every evaluation, so each draws the same masks. The evaluations then run
        one at a time. torch's global random state is restored after the check, seed or not.
    **options
        Any further keyword argument of :func:`fastgc.check` (``eps``, ``thresholds``,
        ``engine``, ``progress``, ...). ``executor="processes"`` (with ``n_workers=``) uses
        every core: the evaluations run in worker processes, each of which receives the
        module and the closure once and runs torch on one intra-op thread; your process
        keeps its torch thread setting.

    Returns
    -------
    CheckResult
        Parameters named as in ``module.named_parameters()`` (``"0.weight"``); only those
        with ``requires_grad`` are checked.

    Raises
    ------
    InvalidInputError
        ``module`` is not an ``nn.Module``, has no trainable parameters, or cannot be copied.
    CostError
        The closure raised, or did not return a float64 scalar tensor.

    Examples
    --------
    >>> import torch, fastgc.torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    >>> X = torch.randn(8, 3)
    >>> result = fastgc.torch.check_module(net, lambda m: (m(X) ** 2).mean(), progress=False)
    >>> result.verdict, list(result.per_parameter)[:2]
    (<Verdict.CORRECT: 'correct'>, ['0.weight', '0.bias'])
    """
    if not isinstance(module, torch.nn.Module):
        raise InvalidInputError(
            f"module must be a torch.nn.Module, got {type(module).__name__}"
        )
    if not callable(closure):
        raise InvalidInputError(
            "closure must be callable, closure(module) -> scalar loss tensor; got "
            f"{type(closure).__name__}"
        )
    with torch.random.fork_rng(devices=[]):  # torch's global generator left as it was
        return _check_module(module, closure, n_threads, seed, options)


def _check_module(
    module: "torch.nn.Module", closure: Callable[..., Any], n_threads: int | None,
    seed: int | None, options: dict[str, Any],
) -> CheckResult:
    template = _float64_copy(module)
    named = [(name, p) for name, p in template.named_parameters() if p.requires_grad]
    if not named:
        raise InvalidInputError(
            "module has no parameters with requires_grad=True: there is nothing to check"
        )
    names = [name for name, _ in named]
    params = {name: p.detach().numpy().copy() for name, p in named}
    buffers = _Buffers(template)
    reseed = None if seed is None else (lambda: torch.manual_seed(seed))

    if reseed is not None:
        reseed()
    grads, called_backward = _module_gradients(template, named, closure)
    buffers.restore(template)
    grad_mode = torch.enable_grad if called_backward else torch.no_grad
    replicas = _Replicas(template, names)

    def cost(p: dict[str, np.ndarray]) -> float:
        replica = replicas.acquire()
        try:
            replica.bind(p)
            with grad_mode():
                loss = _call_closure(closure, replica.module)
            return _loss_value(loss)
        finally:
            buffers.restore(replica.module)
            replicas.release(replica)

    if reseed is not None:
        n_threads = _serial(n_threads, "seed")
        options["reseed"] = reseed
    return _run_check(cost, params, grads, n_threads, options)


def check_function(
    fn: Callable[..., Any],
    *inputs: Any,
    dout: Any = None,
    seed: int = 0,
    n_threads: int | None = None,
    **options: Any,
) -> CheckResult:
    """Check the gradients autograd gives for ``fn`` with respect to its tensor inputs.

    The scalar checked is ``sum(out * dout)`` over ``fn``'s floating outputs, with a seeded
    random ``dout`` by default, so every component of the Jacobian-vector product that backward
    computes is exercised (as ``torch.autograd.gradcheck`` checks the whole Jacobian, but with
    2n evaluations in all, in parallel, and a report that says where).

    Parameters
    ----------
    fn : callable
        ``fn(*inputs)`` returning a tensor or a tuple of tensors; a custom
        ``torch.autograd.Function`` is passed as ``MyFunction.apply``.
    *inputs
        Its arguments. Floating tensors with ``requires_grad=True`` are checked (all floating
        tensors when none requires grad); other arguments are passed as they are. Checked and
        floating tensors are converted to float64 copies on the CPU; yours are not touched.
    dout : tensor, array or tuple of them, optional
        The upstream gradient, one per floating output. Default: seeded standard-normal values.
    seed : int, default 0
        Seed of the random ``dout``.
    n_threads : int, optional
        As for :func:`check_module`: default 1 evaluation at a time, using torch's intra-op
        threads; with more, ``fn`` must keep no shared state.
    **options
        Any further keyword argument of :func:`fastgc.check`.

    Returns
    -------
    CheckResult
        Inputs named by ``fn``'s signature (``forward``'s for an ``autograd.Function``), else
        ``input0``, ``input1``, ...

    Examples
    --------
    >>> import torch, fastgc.torch
    >>> class Cube(torch.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x ** 3
    ...     @staticmethod
    ...     def backward(ctx, grad):
    ...         (x,) = ctx.saved_tensors
    ...         return 3 * x ** 2 * grad
    >>> result = fastgc.torch.check_function(Cube.apply, torch.randn(5), progress=False)
    >>> result.verdict, list(result.per_parameter)
    (<Verdict.CORRECT: 'correct'>, ['x'])
    """
    if not callable(fn):
        raise InvalidInputError(f"fn must be callable, got {type(fn).__name__}")
    floating = [k for k, x in enumerate(inputs) if _is_float_tensor(x)]
    checked = [k for k in floating if inputs[k].requires_grad] or floating
    if not checked:
        raise InvalidInputError(
            "none of the inputs is a floating-point tensor: there is nothing to check"
        )
    names = _input_names(fn, len(inputs))
    arguments = [
        x.detach().to(device="cpu", dtype=torch.float64) if k in floating else x
        for k, x in enumerate(inputs)
    ]
    params = {names[k]: arguments[k].numpy().copy() for k in checked}

    def call(values: dict[str, Any]) -> list["torch.Tensor"]:
        given = list(arguments)
        for k in checked:
            given[k] = values[names[k]]
        try:
            out = fn(*given)
        except Exception as error:
            raise CostError(
                f"fn raised {type(error).__name__}: {exception_text(error)}"
            ) from error
        outputs = list(out) if isinstance(out, (tuple, list)) else [out]
        return [o for o in outputs if _is_float_tensor(o)]

    leaves = {names[k]: arguments[k].clone().requires_grad_(True) for k in checked}
    with torch.enable_grad():
        outputs = call(leaves)
        if not outputs:
            raise CostError("fn returned no floating-point tensor: there is nothing to check")
        low = [str(o.dtype) for o in outputs if o.dtype != torch.float64]
        if low:
            raise CostTypeError(
                f"fn returned {', '.join(low)} output(s) for float64 inputs: part of it runs in "
                "lower precision (an explicit .float() or dtype=torch.float32?); fastgc "
                "evaluates in float64"
            )
        douts = _upstream(dout, outputs, seed)
        total = sum((o * d).sum() for o, d in zip(outputs, douts))
        if not total.requires_grad:
            raise CostError(
                "fn's outputs do not depend on the checked inputs through autograd (was the "
                "computation done under torch.no_grad(), or detached?)"
            )
        analytic = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
    grads = {
        name: (np.zeros(params[name].shape) if g is None else g.detach().numpy().copy())
        for name, g in zip(leaves, analytic)
    }

    def cost(p: dict[str, np.ndarray]) -> float:
        with torch.no_grad():
            outputs = call({name: torch.from_numpy(value) for name, value in p.items()})
            return _loss_value(sum((o * d).sum() for o, d in zip(outputs, douts)), "fn")

    cost(params)  # says plainly what is wrong with fn's outputs, before the check starts
    return _run_check(cost, params, grads, n_threads, options)


# --- copies of the module ----------------------------------------------------------------------


def _float64_copy(module: "torch.nn.Module") -> "torch.nn.Module":
    try:
        replica = copy.deepcopy(module)
    except Exception as error:
        raise InvalidInputError(
            f"module cannot be deep-copied ({type(error).__name__}: {error}); fastgc checks a "
            "copy so that yours is left untouched"
        ) from error
    replica = replica.to(device="cpu", dtype=torch.float64)
    for p in replica.parameters():
        p.grad = None
    replica.register_forward_pre_hook(_float64_inputs_hook(), with_kwargs=True)
    return replica


def _float64_inputs_hook() -> Callable[..., tuple[tuple, dict]]:
    """A forward pre-hook casting floating tensor arguments to float64 on the CPU.

    The closure passes the same data tensors at every evaluation, so casts are remembered
    (keyed by the tensor, checked against its version counter); the hook is a function, which
    ``copy.deepcopy`` shares between the copies of the module rather than copying.
    """
    casts: dict[int, tuple[Any, int, Any]] = {}

    def cast(value: Any) -> Any:
        if not _is_float_tensor(value) or (
            value.dtype == torch.float64 and value.device.type == "cpu"
        ):
            return value
        entry = casts.get(id(value))
        if entry is not None and entry[0] is value and entry[1] == value._version:
            return entry[2]
        converted = value.detach().to(device="cpu", dtype=torch.float64)
        if len(casts) >= 64:
            casts.clear()
        casts[id(value)] = (value, value._version, converted)
        return converted

    def hook(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return tuple(cast(a) for a in args), {key: cast(v) for key, v in kwargs.items()}

    return hook


def _is_float_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point()


class _Buffers:
    """The module's buffers as they were, put back into a copy after every evaluation.

    Batch-norm in training mode updates its running statistics in place at every forward
    (without bumping their version counters), so they are copied back each time; each
    evaluation then starts from the module's own state, whatever ran before it.
    """

    def __init__(self, module: "torch.nn.Module") -> None:
        self.saved = {name: b.detach().clone() for name, b in module.named_buffers()}

    def restore(self, module: "torch.nn.Module") -> None:
        if not self.saved:
            return
        with torch.no_grad():
            for name, b in module.named_buffers():
                saved = self.saved.get(name)
                if saved is not None and b.shape == saved.shape:
                    b.copy_(saved)


class _Replica:
    def __init__(self, module: "torch.nn.Module", names: Sequence[str]) -> None:
        self.module = module
        lookup = dict(module.named_parameters())
        self.params = [(name, lookup[name]) for name in names]
        self.bound: Any = None

    def bind(self, p: dict[str, np.ndarray]) -> None:
        """Make the replica's parameters views of fastgc's working values (no copy)."""
        if p is self.bound:  # the same working row as last time: already bound
            return
        for name, param in self.params:
            param.data = torch.from_numpy(p[name])
        self.bound = p


class _Replicas:
    """Copies of the float64 module, one per evaluation running at the same time."""

    def __init__(self, template: "torch.nn.Module", names: Sequence[str]) -> None:
        self.template, self.names = template, list(names)
        self.free: list[_Replica] = []
        self.lock = threading.Lock()

    def acquire(self) -> _Replica:
        with self.lock:
            if self.free:
                return self.free.pop()
            return _Replica(copy.deepcopy(self.template), self.names)

    def release(self, replica: _Replica) -> None:
        with self.lock:
            self.free.append(replica)

    def __getstate__(self) -> dict[str, Any]:
        # Sent to worker processes (executor=): the template travels, the copies and the
        # lock are made anew there.
        return {"template": self.template, "names": self.names, "origin": os.getpid()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["template"], state["names"])  # type: ignore[misc]
        if state.get("origin") != os.getpid():
            _one_torch_thread_per_worker()


def _module_gradients(
    module: "torch.nn.Module", named: list, closure: Callable[..., Any]
) -> tuple[dict[str, np.ndarray], bool]:
    """Autograd's gradients at the module's own values, and whether the closure called
    backward itself."""
    with torch.enable_grad():
        loss = _call_closure(closure, module)
        _loss_value(loss)  # a float64 scalar, or a clear error
        called_backward = any(p.grad is not None for _, p in named)
        if called_backward:
            analytic = [p.grad for _, p in named]
        else:
            if not loss.requires_grad:
                raise CostError(
                    "the closure's loss does not depend on the parameters through autograd "
                    "(was it computed under torch.no_grad(), or detached?)"
                )
            analytic = list(torch.autograd.grad(loss, [p for _, p in named], allow_unused=True))
        if all(g is None for g in analytic):
            raise CostError(
                "the closure's loss does not depend on any parameter of the module it is "
                "given: use that module (lambda m: loss_fn(m(X), y)), not your own instance, "
                "which fastgc does not touch"
            )
    grads = {
        name: (np.zeros(tuple(p.shape)) if g is None else g.detach().numpy().copy())
        for (name, p), g in zip(named, analytic)
    }
    for _, p in named:
        p.grad = None
    return grads, called_backward


def _call_closure(closure: Callable[..., Any], module: "torch.nn.Module") -> Any:
    try:
        return closure(module)
    except Exception as error:
        raise CostError(
            f"the closure raised {type(error).__name__}: {exception_text(error)}"
        ) from error


def _loss_value(loss: Any, what: str = "the closure") -> float:
    if not isinstance(loss, torch.Tensor):
        raise CostTypeError(
            f"{what} must return a scalar torch tensor (the loss), got {type(loss).__name__}"
        )
    if loss.numel() != 1:
        raise CostTypeError(
            f"{what} returned a tensor of shape {tuple(loss.shape)}; it must return one scalar "
            "(did you forget .mean() or .sum()?)"
        )
    if loss.dtype != torch.float64:
        raise CostTypeError(
            f"{what} returned a {loss.dtype} loss, though the module was converted to float64: "
            "part of the computation runs in lower precision: a tensor made in the closure "
            "(targets, a constant) that is not float64, or a closure that calls your own "
            "module instead of the copy it is given?"
        )
    return float(loss.item())


# --- check_function helpers ----------------------------------------------------------------------


def _input_names(fn: Callable[..., Any], n: int) -> list[str]:
    """Names of ``fn``'s first ``n`` positional parameters (an autograd.Function's forward
    without ctx), else input0, input1, ..."""
    target: Any = fn
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
        target = owner.forward
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    if target is not fn and parameters and parameters[0].name == "ctx":
        parameters = parameters[1:]
    positional = [
        p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) >= n and all(p.kind is not p.VAR_POSITIONAL for p in parameters[:n]):
        return positional[:n]
    return [f"input{k}" for k in range(n)]


def _upstream(dout: Any, outputs: list["torch.Tensor"], seed: int) -> list["torch.Tensor"]:
    if dout is None:
        rng = np.random.default_rng(seed)
        return [torch.from_numpy(rng.standard_normal(tuple(o.shape))) for o in outputs]
    given = list(dout) if isinstance(dout, (tuple, list)) else [dout]
    if len(given) != len(outputs):
        raise InvalidInputError(
            f"dout must give one upstream gradient per floating output: fn returns "
            f"{len(outputs)}, dout has {len(given)}"
        )
    douts = []
    for k, (d, o) in enumerate(zip(given, outputs)):
        d = torch.as_tensor(np.asarray(d.detach().cpu() if isinstance(d, torch.Tensor) else d,
                                       dtype=np.float64))
        if tuple(d.shape) != tuple(o.shape):
            where = "dout" if len(outputs) == 1 else f"dout[{k}]"
            raise InvalidInputError(
                f"{where} has shape {tuple(d.shape)} but the output has shape {tuple(o.shape)}"
            )
        douts.append(d)
    return douts


# --- threads -----------------------------------------------------------------------------------


def _serial(n_threads: int | None, why: str) -> int:
    if n_threads not in (None, 1):
        raise InvalidInputError(
            f"{why}= reseeds torch's global generator before every evaluation, so evaluations "
            f"run one at a time; got n_threads={n_threads!r}"
        )
    return 1


def _run_check(
    cost: Callable[..., float], params: Any, grads: Any, n_threads: int | None,
    options: dict[str, Any],
) -> CheckResult:
    """fastgc.check with the thread set-up that suits torch.

    One evaluation thread (the default) runs in the serial Python engine, where torch's own
    intra-op threads use the cores inside each evaluation. Several run side by side in the
    parallel engine, with torch's intra-op threads at one meanwhile: torch's OpenMP pool inside
    fastgc's parallel region would oversubscribe the cores many times over.
    """
    count = resolve_n_threads(n_threads, unset=1)
    if count == 1:
        options.setdefault("engine", "python")
    # Only side-by-side evaluations oversubscribe the cores.
    with _torch_threads(limit=count > 1):
        return check(cost, params, grads, n_threads=count, **options)


def _one_torch_thread_per_worker() -> None:
    """torch's intra-op threads at one in a worker process, for as long as it lives.

    Called where a check's payload is unpacked in another process (once per worker): the
    workers share the cores, one evaluation on one core each, and torch's own pool of a
    thread per core in every worker would oversubscribe them as many times as there are
    workers. The caller's process is never changed.
    """
    if torch.get_num_threads() != 1:
        with interrupts_deferred():
            torch.set_num_threads(1)


@contextlib.contextmanager
def _torch_threads(limit: bool) -> Iterator[None]:
    """torch's intra-op threads at one (restored afterwards) when ``limit``."""
    if not limit:
        yield
        return
    saved = None
    try:
        # Ctrl-C cannot fall between the setting and its restoration.
        with interrupts_deferred():
            saved = torch.get_num_threads()
            torch.set_num_threads(1)
        yield
    finally:
        if saved is not None:
            with interrupts_deferred():
                torch.set_num_threads(saved)

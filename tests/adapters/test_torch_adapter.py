"""fastgc.torch with the real torch: modules, custom autograd.Functions, and what is left alone."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # in the test extra: a missing torch is a broken install

import fastgc  # noqa: E402
import fastgc.torch  # noqa: E402

F = torch.nn.functional


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * grad


class WrongScaledTanh(torch.autograd.Function):
    """y = tanh(x * s); backward forgets the factor s in ds's chain rule (a planted bug)."""

    @staticmethod
    def forward(ctx, x, s):
        y = torch.tanh(x * s)
        ctx.save_for_backward(x, s, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, s, y = ctx.saved_tensors
        local = grad * (1 - y**2)
        return local * s, (local * x).sum().reshape(s.shape) * 0.5  # should be without 0.5


class ScaledTanh(WrongScaledTanh):
    @staticmethod
    def backward(ctx, grad):
        x, s, y = ctx.saved_tensors
        local = grad * (1 - y**2)
        return local * s, (local * x).sum().reshape(s.shape)


class GatedLayer(torch.nn.Module):
    """A linear layer, batch norm and a custom Function with a scale parameter."""

    def __init__(self, function=ScaledTanh):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        self.norm = torch.nn.BatchNorm1d(3)
        self.scale = torch.nn.Parameter(torch.tensor([0.7]))
        self.function = function

    def forward(self, x):
        return self.function.apply(self.norm(self.linear(x)), self.scale)


def make_module(function=ScaledTanh):
    torch.manual_seed(0)
    module = GatedLayer(function)
    with torch.no_grad():
        module.norm.running_mean.fill_(0.25)
        module.norm.running_var.fill_(2.0)
        module.norm.weight.mul_(1.5)
    return module


X = torch.linspace(-2.0, 2.0, 24).reshape(6, 4)
TARGET = torch.linspace(-1.0, 1.0, 18).reshape(6, 3)


def closure(m):
    return ((m(X) - TARGET) ** 2).mean()


def state_bytes(module):
    """Bytes of every parameter, buffer and .grad, and the mode of every submodule."""
    tensors = {f"param {k}": v for k, v in module.named_parameters()}
    tensors.update({f"buffer {k}": v for k, v in module.named_buffers()})
    tensors.update({f"grad {k}": v.grad for k, v in module.named_parameters() if v.grad is not None})
    return (
        {k: (str(v.dtype), tuple(v.shape), v.detach().numpy().tobytes()) for k, v in tensors.items()},
        {k: (m.training, type(m).__name__) for k, m in module.named_modules()},
        {k: v.requires_grad for k, v in module.named_parameters()},
    )


def check_module(module, closure_=closure, **options):
    return fastgc.torch.check_module(module, closure_, progress=False, **options)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_a_correct_module_is_correct_and_left_exactly_as_it_was(mode):
    module = make_module()
    getattr(module, mode)()
    module.linear.weight.grad = torch.full((3, 4), 0.5)  # a .grad left over from training
    before = state_bytes(module)
    threads_before = torch.get_num_threads()
    result = check_module(module)
    assert result.verdict == "correct", str(result)
    assert list(result.per_parameter) == [  # named_parameters() order: own, then children's
        "scale", "linear.weight", "linear.bias", "norm.weight", "norm.bias"]
    assert state_bytes(module) == before
    assert module.norm.num_batches_tracked.item() == 0
    assert module.training is (mode == "train")
    assert torch.get_num_threads() == threads_before


def test_a_custom_function_with_a_wrong_backward_is_found_inside_a_module():
    result = check_module(make_module(WrongScaledTanh))
    assert result.verdict == "bug"
    assert result.worst_parameter().name == "scale"
    assert {k for k, p in result.per_parameter.items() if p.verdict == "bug"} == {"scale"}


@pytest.fixture
def torch_threads():
    saved = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(saved)


@pytest.mark.parametrize("function", [ScaledTanh, WrongScaledTanh])
def test_the_verdicts_are_the_same_at_one_and_two_threads(function, torch_threads):
    module = make_module(function)
    before = state_bytes(module)
    threads_before = torch.get_num_threads()
    one = check_module(module, n_threads=1)
    two = check_module(module, n_threads=2)
    assert (one.n_threads, one.engine, two.n_threads, two.engine) == (1, "python", 2, "cython")
    assert one.verdict == two.verdict == ("bug" if function is WrongScaledTanh else "correct")
    assert {k: p.verdict for k, p in one.per_parameter.items()} == {
        k: p.verdict for k, p in two.per_parameter.items()}
    # One evaluation at a time uses torch's own threads, whose reductions round differently.
    np.testing.assert_allclose(one.approx, two.approx, rtol=1e-3, atol=1e-8)
    assert torch.get_num_threads() == threads_before
    assert state_bytes(module) == before
    # With torch on one thread in both, every evaluation is the same computation: bitwise.
    torch_threads(1)
    np.testing.assert_array_equal(check_module(module, n_threads=1).approx,
                                  check_module(module, n_threads=2).approx)


class Counter(torch.nn.Module):
    """Adds a buffer that its forward increments in place: evaluations must not see it drift."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))
        self.register_buffer("calls", torch.zeros(1))

    def forward(self, x):
        self.calls += 1
        return (self.w * x).sum() + 1e-3 * self.calls.sum()


def test_buffers_updated_by_the_forward_are_reset_before_every_evaluation():
    module = Counter()
    result = check_module(module, lambda m: m(torch.ones(3)) ** 2, n_threads=2)
    assert result.verdict == "correct"
    assert module.calls.item() == 0


def test_float32_modules_are_checked_in_float64_and_inputs_cast():
    module = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    before = state_bytes(module)
    result = check_module(module, lambda m: F.cross_entropy(m(X), torch.tensor([0, 1] * 3)))
    assert result.verdict == "correct" and result.layout.dtype == np.float64
    assert list(result.per_parameter) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert module[0].weight.dtype == torch.float32
    assert state_bytes(module) == before


def test_frozen_parameters_are_not_checked():
    module = make_module()
    module.linear.requires_grad_(False)
    result = check_module(module)
    assert list(result.per_parameter) == ["scale", "norm.weight", "norm.bias"]
    assert not module.linear.weight.requires_grad


def test_an_optimizer_style_closure_that_calls_backward():
    module = make_module(WrongScaledTanh)

    def optimizer_closure(m):
        m.zero_grad()
        loss = closure(m)
        loss.backward()
        return loss

    result = check_module(module, optimizer_closure)
    assert result.verdict == "bug" and result.worst_parameter().name == "scale"
    assert module.linear.weight.grad is None


def test_dropout_needs_a_seed():
    torch.manual_seed(1)
    module = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Dropout(0.3), torch.nn.Linear(6, 1))
    with pytest.raises(fastgc.CostError, match="not deterministic"):
        check_module(module, lambda m: m(X).pow(2).mean())
    result = check_module(module, lambda m: m(X).pow(2).mean(), seed=3)
    assert result.verdict == "correct"
    with pytest.raises(fastgc.InvalidInputError, match="one at a time; got n_threads=2"):
        check_module(module, lambda m: m(X).pow(2).mean(), seed=3, n_threads=2)


def test_closure_mistakes_are_explained():
    module = make_module()
    own = copy.deepcopy(module).double()
    with pytest.raises(fastgc.CostError, match="does not depend on any parameter of the module it "
                                               "is given"):
        check_module(module, lambda m: own(X.double()).pow(2).mean())
    with pytest.raises(fastgc.CostTypeError, match=r"float32 loss.*closure that calls your own"):
        check_module(module, lambda m: closure(m).float())
    with pytest.raises(fastgc.CostTypeError, match=r"tensor of shape \(6, 3\).*\.mean\(\)"):
        check_module(module, lambda m: m(X))
    with pytest.raises(fastgc.CostTypeError, match="must return a scalar torch tensor"):
        check_module(module, lambda m: 1.0)
    with pytest.raises(fastgc.CostError, match="the closure raised RuntimeError"):
        check_module(module, lambda m: m(torch.ones(2, 7)).sum())
    with pytest.raises(fastgc.InvalidInputError, match="must be a torch.nn.Module"):
        check_module(lambda x: x, closure)
    with pytest.raises(fastgc.InvalidInputError, match="no parameters with requires_grad"):
        check_module(torch.nn.ReLU(), lambda m: m(X).sum())


# --- check_function ------------------------------------------------------------------------------


def test_check_function_on_custom_functions():
    x = torch.linspace(-1.0, 1.0, 7, dtype=torch.float32)
    good = fastgc.torch.check_function(Cube.apply, x, progress=False)
    assert good.verdict == "correct" and list(good.per_parameter) == ["x"]
    s = torch.tensor([0.8])
    args = (x.reshape(7, 1).repeat(1, 2), s)
    assert fastgc.torch.check_function(ScaledTanh.apply, *args, progress=False).verdict == "correct"
    bad = fastgc.torch.check_function(WrongScaledTanh.apply, *args, progress=False)
    assert bad.verdict == "bug" and bad.worst_parameter().name == "s"
    assert list(bad.per_parameter) == ["x", "s"]
    assert x.dtype == torch.float32 and not x.requires_grad


def test_check_function_checks_only_inputs_that_require_grad():
    w = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 3, dtype=torch.float64)
    before = (w.detach().numpy().tobytes(), x.numpy().tobytes(), w.grad)

    def affine(x, w, scale=2.0):
        return scale * x @ w, x.sum()  # a second floating output

    result = fastgc.torch.check_function(affine, x, w, 3.0, progress=False, n_threads=2)
    assert result.verdict == "correct" and list(result.per_parameter) == ["w"]
    assert (w.detach().numpy().tobytes(), x.numpy().tobytes(), w.grad) == before
    dout = (torch.ones(5, 2), torch.tensor(0.0))
    given = fastgc.torch.check_function(affine, x, w, dout=dout, progress=False)
    np.testing.assert_allclose(given.numerical_grads["w"], 2 * x.sum(0)[:, None].expand(3, 2),
                               rtol=1e-6)
    with pytest.raises(fastgc.InvalidInputError, match=r"dout has shape \(2,\)"):
        fastgc.torch.check_function(lambda x, w: x @ w, x, w, dout=torch.ones(2))
    with pytest.raises(fastgc.InvalidInputError, match="none of the inputs is a floating-point"):
        fastgc.torch.check_function(lambda n: n, 3)


def test_check_function_refuses_lower_precision_outputs():
    with pytest.raises(fastgc.CostTypeError, match=r"fn returned torch.float32 output\(s\) for "
                                                   r"float64 inputs"):
        fastgc.torch.check_function(lambda x: (x**2).float(), torch.randn(3), progress=False)


def test_the_global_random_state_is_left_as_it_was():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    module = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Dropout(0.3), torch.nn.Linear(6, 1))
    torch.manual_seed(5)
    check_module(module, lambda m: m(X).pow(2).mean(), seed=3)
    assert torch.equal(torch.rand(3), expected)


def test_check_module_runs_in_worker_processes_bitwise_as_local():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(),
                                torch.nn.Linear(5, 2)).double()
    X, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 2, (8,))
    before = copy.deepcopy(model.state_dict())

    def loss(m):
        return torch.nn.functional.cross_entropy(m(X), y)

    local = fastgc.torch.check_module(model, loss, progress=False)
    remote = fastgc.torch.check_module(model, loss, progress=False, executor="processes",
                                       n_workers=2)
    assert (remote.executor, remote.n_workers, remote.verdict) == ("processes", 2, "correct")
    assert remote.approx.tobytes() == local.approx.tobytes()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_each_worker_unpacks_the_module_once_and_runs_torch_on_one_thread(tmp_path):
    """Two workers share the cores, so each evaluates on one torch thread; the module reaches
    each worker once (one copy of it evaluated there, over all the worker's chunks); the
    caller's torch thread count is left as it was."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(30, 40), torch.nn.Tanh(),
                                torch.nn.Linear(40, 3)).double()
    X, y = torch.randn(32, 30, dtype=torch.float64), torch.randint(0, 3, (32,))
    log = tmp_path / "evaluations.txt"
    caller_threads = torch.get_num_threads()

    def loss(m):
        with open(log, "a") as handle:  # one line per evaluation: process, threads, copy
            handle.write(f"{os.getpid()} {torch.get_num_threads()} {id(m)}\n")
        return torch.nn.functional.cross_entropy(m(X), y)

    result = fastgc.torch.check_module(model, loss, progress=False, executor="processes",
                                       n_workers=2)
    assert (result.executor, result.n_workers, result.verdict) == ("processes", 2, "correct")
    assert torch.get_num_threads() == caller_threads
    lines = [line.split() for line in log.read_text().splitlines()]
    in_workers = [line for line in lines if int(line[0]) != os.getpid()]
    n = sum(p.numel() for p in model.parameters())
    assert len(in_workers) >= 2 * n  # every central difference ran in a worker
    workers = {pid for pid, _, _ in in_workers}
    assert len(workers) == 2
    assert {threads for _, threads, _ in in_workers} == {"1"}
    for pid in workers:
        copies = {copy_id for worker, _, copy_id in in_workers if worker == pid}
        assert len(copies) == 1, (pid, copies)

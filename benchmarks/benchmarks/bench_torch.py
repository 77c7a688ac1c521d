"""fastgc.torch.check_module against torch.autograd.gradcheck on the same nn.Module."""

from . import _models


def _module(size):
    try:
        import torch
    except ImportError:
        raise NotImplementedError("torch is not installed") from None
    import importlib.util
    import os
    import sys

    # compare.py builds the module from the benchmark MLP; load it by path (it is a script).
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "compare.py")
    name = "fastgc_benchmarks_compare"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return torch, sys.modules[name], _models.make_mlp(size)


class TimeTorchCheckModule:
    """A full ``check_module`` of the MLP as an nn.Module: one evaluation at a time (torch's
    intra-op threads at n_threads), n_threads evaluations side by side, or n_threads worker
    processes (``executor="processes"``, torch on one thread in each; starting the workers
    and importing torch in them included)."""

    params = ([100, 2_000], [1, 2], ["serial", "side by side", "processes"])
    param_names = ["size", "n_threads", "evaluations"]
    number = 1
    repeat = (2, 5, 10.0)
    timeout = 120.0

    def setup(self, size, n_threads, evaluations):
        # The rows not timed are told apart first: importing torch takes seconds.
        if evaluations != "serial" and n_threads == 1:
            raise NotImplementedError("one thread: the same as serial")
        if evaluations == "processes" and size == 100:
            raise NotImplementedError("at 100 parameters the workers' start-up is all there is")
        if size > 100 and (n_threads, evaluations) not in ((2, "side by side"),
                                                          (2, "processes")):
            raise NotImplementedError("at 2,000 parameters only the fastest ways are timed, to "
                                      "keep `asv run --quick` short (compare.py times the rest)")
        torch, compare, mlp = _module(size)
        torch.set_num_threads(n_threads)
        if evaluations == "processes":
            self.run = compare.fastgc_torch_module(mlp, n_workers=n_threads)
        else:
            self.run = compare.fastgc_torch_module(
                mlp, n_threads=n_threads if evaluations == "side by side" else None)
        self.run(None)  # warm: torch's first calls allocate and dispatch slowly

    def time_check_module(self, size, n_threads, evaluations):
        self.run(None)


class TimeTorchGradcheckModule:
    """``torch.autograd.gradcheck(fast_mode=False)`` over the same module's parameters."""

    params = ([100], [1, 2])
    param_names = ["size", "n_threads"]
    number = 1
    repeat = (2, 5, 10.0)
    timeout = 120.0

    def setup(self, size, n_threads):
        torch, compare, mlp = _module(size)
        torch.set_num_threads(n_threads)
        self.run = compare.torch_gradcheck_module(mlp)
        self.run(None)

    def time_gradcheck(self, size, n_threads):
        self.run(None)

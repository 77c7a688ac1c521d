"""Check plans: time and cost evaluations of the screen and of the sampled plan against the
network size, up to 10^6 parameters (``python -m fastgc demo large`` runs the screen at 10^7,
where one check takes about ten seconds: too long for ``asv run --quick``).

Each size is the demo's tanh network (width x layers); the planted bug is one wrong
component of W3, which the screen must localise.
"""

import numpy as np

SIZES = {263_168: (256, 4), 1_050_624: (512, 4)}
PLANS = ["screen", "sampled"]


def _problem(size):
    """The demo's network of ``size`` parameters with one wrong component of W3."""
    from fastgc import _demo_large as demo

    width, layers = SIZES[size]
    params, X, Y, sizes = demo.large_network(width, layers)
    grads = demo.planted(demo.backprop(params, X, Y), "entry")
    return demo.network_cost(), params, grads, (X, Y, sizes)


def _check(plan, problem):
    import fastgc

    cost, params, grads, args = problem
    chosen = "screen" if plan == "screen" else fastgc.Sampled(per_block=256)
    return fastgc.check(cost, params, grads, args=args, plan=chosen, progress=False)


def evidence(sizes):
    """``{(plan, size): {"evaluations": ..., "localised": 1.0 or 0.0}}`` from one check each."""
    found = {}
    for size in sizes:
        problem = _problem(size)
        for plan in PLANS:
            result = _check(plan, problem)
            worst = result.worst(1)[0]
            found[plan, size] = {
                "evaluations": result.evaluations,
                "localised": float((worst.name, worst.index) == ("W3", (17, 123))),
            }
    return found


class Plans:
    """Seconds of a check with each plan, against the network size."""

    params = (PLANS, list(SIZES))
    param_names = ["plan", "size"]
    number = 1
    repeat = (1, 3, 60.0)
    warmup_time = 0.0
    timeout = 600.0

    def setup(self, plan, size):
        # The kernels are compiled once per argument types, the same at every size: a check
        # of the smallest network compiles (or loads) them outside the timing.
        _check(plan, _problem(min(SIZES)))
        self.problem = _problem(size)

    def time_check(self, plan, size):
        _check(plan, self.problem)


class PlanEvidence:
    """What each plan spent and found (one check per plan and size, shared by the three)."""

    params = (PLANS, list(SIZES))
    param_names = ["plan", "size"]
    timeout = 600.0

    def setup_cache(self):
        return evidence(SIZES)

    def track_evaluations(self, found, plan, size):
        return found[plan, size]["evaluations"]

    def track_share_of_full_check(self, found, plan, size):
        return found[plan, size]["evaluations"] / (2.0 * size)

    def track_localised(self, found, plan, size):
        return found[plan, size]["localised"]


class TorchFastGradcheckMisses:
    """torch ``gradcheck(fast_mode=True)`` against the screen on 10^6 elements (1: caught).
    The doubled gradient only (``python benchmarks/compare.py --plans`` also flips the sign):
    each row takes seconds."""

    params = (["doubled"],)
    param_names = ["bug"]
    number = 1
    repeat = (1, 1, 30.0)
    timeout = 300.0

    def setup(self, bug):
        import os
        import sys

        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        try:
            import torch  # noqa: F401
        except ImportError:
            raise NotImplementedError("torch is not installed")
        import plans

        self.factor = 2.0 if bug == "doubled" else -1.0
        rng = np.random.default_rng(0)
        self.w, self.x0 = rng.standard_normal(10**6), rng.standard_normal(10**6)
        self.plans = plans

    def track_torch_fast_caught(self, bug):
        return float(self.plans._torch_fast(self.w, self.x0, self.factor)[0])

    def track_fastgc_screen_caught(self, bug):
        return float(self.plans._screen(self.w, self.x0, self.factor, 0)[0] == "bug")

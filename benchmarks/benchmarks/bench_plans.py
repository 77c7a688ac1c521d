"""Check plans: time and cost evaluations of the screen and of the sampled plan against the
network size, up to the ~10^7 parameters of ``python -m fastgc demo large``.

Each size is the demo's tanh network (width x layers); the planted bug is one wrong
component of W3, which the screen must localise.
"""

import numpy as np

SIZES = {263_168: (256, 4), 1_050_624: (512, 4), 10_496_000: (1024, 10)}


class Plans:
    params = (["screen", "sampled"], list(SIZES))
    param_names = ["plan", "size"]
    number = 1
    repeat = (1, 3, 60.0)
    warmup_time = 0.0
    timeout = 600.0

    def setup(self, plan, size):
        import fastgc
        from fastgc import _demo_large as demo

        width, layers = SIZES[size]
        params, X, Y, sizes = demo.large_network(width, layers)
        self.params, self.args = params, (X, Y, sizes)
        self.grads = demo.planted(demo.backprop(params, X, Y), "entry")
        self.cost = demo.network_cost()
        self.plan = "screen" if plan == "screen" else fastgc.Sampled(per_block=256)
        self.result = self._check()  # compiles the kernels for this cost once

    def _check(self):
        import fastgc

        return fastgc.check(self.cost, self.params, self.grads, args=self.args,
                            plan=self.plan, progress=False)

    def time_check(self, plan, size):
        self._check()

    def track_evaluations(self, plan, size):
        return self.result.evaluations

    def track_share_of_full_check(self, plan, size):
        return self.result.evaluations / (2.0 * size)

    def track_localised(self, plan, size):
        worst = self.result.worst(1)[0]
        return float((worst.name, worst.index) == ("W3", (17, 123)))


class TorchFastGradcheckMisses:
    """torch ``gradcheck(fast_mode=True)`` against the screen on 10^6 elements (1: caught)."""

    params = (["doubled", "sign flipped"],)
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

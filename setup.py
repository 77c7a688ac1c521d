"""Build of the optional Cython extension ``fastgc._core``.

Metadata lives in pyproject.toml; this file only declares the extension and how it is built.

Environment variables
---------------------
FASTGC_REQUIRE_CYTHON=1
    Any failure to cythonize or compile the extension is fatal. Without it, a failure prints a
    warning and the pure-Python package is installed (the Cython engine then reports itself
    unavailable).
FASTGC_DISABLE_OPENMP=1
    Build without OpenMP even when the compiler supports it (the kernels then run serially).
"""

import os
import sys
import tempfile
import textwrap

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

EXTENSION_NAME = "fastgc._core"
EXTENSION_SOURCE = os.path.join("src", "fastgc", "_core.pyx")
# Generated C files go here rather than next to the .pyx.
CYTHON_BUILD_DIR = os.path.join("build", "cython")

OPENMP_PROBE = textwrap.dedent(
    """\
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return (n > 0 && omp_get_max_threads() > 0) ? 0 : 1;
    }
    """
)


def _env_flag(name):
    """True if the environment variable ``name`` is set to 1/true/yes/on."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _warn(message):
    bar = "*" * 75
    print(f"\n{bar}\n{message}\n{bar}\n", file=sys.stderr, flush=True)


class RequiredBuildError(RuntimeError):
    """The extension failed to build and FASTGC_REQUIRE_CYTHON is set."""


class OptionalBuildExt(build_ext):
    """build_ext that cythonizes, probes OpenMP, and may fall back to a pure-Python install."""

    def run(self):
        try:
            self._cythonize()
            super().run()
        except Exception as exc:
            self._build_failed(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._build_failed(exc)

    def build_extensions(self):
        self._configure_flags()
        super().build_extensions()

    def _cythonize(self):
        from Cython.Build import cythonize

        directives = {"language_level": "3", "embedsignature": True}
        cythonized = cythonize(
            self.extensions,
            compiler_directives=directives,
            build_dir=CYTHON_BUILD_DIR,
            quiet=True,
        )
        # Keep setuptools' own Extension objects (it has annotated them); take the C sources.
        for ext, generated in zip(self.extensions, cythonized):
            ext.sources = generated.sources

    def _configure_flags(self):
        msvc = self.compiler.compiler_type == "msvc"
        if msvc:
            compile_args = ["/O2"]
            openmp_compile, openmp_link = ["/openmp"], []
        else:
            # No FMA contraction: the twin kernels must round exactly like the reference.
            compile_args = ["-O3", "-ffp-contract=off"]
            openmp_compile, openmp_link = ["-fopenmp"], ["-fopenmp"]

        if _env_flag("FASTGC_DISABLE_OPENMP"):
            print("fastgc: OpenMP disabled by FASTGC_DISABLE_OPENMP; building serially")
            use_openmp = False
        else:
            use_openmp = self._probe_openmp(openmp_compile, openmp_link)
            if use_openmp:
                print(f"fastgc: building {EXTENSION_NAME} with OpenMP")
            else:
                _warn(
                    f"fastgc: the compiler cannot build OpenMP programs with {openmp_compile};\n"
                    f"{EXTENSION_NAME} is built without OpenMP and its kernels run serially."
                )
        if use_openmp:
            compile_args += openmp_compile
            link_args = list(openmp_link)
        else:
            link_args = []
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args or []) + compile_args
            ext.extra_link_args = list(ext.extra_link_args or []) + link_args

    def _probe_openmp(self, compile_args, link_args):
        """Whether a small OpenMP program compiles and links with the configured compiler."""
        with tempfile.TemporaryDirectory(prefix="fastgc-openmp-") as tmp:
            source = os.path.join(tmp, "probe.c")
            with open(source, "w") as f:
                f.write(OPENMP_PROBE)
            try:
                # Silence the compiler's complaints: failure here only means "no OpenMP".
                with open(os.devnull, "w") as devnull:
                    saved_stdout, saved_stderr = os.dup(1), os.dup(2)
                    os.dup2(devnull.fileno(), 1)
                    os.dup2(devnull.fileno(), 2)
                    try:
                        objects = self.compiler.compile(
                            [source], output_dir=tmp, extra_postargs=compile_args
                        )
                        self.compiler.link_executable(
                            objects, "probe", output_dir=tmp, extra_postargs=link_args
                        )
                    finally:
                        os.dup2(saved_stdout, 1)
                        os.dup2(saved_stderr, 2)
                        os.close(saved_stdout)
                        os.close(saved_stderr)
            except Exception:
                return False
        return True

    def _build_failed(self, exc):
        if _env_flag("FASTGC_REQUIRE_CYTHON"):
            if isinstance(exc, RequiredBuildError):
                raise exc
            raise RequiredBuildError(
                f"fastgc: building the extension {EXTENSION_NAME} failed and "
                f"FASTGC_REQUIRE_CYTHON is set: {type(exc).__name__}: {exc}"
            ) from exc
        if getattr(self, "_failure_reported", False):
            return
        self._failure_reported = True
        _warn(
            f"fastgc: the extension {EXTENSION_NAME} could not be built:\n"
            f"    {type(exc).__name__}: {exc}\n"
            "Installing the pure-Python package: the Cython engine will be unavailable.\n"
            "Set FASTGC_REQUIRE_CYTHON=1 to make this failure fatal."
        )


setup(
    ext_modules=[Extension(EXTENSION_NAME, [EXTENSION_SOURCE])],
    cmdclass={"build_ext": OptionalBuildExt},
)

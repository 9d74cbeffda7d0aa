"""The environment of every process steadyserve starts (replicas, gateways, service describers)."""

from __future__ import annotations

from collections.abc import Mapping

# Math libraries start a thread per core in every replica; on a small machine these fight the
# event loop (and each other) and batched calls stall for milliseconds. One thread each, as Ray
# does for actors, unless the deployment's env or the operator's environment says otherwise.
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# What a child process keeps of the operator's environment; nothing else passes (not
# STEADY_TOKEN, not cloud credentials): a service that returns os.environ must learn nothing.
# A deployment's `env` and `secrets` add what its service needs.
INHERITED_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
    "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "CUDA_VISIBLE_DEVICES", "XDG_RUNTIME_DIR", "XDG_CACHE_HOME", *BLAS_THREAD_VARS,
})
INHERITED_PREFIXES = ("LC_",)


def child_base_env(operator_env: Mapping[str, str]) -> dict[str, str]:
    """The environment every process steadyserve starts begins with (see INHERITED_ENV)."""
    kept = {k: v for k, v in operator_env.items() if k in INHERITED_ENV or k.startswith(INHERITED_PREFIXES)}
    return {**{name: "1" for name in BLAS_THREAD_VARS}, **kept}

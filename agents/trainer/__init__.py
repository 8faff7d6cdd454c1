"""The trainer: writes dataset shards and runs fine-tuning as a supervised child process.

`agents.trainer.process` holds the launcher (`TrainingProcess`), the progress event models the
child prints as JSON lines, and `write_shards`. The bus-facing TrainerAgent builds on them.
"""

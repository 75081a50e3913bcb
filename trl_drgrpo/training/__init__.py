"""What a training run needs around the trainer: command-line arguments (``arguments``), checks made before
anything heavy is imported (``preflight``), fp32 master weights (``precision``), crash-safe checkpoints and exact
resume (``checkpointing``), the end-of-run files (``outputs``) and the model card (``model_card``).

Importing this package loads nothing heavy: ``preflight`` must stay torch-free.
"""

"""train_sft: supervised fine-tuning on Alpaca records with FSDP2 (``train.py`` is the recipe).

Modules: ``config`` (YAML + key=value), ``data`` (templates, masking, length-grouped batches),
``modeling`` (tokenizer, model, fully_shard), ``runtime`` (device, precision, peak FLOP/s),
``checkpoint`` (sharded, atomic, resumable), ``export`` (save_pretrained), ``metrics`` (metrics.jsonl).
Importing this package does not import torch.
"""

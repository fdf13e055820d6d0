"""train_sft: supervised fine-tuning on Alpaca records and conversations with FSDP2 (``train.py`` is
the recipe).

Modules: ``config`` (YAML + key=value), ``data`` (templates, conversations through the chat template,
masking, length-grouped or packed batches), ``modeling`` (tokenizer, model, fully_shard), ``lora``
(peft's LoRA adapters: settings, targets, wrapping), ``runtime`` (device, precision, peak FLOP/s),
``checkpoint`` (sharded, atomic, resumable), ``export`` (save_pretrained; LoRA merged or as an
adapter), ``metrics`` (metrics.jsonl). Importing this package does not import torch.
"""

"""``selfinstruct generate``: the bootstrap loop.

It keeps ``concurrency`` units of work in flight (see ``selfinstruct.recipes.base`` for what a unit
is), runs every candidate through the same filter chain ``selfinstruct filter`` uses, grows the pool
with what it accepts, and stops at exactly ``num`` accepted examples. Every paid response and every
decision goes to the journal before it counts; a rerun with the same ``--out`` replays the journal
and continues.

    settings    what a run is asked to do
    run         one run top to bottom: build, journal, units, outputs
    scheduler   which units run and when (the pipe kept full, the lag)
    ordering    decisions in unit order (prompts that do not depend on timing)
    context     what a running unit is offered: ask, turn, offer, reject
    outputs     the data file (--format), records.jsonl, rejects.jsonl, summary.json, the dataset
                card, the Hugging Face outputs, the progress bar
"""
from selfinstruct.generate.run import build, run_async, run_generate
from selfinstruct.generate.settings import Settings

__all__ = ["Settings", "build", "run_async", "run_generate"]

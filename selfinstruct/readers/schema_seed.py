"""Self-Instruct seed tasks (also BELLE's Chinese seeds): ``{id, name, instruction, instances:
[{input, output}, …], is_classification}``. Every instance becomes a record."""
from __future__ import annotations

from selfinstruct.readers.base import BadRecord, Schema, script_lang, text, type_name
from selfinstruct.record import Record


class SeedTasks(Schema):
    name = "seed"
    priority = 10

    @classmethod
    def matches(cls, row: dict, names: dict[str, str]) -> bool:
        return "instances" in row

    def records(self, row: dict, origin: str) -> list[Record]:
        instruction = text(row, self.instruction_key, required=True)
        instances = row.get("instances")
        if not isinstance(instances, list):
            raise BadRecord(f"field 'instances' is {type_name(instances)}, expected a list")
        if not instances:
            raise BadRecord("field 'instances' is empty")
        task = {"task_id": row.get("id"), "name": row.get("name"),
                "is_classification": row.get("is_classification")}
        lang = script_lang(instruction)
        records = []
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise BadRecord(f"instance {i} is {type_name(instance)}, expected an object")
            try:
                record = Record(instruction, text(instance, self.input_key),
                                text(instance, self.output_key, required=True), lang=lang, origin=origin,
                                meta={**task, "instance": i})
            except BadRecord as e:
                raise BadRecord(f"instance {i}: {e}") from None
            if isinstance(row.get("id"), str):
                record.id = row["id"] if len(instances) == 1 else f"{row['id']}#{i}"
            records.append(record)
        return records

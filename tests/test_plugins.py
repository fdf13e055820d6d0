"""A filter, a reader, a teacher and a recipe, each one file in a separately installed package
(entry points), run through the real CLI: nothing in selfinstruct is edited to add them."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FILES = {
    # an asynchronous filter (a judge-like stage would be one), with an option of its own
    "si_plugin_demo/no_fruit.py": '''
        import asyncio
        from selfinstruct.filters.base import Filter

        class NoFruit(Filter):
            name = "no_fruit"
            stage = "quality"
            fields = ("instruction",)

            def __init__(self, fruit: str = "banana"):
                self.fruit = fruit

            async def check(self, record):
                await asyncio.sleep(0)
                if self.fruit in record.instruction.lower():
                    return self.reject("fruit", f"mentions {self.fruit}")
                return None
    ''',
    # a reader for tab-separated files, recognised from their first line
    "si_plugin_demo/tsv.py": '''
        from selfinstruct.readers.base import Source

        class Tsv(Source):
            name = "tsv"
            priority = 5

            @classmethod
            def sniff(cls, path, head):
                return head is not None and head.startswith(b"instruction\\toutput\\n")

            def rows(self, ctx):
                with open(ctx.path, encoding="utf-8") as f:
                    next(f)
                    for line, text in enumerate(f, 2):
                        instruction, output = text.rstrip("\\n").split("\\t")
                        yield {"instruction": instruction, "output": output}, line
    ''',
    # a teacher that answers without a model: numbered tasks, deterministic
    "si_plugin_demo/echo.py": '''
        from selfinstruct.teachers.base import Response, Teacher

        class Echo(Teacher):
            name = "echo"
            label = "echo:v1"

            def __init__(self, concurrency: int = 2, topic: str = "rivers"):
                self.concurrency, self.topic, self.calls = concurrency, topic, 0

            async def complete(self, request):
                self.calls += 1
                n = self.calls
                return Response(text=f"Describe {self.topic} number {n} and why case {n * 7919} matters.",
                                prompt_tokens=10, completion_tokens=12)
    ''',
    # a recipe: one instruction per request, the output written by the recipe
    "si_plugin_demo/one_shot.py": '''
        from selfinstruct.recipes.base import Recipe
        from selfinstruct.record import Record
        from selfinstruct.teachers.base import Request

        class OneShot(Recipe):
            name = "one-shot"

            def __init__(self, seeds, lang, per_request: int = 1, answer: str = "A fine answer."):
                super().__init__(seeds, lang, per_request)
                self.answer = answer

            def first_request(self, rng, pool):
                return Request(prompt=f"Write a task like: {rng.choice(self.tasks).instruction}",
                               seed=rng.randrange(1000), stage="triples")

            async def run(self, ctx, uid, first):
                resp = await ctx.ask(first)
                async with ctx.turn("accept"):
                    await ctx.offer(Record(resp.text, output=self.answer), f"{uid}:0")
    ''',
    "si_plugin_demo/__init__.py": "",
    "si_plugin_demo-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: si-plugin-demo\nVersion: 0.1\n",
    "si_plugin_demo-0.1.dist-info/entry_points.txt": '''
        [selfinstruct.filters]
        no_fruit = si_plugin_demo.no_fruit

        [selfinstruct.readers]
        tsv = si_plugin_demo.tsv:Tsv

        [selfinstruct.teachers]
        echo = si_plugin_demo.echo

        [selfinstruct.recipes]
        one-shot = si_plugin_demo.one_shot
    ''',
}


@pytest.fixture
def plugin_env(tmp_path):
    site = tmp_path / "site"
    for name, text in FILES.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), ROOT]),
            "SELFINSTRUCT_CACHE_DIR": str(tmp_path / "cache")}


def cli(env, *args):
    return subprocess.run([sys.executable, "cli.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_plugin_reader_and_an_async_plugin_filter_run_in_selfinstruct_filter(tmp_path, plugin_env):
    data = tmp_path / "tasks.tsv"
    data.write_text("instruction\toutput\n"
                    "Explain why the sky looks blue during the day.\tLight scatters.\n"
                    "Name three dishes made with banana and rice.\tA pudding, a cake, a salad.\n"
                    "List four ways to save water in a small garden.\tMulch, drip lines, timing, shade.\n",
                    encoding="utf-8")
    r = cli(plugin_env, "filter", str(data), "--out", str(tmp_path / "o"), "--no-progress", "--no-report", "--only",
            "exact,no_fruit")
    assert r.returncode == 0, r.stderr
    kept = json.load(open(tmp_path / "o" / "data.json"))
    assert [k["instruction"][:7] for k in kept] == ["Explain", "List fo"]
    reject = json.loads(open(tmp_path / "o" / "rejects.jsonl").read())
    assert (reject["reason"], reject["detail"], reject["source"]) == ("fruit", "mentions banana", f"{data}:3")
    summary = json.load(open(tmp_path / "o" / "summary.json"))
    assert summary["filters"] == ["exact", "no_fruit"] and summary["rejected"] == {"fruit": 1}


def test_a_plugin_filter_option_is_set_with_opt(tmp_path, plugin_env):
    data = tmp_path / "tasks.tsv"
    data.write_text("instruction\toutput\nName three dishes made with banana and rice.\tA cake.\n"
                    "Name three dishes made with apple and rice.\tA pie.\n", encoding="utf-8")
    r = cli(plugin_env, "filter", str(data), "--out", str(tmp_path / "o"), "--no-progress", "--no-report",
            "--only", "no_fruit", "--opt", "no_fruit.fruit=apple")
    assert r.returncode == 0, r.stderr
    assert [k["output"] for k in json.load(open(tmp_path / "o" / "data.json"))] == ["A cake."]


def test_a_plugin_teacher_and_recipe_run_in_selfinstruct_generate(tmp_path, plugin_env):
    out = tmp_path / "g"
    r = cli(plugin_env, "generate", "--teacher", "echo", "--recipe", "one-shot", "--num", "4", "--out",
            str(out), "--no-progress", "--no-report", "--opt", "echo.topic=lakes", "--opt", "answer=Done.",
            "--concurrency", "3", "--skip", "lang,rouge")
    assert r.returncode == 0, r.stderr
    data = json.load(open(out / "data.json"))
    assert len(data) == 4 and all(d["output"] == "Done." and "lakes" in d["instruction"] for d in data)
    summary = json.load(open(out / "summary.json"))
    assert summary["teacher"]["name"] == "echo:v1" and summary["kept"] == 4
    assert summary["settings"]["options"] == ["echo.topic=lakes", "answer=Done."]


def test_a_flag_the_plugin_teacher_does_not_declare_is_an_error(tmp_path, plugin_env):
    r = cli(plugin_env, "generate", "--teacher", "echo", "--recipe", "one-shot", "--num", "1", "--out",
            str(tmp_path / "g"), "--model", "gpt-4o")
    assert r.returncode == 2
    assert r.stderr.strip() == "Error: --model does not apply to --teacher echo"
    assert not (tmp_path / "g").exists()

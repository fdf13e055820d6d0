"""A simulated teacher for tests of the generate loop: it reads the recipe's prompt and answers the
way a capable teacher would (new numbered triples, new numbered tasks, Yes/No, an instance), with
instructions that are new and distinct every time (drawn from a word list by a counter), so that the
filters accept most of them. ``ScriptedTeacher`` serves it in-process; ``responder`` plugs it into
the loopback OpenAI-compatible server."""
from __future__ import annotations

import itertools
import random
import re
import threading

from selfinstruct.teachers.base import Request, Response, Teacher

WORDS = ("river mountain coffee budget planet engine garden winter ticket violin recipe marathon "
         "harbor lantern orchard puzzle satellite bakery glacier compass festival library meadow "
         "pottery canyon tractor museum umbrella volcano whistle yogurt zebra anchor blanket castle "
         "dolphin elevator feather granite hammock igloo jasmine kettle lemonade magnet noodle oyster "
         "parrot quilt rocket saddle tulip unicorn velvet walnut xylophone yacht zipper acorn bamboo "
         "cactus daisy emerald falcon gazebo hazelnut iceberg jigsaw koala lobster mango nectar olive "
         "pepper quartz raccoon spinach thimble utensil vanilla wombat yarn balloon cabbage dragon").split()
VERBS = ("Explain", "Describe", "Suggest", "Compare", "Summarize", "Give", "List", "Name", "Outline",
         "Recommend")
ZH = "山水花鸟风云雨雪春夏秋冬江河湖海日月星辰松竹梅兰书画琴棋诗酒茶米金木火土东南西北天地人和"

_counter = itertools.count()
_lock = threading.Lock()


def _fresh(lang: str) -> str:
    with _lock:
        n = next(_counter)
    rng = random.Random(n)
    if lang == "zh":
        return "请介绍" + "".join(rng.sample(ZH, 8)) + "的特点。"
    return f"{rng.choice(VERBS)} the {' '.join(rng.sample(WORDS, 7))} idea briefly."


def reply(prompt: str, lang: str | None = None) -> str:
    zh = lang == "zh" or "任务" in prompt
    lang = "zh" if zh else "en"
    if prompt.rstrip().endswith(("Is it classification?", "是分类任务吗？")):
        return " No" if not zh else "否"
    if prompt.rstrip().endswith(("Class label:", "类别标签：")):
        return " positive\nInput: I loved every minute of it." if not zh else "正面\n输入：这家店的菜很好吃。"
    if prompt.rstrip().endswith(("Input:", "输入：")):
        return (" <noinput>\nOutput: A short, helpful answer about it." if not zh
                else "<无输入>\n输出：这是一个简短而有用的回答。")
    m = re.search(r"(?:Task |任务)(\d+)(?:\n(?:Instruction:|指令：)|[:：])\s*$", prompt)
    if m is None:
        return "I am not sure what you mean."
    n = int(m.group(1))
    if prompt.rstrip().endswith(("Instruction:", "指令：")):
        parts = []
        for i in range(3):
            head = "" if i == 0 else (f"任务{n + i}\n指令：" if zh else f"Task {n + i}\nInstruction:")
            if zh:
                parts.append(f"{head}{_fresh(lang)}\n输入：<无输入>\n输出：它们各有特色，值得一看。\n\n")
            else:
                parts.append(f"{head} {_fresh(lang)}\nInput: <noinput>\nOutput: Each has its own charm "
                             f"and purpose.\n\n")
        return "".join(parts)
    lines = [f" {_fresh(lang)}"] + [(f"任务{n + i}：" if zh else f"Task {n + i}: ") + _fresh(lang)
                                    for i in range(1, 3)]
    return "\n".join(lines)


class ScriptedTeacher(Teacher):
    """In-process teacher answering with ``reply``; counts what it was asked."""
    name = "scripted"
    label = "scripted:sim"

    def __init__(self, lang: str = "en", concurrency: int = 4, fail_every: int = 0, reply_fn=reply):
        self.lang, self.concurrency, self.fail_every, self.reply_fn = lang, concurrency, fail_every, reply_fn
        self.calls: list[Request] = []

    async def complete(self, request: Request) -> Response:
        self.calls.append(request)
        if self.fail_every and len(self.calls) % self.fail_every == 0:
            return Response(text="", error="http 503 after 6 attempts")
        text = self.reply_fn(request.prompt, self.lang)
        return Response(text=text, prompt_tokens=len(request.prompt) // 4, completion_tokens=len(text) // 4)


def responder(lang: str = "en"):
    """A FakeOpenAI responder serving ``reply`` for any request."""
    from tests.fake_openai_server import ok, prompt_of

    def respond(body, n):
        return ok(text=reply(prompt_of(body), lang))
    return respond

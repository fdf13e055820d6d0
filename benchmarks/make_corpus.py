"""Deterministic synthetic instruction records for the filter benchmarks (English and Chinese).

Records look like Self-Instruct / Alpaca machine output: a task verb and template, topic words drawn
from a Zipf-shaped vocabulary (a few hundred real words, then a long tail of made-up words so that a
million records still have a realistic vocabulary), optional clauses, an optional input. Lengths are
5-40 words in English and 8-60 characters in Chinese. A controlled share (``dup_share``, default 15%)
are paraphrases or near-copies of an earlier record: a few word edits, a swapped template head, or a
verbatim copy with different punctuation. Some land above ROUGE-L 0.7 and some just below it, which
is what the novelty filter has to decide.

As a module::

    from make_corpus import make_records          # with benchmarks/ on sys.path
    records = make_records(50_000, lang="en", seed=0)

As a script (JSONL, one Record.to_dict() per line; the default path is gitignored)::

    python benchmarks/make_corpus.py -n 50000 --lang zh --seed 0
    python benchmarks/make_corpus.py -n 1000000 --out /tmp/corpus.jsonl
"""
from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from selfinstruct.record import Record  # noqa: E402

DATA_DIR = Path(__file__).resolve().parent / "_data"

# ---- English ------------------------------------------------------------------------------------
EN_NOUNS = (
    "climate change, renewable energy, machine learning, the french revolution, photosynthesis, "
    "a small business, remote work, social media, the stock market, healthy eating, time management, "
    "public transport, ocean pollution, the human brain, quantum computing, a job interview, "
    "online privacy, urban gardening, the roman empire, electric cars, space exploration, meditation, "
    "a birthday party, the water cycle, customer service, a mobile app, digital marketing, "
    "artificial intelligence, the immune system, a rainy day, friendship, a new city, coffee, "
    "a football match, sleep, the internet, vaccines, a library, recycling, volcanoes, jazz music, "
    "a family dinner, cryptocurrency, a hiking trip, the moon landing, video games, bees, "
    "a research paper, a cover letter, python programming, a database, a restaurant menu, tax returns"
).split(", ")
EN_ADJ = ("short funny detailed formal simple creative persuasive brief polite informal clear "
          "concise friendly professional catchy emotional technical practical").split()
EN_GENRES = ("poem story essay email tweet haiku speech review letter slogan dialogue "
             "blog post product description news headline joke riddle limerick").split(" ")
EN_AUDIENCE = ("children, beginners, a busy manager, high school students, a five year old, "
               "engineers, tourists, my grandmother, new employees, a general audience").split(", ")
EN_LANGUAGES = "french spanish german chinese japanese italian korean portuguese".split()
EN_FUNCTION = "the a of and to in for with on about from by how what why that this your".split()

EN_TEMPLATES = (
    "Write a {adj} {genre} about {topic}.",
    "Compose a {adj} {genre} on the topic of {topic}.",
    "Explain how {topic} affects {topic2}.",
    "Explain {topic} to {audience} in {num} sentences.",
    "List {num} {adj} ways to improve {topic}.",
    "Give me {num} tips for dealing with {topic} when {topic2} is involved.",
    "Summarize the following article about {topic}.",
    "What are the main differences between {topic} and {topic2}?",
    "Classify the following sentence as related to {topic} or {topic2}.",
    "Translate the following sentence about {topic} into {language}.",
    "Generate a {adj} {genre} for {audience} who want to learn about {topic}.",
    "Describe the relationship between {topic} and {topic2} from the point of view of {audience}.",
    "Suggest a {adj} title for a {genre} about {topic}.",
    "Is {topic} good or bad for {topic2}? Give reasons.",
    "Create a quiz with {num} questions about {topic}.",
    "Find the grammatical errors in the following {genre} and correct them.",
    "Rewrite the following {genre} so that it sounds more {adj}.",
    "Design a {num} day plan to learn about {topic}.",
    "Imagine you are {audience}. How would you react to {topic}?",
    "Why do people care about {topic}?",
    "Pretend to be an expert on {topic} and answer questions from {audience}.",
    "Come up with an analogy that links {topic} with {topic2}.",
    "Which of these is not like the others: {topic}, {topic2}, {topic3}?",
    "Predict how {topic} will change over the next {num} years.",
    "Convert this {genre} into a table with columns for {topic} and {topic2}.",
    "Tell me a {adj} fact about {topic}.",
    "Argue for or against {topic} in a {genre}.",
    "Plan a weekend around {topic} on a budget of {num} dollars.",
    "Brainstorm {num} names for a startup working on {topic}.",
    "Output the sentiment of this {genre} about {topic}: positive, negative or neutral.",
)
EN_CLAUSES = (
    " Make sure to mention {topic}.",
    " The answer should be suitable for {audience}.",
    " Use no more than {num} words.",
    " Include at least one example related to {topic}.",
    " Keep the tone {adj} and avoid jargon.",
    " Explain your reasoning step by step.",
    " Format the answer as a numbered list.",
)
EN_PARAPHRASE_HEADS = {"Write": "Compose", "Compose": "Write", "Explain": "Describe", "List": "Give",
                       "Give": "List", "Generate": "Create", "Create": "Generate", "Describe": "Explain",
                       "Suggest": "Propose", "Summarize": "Sum up", "Find": "Identify"}
EN_OPENERS = ("Please", "Can you", "I need you to", "Your task is to", "Quickly", "As a teacher,",
              "In plain words,", "For my homework,", "Help me", "Using your own knowledge,", "For a blog,",
              "Without using lists,", "Step by step,", "If possible,", "For a presentation,")
# Real instructions say the same thing many ways; swapping these keeps templates from dominating.
EN_SYNONYMS = {
    "write": ("write", "compose", "draft", "produce"), "explain": ("explain", "describe", "clarify", "outline"),
    "list": ("list", "name", "enumerate", "give"), "about": ("about", "on", "regarding", "concerning"),
    "ways": ("ways", "methods", "strategies", "ideas"), "following": ("following", "given", "next", "below"),
    "create": ("create", "make", "build", "put together"), "main": ("main", "key", "major", "most important"),
    "tips": ("tips", "pieces of advice", "suggestions", "hints"), "improve": ("improve", "boost", "enhance", "fix"),
    "generate": ("generate", "produce", "come up with", "invent"), "learn": ("learn", "know", "find out", "read"),
    "answer": ("answer", "response", "reply", "output"), "sentence": ("sentence", "statement", "phrase", "line"),
    "people": ("people", "folks", "humans", "many of us"), "give": ("give", "provide", "offer", "share"),
    "good": ("good", "helpful", "positive", "useful"), "bad": ("bad", "harmful", "negative", "risky"),
}
EN_SYLLABLES = ("ka lo mi ren tor vel sa qui bran dor est lin mar pho gra tis nu zel "
                "cor ban fli ter os ump ra del vin sto chu ple").split()

# ---- Chinese ------------------------------------------------------------------------------------
ZH_COMMON = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说"
             "产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本"
             "去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但"
             "质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设")
ZH_TEMPLATES = (
    "请写一首关于{topic}的{genre}。",
    "请以{topic}为主题写一篇{adj}的{genre}。",
    "解释{topic}对{topic2}的影响。",
    "用{num}句话向{audience}解释{topic}。",
    "列出{num}个改善{topic}的{adj}方法。",
    "总结下面这篇关于{topic}的文章。",
    "{topic}和{topic2}的主要区别是什么？",
    "把下面关于{topic}的句子翻译成{language}。",
    "判断下面的句子与{topic}还是{topic2}有关。",
    "为{audience}设计一个学习{topic}的{num}天计划。",
    "给一篇关于{topic}的{genre}想一个{adj}的标题。",
    "{topic}对{topic2}是好是坏？请说明理由。",
)
ZH_CLAUSES = ("请提到{topic}。", "答案要适合{audience}。", "不超过{num}个字。", "请一步一步地解释。", "语气要{adj}。")
ZH_GENRES = "诗 故事 文章 邮件 演讲稿 评论 信 口号 对话 新闻标题 笑话".split()
ZH_ADJ = "简短 有趣 详细 正式 简单 有创意 礼貌 清楚 友好 专业 幽默".split()
ZH_AUDIENCE = "小学生 初学者 老板 高中生 游客 新员工 老年人 工程师".split()
ZH_LANGUAGES = "英语 法语 日语 德语 西班牙语 韩语".split()


def _zipf_weights(size: int, s: float = 0.8) -> list[float]:
    return list(itertools.accumulate(1.0 / (rank ** s) for rank in range(1, size + 1)))


class _Vocabulary:
    """Topic phrases: real ones first (frequent), then a made-up tail, sampled Zipf-style."""

    def __init__(self, rng: random.Random, lang: str, tail: int):
        if lang == "zh":
            made_up = {"".join(rng.choice(ZH_COMMON) if rng.random() < 0.6 else chr(rng.randrange(0x4E00, 0x9FA5))
                               for _ in range(rng.choice((2, 2, 3, 4)))) for _ in range(tail)}
            self.words = sorted(made_up)
            rng.shuffle(self.words)
        else:
            made_up = {"".join(rng.choice(EN_SYLLABLES) for _ in range(rng.choice((2, 3, 3, 4))))
                       for _ in range(tail)}
            real = list(EN_NOUNS)
            tail_words = sorted(made_up)
            rng.shuffle(tail_words)
            # Made-up phrases mix tail words with real modifiers, like "the bransto of a database".
            self.words = real + [self._en_phrase(rng, w) for w in tail_words]
        self.cum = _zipf_weights(len(self.words))

    @staticmethod
    def _en_phrase(rng: random.Random, word: str) -> str:
        shape = rng.random()
        if shape < 0.5:
            return word
        if shape < 0.8:
            return f"{rng.choice(EN_ADJ)} {word}"
        return f"the {word} of {rng.choice(EN_NOUNS)}"

    def pick(self, rng: random.Random) -> str:
        return rng.choices(self.words, cum_weights=self.cum)[0]

    def phrase(self, rng: random.Random, lang: str) -> str:
        """A topic: one to three vocabulary picks, so that templates alone rarely make two records alike."""
        shape = rng.random()
        if shape < 0.4:
            return self.pick(rng)
        if lang == "zh":
            return self.pick(rng) + rng.choice(("的", "和", "中的", "与")) + self.pick(rng)
        if shape < 0.8:
            return f"{self.pick(rng)} {rng.choice(('and', 'in', 'for', 'versus', 'without'))} {self.pick(rng)}"
        return f"{self.pick(rng)} {self.pick(rng)} {self.pick(rng)}"


def _fill(rng: random.Random, vocab: _Vocabulary, lang: str, template: str) -> str:
    zh = lang == "zh"
    return template.format(
        topic=vocab.phrase(rng, lang), topic2=vocab.phrase(rng, lang), topic3=vocab.pick(rng),
        adj=rng.choice(ZH_ADJ if zh else EN_ADJ), genre=rng.choice(ZH_GENRES if zh else EN_GENRES),
        audience=rng.choice(ZH_AUDIENCE if zh else EN_AUDIENCE),
        language=rng.choice(ZH_LANGUAGES if zh else EN_LANGUAGES), num=rng.randint(2, 12))


def _reword(rng: random.Random, text: str) -> str:
    words = text.split()
    for i, word in enumerate(words):
        options = EN_SYNONYMS.get(word.lower())
        if options and rng.random() < 0.6:
            words[i] = rng.choice(options)
    if rng.random() < 0.35:
        words = rng.choice(EN_OPENERS).split() + [words[0].lower()] + words[1:]
    return " ".join(words)


def _fresh_instruction(rng: random.Random, vocab: _Vocabulary, lang: str) -> str:
    templates, clauses = (ZH_TEMPLATES, ZH_CLAUSES) if lang == "zh" else (EN_TEMPLATES, EN_CLAUSES)
    text = _fill(rng, vocab, lang, rng.choice(templates))
    if lang != "zh":
        text = _reword(rng, text)
    # Geometric number of extra clauses keeps most instructions short and a few long.
    for _ in range(3):
        if rng.random() > 0.45:
            break
        text += _fill(rng, vocab, lang, rng.choice(clauses))
    return text


def _near_copy(rng: random.Random, vocab: _Vocabulary, lang: str, text: str) -> str:
    """A paraphrase or near-copy of ``text``: a few token edits, a swapped head, or new punctuation."""
    kind = rng.random()
    if kind < 0.1:
        return text.rstrip("。.?？") + ("！" if lang == "zh" else "!")
    units = list(text) if lang == "zh" else text.split()
    if kind < 0.25 and lang != "zh" and units[0] in EN_PARAPHRASE_HEADS:
        units[0] = EN_PARAPHRASE_HEADS[units[0]]
    for _ in range(rng.choice((1, 1, 2, 2, 3, 4, 6))):
        pos = rng.randrange(len(units))
        edit = rng.random()
        filler = vocab.pick(rng) if rng.random() < 0.5 else rng.choice(EN_FUNCTION if lang != "zh" else ZH_COMMON)
        if edit < 0.35:
            units[pos] = filler
        elif edit < 0.6 and len(units) > 3:
            del units[pos]
        elif edit < 0.85:
            units.insert(pos, filler)
        elif pos + 1 < len(units):
            units[pos], units[pos + 1] = units[pos + 1], units[pos]
    return ("" if lang == "zh" else " ").join(units)


def _input_for(rng: random.Random, vocab: _Vocabulary, lang: str) -> str:
    if rng.random() < 0.6:
        return ""
    words = [vocab.pick(rng) for _ in range(rng.randint(3, 12))]
    return ("，".join(words) + "。") if lang == "zh" else (" ".join(words).capitalize() + ".")


def make_records(n: int, lang: str = "en", seed: int = 0, dup_share: float = 0.15) -> list[Record]:
    """``n`` records in ``lang`` ("en" or "zh"); the same arguments always give the same records."""
    if lang not in ("en", "zh"):
        raise ValueError(f"lang must be 'en' or 'zh', not {lang!r}")
    rng = random.Random(f"{lang}:{seed}")
    vocab = _Vocabulary(rng, lang, tail=max(5000, n // 2))
    records: list[Record] = []
    for i in range(n):
        if records and rng.random() < dup_share:
            # Near-copies mostly of recent records (a generation batch), sometimes of any earlier one.
            lo = max(0, len(records) - 2000) if rng.random() < 0.7 else 0
            source = records[rng.randrange(lo, len(records))]
            instruction = _near_copy(rng, vocab, lang, source.instruction)
            inp = source.input if rng.random() < 0.7 else _input_for(rng, vocab, lang)
        else:
            instruction = _fresh_instruction(rng, vocab, lang)
            inp = _input_for(rng, vocab, lang)
        output = _fill(rng, vocab, lang, ZH_CLAUSES[0] if lang == "zh" else "It depends on {topic}.")
        records.append(Record(instruction=instruction, input=inp, output=output, id=f"{lang}-{seed}-{i}",
                              lang=lang, origin=f"synthetic:{i + 1}"))
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=50_000, help="number of records")
    ap.add_argument("--lang", choices=("en", "zh"), default="en")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dup-share", type=float, default=0.15, help="share of near-copies (default 0.15)")
    ap.add_argument("--out", type=Path, help="JSONL path (default benchmarks/_data/corpus_LANG_N_SEED.jsonl)")
    args = ap.parse_args(argv)
    out = args.out or DATA_DIR / f"corpus_{args.lang}_{args.n}_{args.seed}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for r in make_records(args.n, args.lang, args.seed, args.dup_share):
            fh.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    print(f"wrote {args.n} {args.lang} records to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

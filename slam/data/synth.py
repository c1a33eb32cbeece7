"""Our own synthetic world of parallel grade-school word problems (the laptop demo's training data).

    slam data synth --out runs/data/synth --n-train 2000 --seed 0
    problems = generate(n=100, seed=0)                  # list of {lang: Record}, parallel by problem_id

18 templates (one- and two-step, + - * / with integer results) x 12 names x 9 objects in 9 languages
(en de fr es ru zh ja th sw); the English chain of thought ends in "The answer is N.". Deterministic
by seed. Test problems are generated first, so the test set for a seed does not change with
--n-train; every split has its own problems (no English question occurs twice).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

from slam.data.build import make_examples, write_dataset
from slam.data.lexicon import LANGS, NAMES, THINGS
from slam.data.records import Record
from slam.data.templates import TEMPLATES, Ctx, Template
from slam.errors import SlamError

GENERATOR = "slam.data.synth/1"


def check_langs(langs: list[str] | None) -> list[str]:
    langs = list(langs or LANGS)
    bad = [x for x in langs if x not in LANGS]
    if bad:
        raise SlamError(f"synth has no language(s) {', '.join(bad)}; it writes {', '.join(LANGS)}")
    return langs


def render(t: Template, lang: str, p: int, q: int, thing: int, nums: tuple[int, int, int, int, int]) -> str:
    return t.text[lang](Ctx(lang, NAMES[p], NAMES[q], THINGS[thing], *nums))


def generate(n: int, seed: int = 0, langs: list[str] | None = None, start: int = 0,
             seen: set[str] | None = None, rng: random.Random | None = None) -> list[dict[str, Record]]:
    """n new problems, each {lang: Record} (English always included: it is the CoT/translation side)."""
    langs = check_langs(langs)
    rng = rng or random.Random(seed)
    seen = set() if seen is None else seen
    out: list[dict[str, Record]] = []
    order: list[Template] = []
    while len(out) < n:
        if not order:
            order = list(TEMPLATES)
            rng.shuffle(order)
        t = order.pop()
        for _ in range(100):  # the world is large; a clash just means drawing again
            p, q = rng.sample(range(len(NAMES)), 2)
            thing = rng.randrange(len(THINGS))
            nums = t.sample(rng)
            en = render(t, "en", p, q, thing, nums)
            if en not in seen:
                break
        else:
            raise SlamError(f"synth world exhausted: cannot draw {n} distinct problems")
        seen.add(en)
        pid = f"synth-{start + len(out):06d}"
        answer = t.cot(Ctx("en", NAMES[p], NAMES[q], THINGS[thing], *nums))
        gold = float(nums[4])
        out.append({lang: Record(id=f"{pid}-{lang}", problem_id=pid, lang=lang,
                                 question=en if lang == "en" else render(t, lang, p, q, thing, nums),
                                 answer=answer, gold=gold, source=f"synth/{t.key}")
                    for lang in (["en"] + [x for x in langs if x != "en"])})
    return out


def synth_splits(*, n_train: int, n_val: int, n_test: int, n_probe: int, seed: int,
                 langs: list[str] | None = None) -> dict[str, list[dict[str, Record]]]:
    """Problems per split, generated test -> probe -> val -> train from one random stream."""
    for name, v in [("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("n_probe", n_probe)]:
        if v < 0:
            raise SlamError(f"{name} must be >= 0, got {v}")
    if n_train == 0:
        raise SlamError("n_train must be > 0: a training set needs problems")
    rng, seen, start = random.Random(seed), set(), 0
    out = {}
    for split, n in [("test", n_test), ("probe", n_probe), ("val", n_val), ("train", n_train)]:
        out[split] = generate(n, seed, langs, start=start, seen=seen, rng=rng)
        start += n
    return out


def synth(out: str, *, langs: list[str] | None = None, n_train: int = 2000, n_val: int = 100, n_test: int = 200,
          n_probe: int = 64, seed: int = 0, translation_ratio: float = 1.0) -> dict[str, Any]:
    """Generate the world and write it as a built dataset (train/val examples + test/probe records)."""
    langs = check_langs(langs)
    problems = synth_splits(n_train=n_train, n_val=n_val, n_test=n_test, n_probe=n_probe, seed=seed, langs=langs)

    def recs(split: str, keep_en: bool) -> list[Record]:
        return [r for p in problems[split] for lang, r in p.items() if lang in langs or keep_en]

    examples = {}
    for split in ("train", "val"):
        # English records always go in (translation targets); drop English cot rows if en was not asked for
        ex, _ = make_examples(recs(split, keep_en=True), translation_ratio=translation_ratio, seed=seed)
        examples[split] = [e for e in ex if e["lang"] in langs]
    records = {"test": recs("test", keep_en=False), "probe": recs("probe", keep_en=False)}
    src = Path(__file__).parent
    sources = {f"slam/data/{f}": hashlib.sha256((src / f).read_bytes()).hexdigest()
               for f in ("synth.py", "templates.py", "lexicon.py")}
    manifest = {"generator": GENERATOR, "seed": seed, "langs": langs, "translation_ratio": translation_ratio,
                "templates": [t.key for t in TEMPLATES], "sources": sources,
                "problems": {split: len(p) for split, p in problems.items()}}
    return write_dataset(out, examples, manifest, records=records)

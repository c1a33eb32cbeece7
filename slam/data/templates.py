"""The synthetic world's problem templates: one- and two-step + - * / word problems in 9 languages.

Each template samples its numbers (integer results, every quantity >= 2, small enough for a 135M
model to solve sometimes), states the problem in every language and solves it in English, step by
step, ending in "The answer is N.". Sentences are written per language, not translated word by
word: French/Spanish agree with the noun's gender, Russian declines names and counts nouns
(1/2-4/5+), Chinese/Japanese/Thai use classifiers, Swahili agrees -ngapi with the noun class.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from slam.data.lexicon import (
    RU_BOX,
    RU_DAY,
    RU_DOLLAR,
    RU_PAGE,
    RU_TIMES,
    SW_CHACHE,
    SW_NGAPI,
    SW_SG_PREFIX,
    Name,
    Thing,
    ru_form,
)


class Ctx:
    """Everything a sentence needs for one problem in one language (short names keep templates readable)."""

    def __init__(self, lang: str, p: Name, q: Name, t: Thing, a: int, b: int, c: int, s: int, r: int):
        self.a, self.b, self.c, self.s, self.r = a, b, c, s, r
        self.P, self.Q = p.forms[lang], q.forms[lang]
        self.Pg, self.Pd, self.Qg, self.Qd = p.ru_gen, p.ru_dat, q.ru_gen, q.ru_dat
        self.t = t
        fem_p, fem_q = p.gender == "f", q.gender == "f"
        self.il, self.ilQ = ("elle" if fem_p else "il"), ("elle" if fem_q else "il")
        self.ils = "elles" if fem_p and fem_q else "ils"
        self.los_dos = "las dos" if fem_p and fem_q else "los dos"
        if lang == "en":
            self.o, self.sg = t.en[1], t.en[0]
        elif lang == "de":
            self.o = t.de
        elif lang == "fr":
            self.o, g = t.fr
            self.de = "d'" if self.o[0] in "aeiouéœh" else "de "
            self.tous = "toutes" if g == "f" else "tous"
            self.que = "qu'" if self.P[0] in "AEIOUÉ" else "que "
        elif lang == "es":
            self.o, g = t.es
            self.cu = "Cuántas" if g == "f" else "Cuántos"
            self.uno = "una" if g == "f" else "uno"
            self.sueltos = "sueltas" if g == "f" else "sueltos"
            self.todos = "todas las" if g == "f" else "todos los"
        elif lang == "ru":
            self.o = t.ru[2]
        elif lang in ("zh", "ja", "th"):
            self.o, self.cl = getattr(t, lang)
        elif lang == "sw":
            self.o, self.sg, cls = t.sw
            self.ngapi, self.chache, self.pre = SW_NGAPI[cls], SW_CHACHE[cls], SW_SG_PREFIX[cls]

    def n(self, k: int) -> str:
        """Russian "k + noun" with the right noun form."""
        return f"{k} {ru_form(k, self.t.ru)}"

    @staticmethod
    def ru(k: int, forms: tuple[str, str, str]) -> str:
        return f"{k} {ru_form(k, forms)}"


Text = Callable[[Ctx], str]


@dataclass(frozen=True)
class Template:
    key: str
    steps: int
    sample: Callable[[random.Random], tuple[int, int, int, int, int]]
    """rng -> (a, b, c, s, r): the inputs, the intermediate s of two-step problems, the answer r."""
    text: dict[str, Text]
    cot: Text


def _ri(rng: random.Random, lo: int, hi: int) -> int:
    return rng.randint(lo, hi)


def _add(rng: random.Random) -> tuple[int, int, int, int, int]:
    a, b = _ri(rng, 2, 15), _ri(rng, 2, 10)
    return a, b, 0, 0, a + b


def _together(rng: random.Random) -> tuple[int, int, int, int, int]:
    a, b = _ri(rng, 2, 15), _ri(rng, 2, 15)
    return a, b, 0, 0, a + b


def _sub(rng: random.Random) -> tuple[int, int, int, int, int]:
    a = _ri(rng, 5, 20)
    b = _ri(rng, 2, a - 2)
    return a, b, 0, 0, a - b


def _mul(lo_a: int, hi_a: int, lo_b: int, hi_b: int) -> Callable[[random.Random], tuple[int, int, int, int, int]]:
    def f(rng: random.Random) -> tuple[int, int, int, int, int]:
        a, b = _ri(rng, lo_a, hi_a), _ri(rng, lo_b, hi_b)
        return a, b, 0, 0, a * b
    return f


def _div(rng: random.Random) -> tuple[int, int, int, int, int]:
    b, r = _ri(rng, 2, 5), _ri(rng, 2, 8)
    return b * r, b, 0, 0, r


def _buy_give(rng: random.Random) -> tuple[int, int, int, int, int]:
    a, b = _ri(rng, 3, 12), _ri(rng, 2, 8)
    c = _ri(rng, 2, a + b - 2)
    return a, b, c, a + b, a + b - c


def _groups_plus(rng: random.Random) -> tuple[int, int, int, int, int]:
    a, b, c = _ri(rng, 2, 5), _ri(rng, 2, 6), _ri(rng, 2, 9)
    return a, b, c, a * b, a * b + c


def _buy_share(rng: random.Random) -> tuple[int, int, int, int, int]:
    c, r = _ri(rng, 2, 5), _ri(rng, 2, 6)
    total = c * r
    a = _ri(rng, 2, total - 2)
    return a, total - a, c, total, r


def _money_left(rng: random.Random) -> tuple[int, int, int, int, int]:
    b, c = _ri(rng, 2, 5), _ri(rng, 2, 5)
    a = _ri(rng, b * c + 2, b * c + 15)
    return a, b, c, b * c, a - b * c


def _times_together(rng: random.Random) -> tuple[int, int, int, int, int]:
    a, b = _ri(rng, 2, 8), _ri(rng, 2, 3)
    return a, b, 0, a * b, a + a * b


def _pages_left(rng: random.Random) -> tuple[int, int, int, int, int]:
    b, c = _ri(rng, 2, 8), _ri(rng, 2, 5)
    a = _ri(rng, b * c + 2, b * c + 30)
    return a, b, c, b * c, a - b * c


def _basket(rng: random.Random) -> tuple[int, int, int, int, int]:
    a = _ri(rng, 5, 15)
    b, c = _ri(rng, 2, a - 2), _ri(rng, 2, 10)
    return a, b, c, a - b, a - b + c


def _pack(rng: random.Random) -> tuple[int, int, int, int, int]:
    b, r = _ri(rng, 2, 6), _ri(rng, 2, 8)
    return b * r, b, 0, 0, r


TEMPLATES: tuple[Template, ...] = (
    Template("add_buy", 1, _add, {
        "en": lambda x: f"{x.P} has {x.a} {x.o}. {x.P} buys {x.b} more {x.o}. How many {x.o} does {x.P} have now?",
        "de": lambda x: f"{x.P} hat {x.a} {x.o}. {x.P} kauft {x.b} weitere {x.o}. Wie viele {x.o} hat {x.P} jetzt?",
        "fr": lambda x: f"{x.P} a {x.a} {x.o}. {x.P} achète {x.b} {x.o} de plus. Combien {x.de}{x.o} {x.P} a-t-{x.il} maintenant ?",
        "es": lambda x: f"{x.P} tiene {x.a} {x.o}. {x.P} compra {x.b} {x.o} más. ¿{x.cu} {x.o} tiene {x.P} ahora?",
        "ru": lambda x: f"У {x.Pg} {x.n(x.a)}. {x.P} покупает ещё {x.n(x.b)}. Сколько {x.o} теперь у {x.Pg}?",
        "zh": lambda x: f"{x.P}有{x.a}{x.cl}{x.o}。{x.P}又买了{x.b}{x.cl}{x.o}。{x.P}现在有多少{x.cl}{x.o}？",
        "ja": lambda x: f"{x.P}は{x.o}を{x.a}{x.cl}持っています。{x.P}は{x.o}をさらに{x.b}{x.cl}買いました。{x.P}は今、{x.o}を何{x.cl}持っていますか？",
        "th": lambda x: f"{x.P}มี{x.o} {x.a} {x.cl} {x.P}ซื้อ{x.o}เพิ่มอีก {x.b} {x.cl} ตอนนี้{x.P}มี{x.o}กี่{x.cl}",
        "sw": lambda x: f"{x.P} ana {x.o} {x.a}. {x.P} ananunua {x.o} {x.b} zaidi. Sasa {x.P} ana {x.o} {x.ngapi}?",
    }, lambda x: f"{x.P} starts with {x.a} {x.o} and buys {x.b} more. {x.a} + {x.b} = {x.r}. The answer is {x.r}."),
    Template("sub_give", 1, _sub, {
        "en": lambda x: f"{x.P} has {x.a} {x.o}. {x.P} gives {x.b} {x.o} to {x.Q}. How many {x.o} does {x.P} have left?",
        "de": lambda x: f"{x.P} hat {x.a} {x.o}. {x.P} gibt {x.Q} {x.b} {x.o}. Wie viele {x.o} hat {x.P} noch?",
        "fr": lambda x: f"{x.P} a {x.a} {x.o}. {x.P} donne {x.b} {x.o} à {x.Q}. Combien {x.de}{x.o} reste-t-il à {x.P} ?",
        "es": lambda x: f"{x.P} tiene {x.a} {x.o}. {x.P} le da {x.b} {x.o} a {x.Q}. ¿{x.cu} {x.o} le quedan a {x.P}?",
        "ru": lambda x: f"У {x.Pg} {x.n(x.a)}. {x.P} отдаёт {x.Qd} {x.n(x.b)}. Сколько {x.o} осталось у {x.Pg}?",
        "zh": lambda x: f"{x.P}有{x.a}{x.cl}{x.o}。{x.P}给了{x.Q}{x.b}{x.cl}{x.o}。{x.P}还剩多少{x.cl}{x.o}？",
        "ja": lambda x: f"{x.P}は{x.o}を{x.a}{x.cl}持っています。{x.P}は{x.Q}に{x.o}を{x.b}{x.cl}あげました。{x.P}の{x.o}は何{x.cl}残っていますか？",
        "th": lambda x: f"{x.P}มี{x.o} {x.a} {x.cl} {x.P}ให้{x.o}แก่{x.Q} {x.b} {x.cl} {x.P}เหลือ{x.o}กี่{x.cl}",
        "sw": lambda x: f"{x.P} ana {x.o} {x.a}. {x.P} anampa {x.Q} {x.o} {x.b}. {x.P} amebaki na {x.o} {x.ngapi}?",
    }, lambda x: f"{x.P} starts with {x.a} {x.o} and gives away {x.b}. {x.a} - {x.b} = {x.r}. The answer is {x.r}."),
    Template("mul_boxes", 1, _mul(2, 6, 2, 8), {
        "en": lambda x: f"{x.P} has {x.a} boxes. Each box has {x.b} {x.o} in it. How many {x.o} does {x.P} have in total?",
        "de": lambda x: f"{x.P} hat {x.a} Schachteln. In jeder Schachtel sind {x.b} {x.o}. Wie viele {x.o} hat {x.P} insgesamt?",
        "fr": lambda x: f"{x.P} a {x.a} boîtes. Chaque boîte contient {x.b} {x.o}. Combien {x.de}{x.o} {x.P} a-t-{x.il} en tout ?",
        "es": lambda x: f"{x.P} tiene {x.a} cajas. Cada caja tiene {x.b} {x.o}. ¿{x.cu} {x.o} tiene {x.P} en total?",
        "ru": lambda x: f"У {x.Pg} {x.ru(x.a, RU_BOX)}. В каждой коробке по {x.n(x.b)}. Сколько всего {x.o} у {x.Pg}?",
        "zh": lambda x: f"{x.P}有{x.a}个盒子，每个盒子里有{x.b}{x.cl}{x.o}。{x.P}一共有多少{x.cl}{x.o}？",
        "ja": lambda x: f"{x.P}は箱を{x.a}個持っています。それぞれの箱には{x.o}が{x.b}{x.cl}入っています。{x.P}は{x.o}を全部で何{x.cl}持っていますか？",
        "th": lambda x: f"{x.P}มีกล่อง {x.a} ใบ แต่ละกล่องมี{x.o} {x.b} {x.cl} {x.P}มี{x.o}ทั้งหมดกี่{x.cl}",
        "sw": lambda x: f"{x.P} ana masanduku {x.a}. Kila sanduku lina {x.o} {x.b}. {x.P} ana {x.o} {x.ngapi} kwa jumla?",
    }, lambda x: f"There are {x.a} boxes with {x.b} {x.o} in each box. {x.a} * {x.b} = {x.r}. The answer is {x.r}."),
    Template("div_share", 1, _div, {
        "en": lambda x: f"{x.P} shares {x.a} {x.o} equally among {x.b} friends. How many {x.o} does each friend get?",
        "de": lambda x: f"{x.P} verteilt {x.a} {x.o} gleichmäßig an {x.b} Freunde. Wie viele {x.o} bekommt jeder Freund?",
        "fr": lambda x: f"{x.P} partage {x.a} {x.o} équitablement entre {x.b} amis. Combien {x.de}{x.o} chaque ami reçoit-il ?",
        "es": lambda x: f"{x.P} reparte {x.a} {x.o} en partes iguales entre {x.b} amigos. ¿{x.cu} {x.o} recibe cada amigo?",
        "ru": lambda x: f"{x.P} поровну раздаёт {x.n(x.a)} {x.b} друзьям. Сколько {x.o} получит каждый друг?",
        "zh": lambda x: f"{x.P}把{x.a}{x.cl}{x.o}平均分给{x.b}个朋友。每个朋友能分到多少{x.cl}{x.o}？",
        "ja": lambda x: f"{x.P}は{x.o}{x.a}{x.cl}を{x.b}人の友達に同じ数ずつ分けます。友達一人あたり何{x.cl}もらえますか？",
        "th": lambda x: f"{x.P}แบ่ง{x.o} {x.a} {x.cl} ให้เพื่อน {x.b} คนเท่า ๆ กัน เพื่อนแต่ละคนจะได้{x.o}กี่{x.cl}",
        "sw": lambda x: f"{x.P} anagawa {x.o} {x.a} kwa usawa kwa marafiki {x.b}. Kila rafiki anapata {x.o} {x.ngapi}?",
    }, lambda x: f"{x.a} {x.o} shared equally among {x.b} friends is {x.a} / {x.b} = {x.r} each. The answer is {x.r}."),
    Template("more_than", 1, _add, {
        "en": lambda x: f"{x.P} has {x.a} {x.o}. {x.Q} has {x.b} more {x.o} than {x.P}. How many {x.o} does {x.Q} have?",
        "de": lambda x: f"{x.P} hat {x.a} {x.o}. {x.Q} hat {x.b} {x.o} mehr als {x.P}. Wie viele {x.o} hat {x.Q}?",
        "fr": lambda x: f"{x.P} a {x.a} {x.o}. {x.Q} a {x.b} {x.o} de plus {x.que}{x.P}. Combien {x.de}{x.o} {x.Q} a-t-{x.ilQ} ?",
        "es": lambda x: f"{x.P} tiene {x.a} {x.o}. {x.Q} tiene {x.b} {x.o} más que {x.P}. ¿{x.cu} {x.o} tiene {x.Q}?",
        "ru": lambda x: f"У {x.Pg} {x.n(x.a)}. У {x.Qg} на {x.n(x.b)} больше, чем у {x.Pg}. Сколько {x.o} у {x.Qg}?",
        "zh": lambda x: f"{x.P}有{x.a}{x.cl}{x.o}。{x.Q}的{x.o}比{x.P}多{x.b}{x.cl}。{x.Q}有多少{x.cl}{x.o}？",
        "ja": lambda x: f"{x.P}は{x.o}を{x.a}{x.cl}持っています。{x.Q}は{x.P}より{x.o}を{x.b}{x.cl}多く持っています。{x.Q}は{x.o}を何{x.cl}持っていますか？",
        "th": lambda x: f"{x.P}มี{x.o} {x.a} {x.cl} {x.Q}มี{x.o}มากกว่า{x.P} {x.b} {x.cl} {x.Q}มี{x.o}กี่{x.cl}",
        "sw": lambda x: f"{x.P} ana {x.o} {x.a}. {x.Q} ana {x.o} {x.b} zaidi ya {x.P}. {x.Q} ana {x.o} {x.ngapi}?",
    }, lambda x: f"{x.Q} has {x.b} more than the {x.a} {x.o} of {x.P}. {x.a} + {x.b} = {x.r}. The answer is {x.r}."),
    Template("fewer_than", 1, _sub, {
        "en": lambda x: f"{x.P} has {x.a} {x.o}. {x.Q} has {x.b} fewer {x.o} than {x.P}. How many {x.o} does {x.Q} have?",
        "de": lambda x: f"{x.P} hat {x.a} {x.o}. {x.Q} hat {x.b} {x.o} weniger als {x.P}. Wie viele {x.o} hat {x.Q}?",
        "fr": lambda x: f"{x.P} a {x.a} {x.o}. {x.Q} a {x.b} {x.o} de moins {x.que}{x.P}. Combien {x.de}{x.o} {x.Q} a-t-{x.ilQ} ?",
        "es": lambda x: f"{x.P} tiene {x.a} {x.o}. {x.Q} tiene {x.b} {x.o} menos que {x.P}. ¿{x.cu} {x.o} tiene {x.Q}?",
        "ru": lambda x: f"У {x.Pg} {x.n(x.a)}. У {x.Qg} на {x.n(x.b)} меньше, чем у {x.Pg}. Сколько {x.o} у {x.Qg}?",
        "zh": lambda x: f"{x.P}有{x.a}{x.cl}{x.o}。{x.Q}的{x.o}比{x.P}少{x.b}{x.cl}。{x.Q}有多少{x.cl}{x.o}？",
        "ja": lambda x: f"{x.P}は{x.o}を{x.a}{x.cl}持っています。{x.Q}の{x.o}は{x.P}より{x.b}{x.cl}少ないです。{x.Q}は{x.o}を何{x.cl}持っていますか？",
        "th": lambda x: f"{x.P}มี{x.o} {x.a} {x.cl} {x.Q}มี{x.o}น้อยกว่า{x.P} {x.b} {x.cl} {x.Q}มี{x.o}กี่{x.cl}",
        "sw": lambda x: f"{x.P} ana {x.o} {x.a}. {x.Q} ana {x.o} {x.chache} kuliko {x.P} kwa {x.b}. {x.Q} ana {x.o} {x.ngapi}?",
    }, lambda x: f"{x.Q} has {x.b} fewer than the {x.a} {x.o} of {x.P}. {x.a} - {x.b} = {x.r}. The answer is {x.r}."),
    Template("together", 1, _together, {
        "en": lambda x: f"{x.P} has {x.a} {x.o} and {x.Q} has {x.b} {x.o}. How many {x.o} do they have together?",
        "de": lambda x: f"{x.P} hat {x.a} {x.o} und {x.Q} hat {x.b} {x.o}. Wie viele {x.o} haben die beiden zusammen?",
        "fr": lambda x: f"{x.P} a {x.a} {x.o} et {x.Q} en a {x.b}. Combien {x.de}{x.o} ont-{x.ils} ensemble ?",
        "es": lambda x: f"{x.P} tiene {x.a} {x.o} y {x.Q} tiene {x.b} {x.o}. ¿{x.cu} {x.o} tienen entre {x.los_dos}?",
        "ru": lambda x: f"У {x.Pg} {x.n(x.a)}, а у {x.Qg} — {x.n(x.b)}. Сколько {x.o} у них вместе?",
        "zh": lambda x: f"{x.P}有{x.a}{x.cl}{x.o}，{x.Q}有{x.b}{x.cl}{x.o}。两人一共有多少{x.cl}{x.o}？",
        "ja": lambda x: f"{x.P}は{x.o}を{x.a}{x.cl}、{x.Q}は{x.b}{x.cl}持っています。ふたり合わせて{x.o}を何{x.cl}持っていますか？",
        "th": lambda x: f"{x.P}มี{x.o} {x.a} {x.cl} และ{x.Q}มี{x.o} {x.b} {x.cl} ทั้งสองคนมี{x.o}รวมกันกี่{x.cl}",
        "sw": lambda x: f"{x.P} ana {x.o} {x.a} na {x.Q} ana {x.o} {x.b}. Wote wawili wana {x.o} {x.ngapi} kwa pamoja?",
    }, lambda x: f"Together they have {x.a} + {x.b} = {x.r} {x.o}. The answer is {x.r}."),
    Template("times_as_many", 1, _mul(2, 10, 2, 4), {
        "en": lambda x: f"{x.P} has {x.a} {x.o}. {x.Q} has {x.b} times as many {x.o} as {x.P}. How many {x.o} does {x.Q} have?",
        "de": lambda x: f"{x.P} hat {x.a} {x.o}. {x.Q} hat {x.b}-mal so viele {x.o} wie {x.P}. Wie viele {x.o} hat {x.Q}?",
        "fr": lambda x: f"{x.P} a {x.a} {x.o}. {x.Q} a {x.b} fois plus {x.de}{x.o} {x.que}{x.P}. Combien {x.de}{x.o} {x.Q} a-t-{x.ilQ} ?",
        "es": lambda x: f"{x.P} tiene {x.a} {x.o}. {x.Q} tiene {x.b} veces la cantidad de {x.o} que tiene {x.P}. ¿{x.cu} {x.o} tiene {x.Q}?",
        "ru": lambda x: f"У {x.Pg} {x.n(x.a)}. У {x.Qg} в {x.ru(x.b, RU_TIMES)} больше {x.o}, чем у {x.Pg}. Сколько {x.o} у {x.Qg}?",
        "zh": lambda x: f"{x.P}有{x.a}{x.cl}{x.o}。{x.Q}的{x.o}数量是{x.P}的{x.b}倍。{x.Q}有多少{x.cl}{x.o}？",
        "ja": lambda x: f"{x.P}は{x.o}を{x.a}{x.cl}持っています。{x.Q}は{x.P}の{x.b}倍の数の{x.o}を持っています。{x.Q}は{x.o}を何{x.cl}持っていますか？",
        "th": lambda x: f"{x.P}มี{x.o} {x.a} {x.cl} {x.Q}มี{x.o}เป็น {x.b} เท่าของ{x.P} {x.Q}มี{x.o}กี่{x.cl}",
        "sw": lambda x: f"{x.P} ana {x.o} {x.a}. {x.Q} ana {x.o} mara {x.b} ya idadi ya {x.o} ya {x.P}. {x.Q} ana {x.o} {x.ngapi}?",
    }, lambda x: f"{x.Q} has {x.b} times the {x.a} {x.o} of {x.P}. {x.a} * {x.b} = {x.r}. The answer is {x.r}."),
    Template("pages_per_day", 1, _mul(2, 10, 2, 7), {
        "en": lambda x: f"{x.P} reads {x.a} pages every day. How many pages does {x.P} read in {x.b} days?",
        "de": lambda x: f"{x.P} liest jeden Tag {x.a} Seiten. Wie viele Seiten liest {x.P} in {x.b} Tagen?",
        "fr": lambda x: f"{x.P} lit {x.a} pages par jour. Combien de pages {x.P} lit-{x.il} en {x.b} jours ?",
        "es": lambda x: f"{x.P} lee {x.a} páginas cada día. ¿Cuántas páginas lee {x.P} en {x.b} días?",
        "ru": lambda x: f"{x.P} читает {x.ru(x.a, RU_PAGE)} в день. Сколько страниц {x.P} прочитает за {x.ru(x.b, RU_DAY)}?",
        "zh": lambda x: f"{x.P}每天读{x.a}页书。{x.P}{x.b}天一共读多少页？",
        "ja": lambda x: f"{x.P}は毎日{x.a}ページずつ本を読みます。{x.b}日間で何ページ読みますか？",
        "th": lambda x: f"{x.P}อ่านหนังสือวันละ {x.a} หน้า ใน {x.b} วัน{x.P}จะอ่านได้กี่หน้า",
        "sw": lambda x: f"{x.P} anasoma kurasa {x.a} kila siku. {x.P} atasoma kurasa ngapi kwa siku {x.b}?",
    }, lambda x: f"{x.P} reads {x.a} pages a day for {x.b} days. {x.a} * {x.b} = {x.r}. The answer is {x.r}."),
    Template("price", 1, _mul(2, 8, 2, 9), {
        "en": lambda x: f"{x.P} buys {x.a} {x.o}. Each {x.sg} costs {x.b} dollars. How many dollars does {x.P} pay?",
        "de": lambda x: f"{x.P} kauft {x.a} {x.o}. Jedes Stück kostet {x.b} Dollar. Wie viele Dollar bezahlt {x.P}?",
        "fr": lambda x: f"{x.P} achète {x.a} {x.o} à {x.b} dollars pièce. Combien de dollars {x.P} paie-t-{x.il} ?",
        "es": lambda x: f"{x.P} compra {x.a} {x.o} a {x.b} dólares cada {x.uno}. ¿Cuántos dólares paga {x.P}?",
        "ru": lambda x: f"{x.P} покупает {x.n(x.a)} по {x.ru(x.b, RU_DOLLAR)} за штуку. Сколько долларов {x.P} заплатит?",
        "zh": lambda x: f"{x.P}买了{x.a}{x.cl}{x.o}，每{x.cl}{x.b}美元。{x.P}一共要付多少美元？",
        "ja": lambda x: f"{x.P}は1{x.cl}{x.b}ドルの{x.o}を{x.a}{x.cl}買いました。全部で何ドル払いましたか？",
        "th": lambda x: f"{x.P}ซื้อ{x.o} {x.a} {x.cl} ราคา{x.cl}ละ {x.b} ดอลลาร์ {x.P}ต้องจ่ายเงินทั้งหมดกี่ดอลลาร์",
        "sw": lambda x: f"{x.P} ananunua {x.o} {x.a}. Kila {x.sg} {x.pre}nagharimu dola {x.b}. {x.P} analipa dola ngapi kwa jumla?",
    }, lambda x: f"{x.a} {x.o} at {x.b} dollars each cost {x.a} * {x.b} = {x.r} dollars. The answer is {x.r}."),
    Template("buy_then_give", 2, _buy_give, {
        "en": lambda x: f"{x.P} has {x.a} {x.o}. {x.P} buys {x.b} more {x.o} and then gives {x.c} {x.o} to {x.Q}. How many {x.o} does {x.P} have now?",
        "de": lambda x: f"{x.P} hat {x.a} {x.o}. {x.P} kauft {x.b} weitere {x.o} und gibt dann {x.c} {x.o} an {x.Q} ab. Wie viele {x.o} hat {x.P} jetzt?",
        "fr": lambda x: f"{x.P} a {x.a} {x.o}. {x.P} en achète {x.b} de plus, puis en donne {x.c} à {x.Q}. Combien {x.de}{x.o} {x.P} a-t-{x.il} maintenant ?",
        "es": lambda x: f"{x.P} tiene {x.a} {x.o}. {x.P} compra {x.b} {x.o} más y luego le da {x.c} a {x.Q}. ¿{x.cu} {x.o} tiene {x.P} ahora?",
        "ru": lambda x: f"У {x.Pg} {x.n(x.a)}. {x.P} покупает ещё {x.n(x.b)}, а потом отдаёт {x.n(x.c)} {x.Qd}. Сколько {x.o} теперь у {x.Pg}?",
        "zh": lambda x: f"{x.P}有{x.a}{x.cl}{x.o}。{x.P}又买了{x.b}{x.cl}，然后给了{x.Q}{x.c}{x.cl}。{x.P}现在有多少{x.cl}{x.o}？",
        "ja": lambda x: f"{x.P}は{x.o}を{x.a}{x.cl}持っています。さらに{x.b}{x.cl}買って、そのあと{x.Q}に{x.c}{x.cl}あげました。{x.P}は今、{x.o}を何{x.cl}持っていますか？",
        "th": lambda x: f"{x.P}มี{x.o} {x.a} {x.cl} {x.P}ซื้อเพิ่มอีก {x.b} {x.cl} แล้วให้{x.Q}ไป {x.c} {x.cl} ตอนนี้{x.P}มี{x.o}กี่{x.cl}",
        "sw": lambda x: f"{x.P} ana {x.o} {x.a}. {x.P} ananunua {x.o} {x.b} zaidi, kisha anampa {x.Q} {x.o} {x.c}. Sasa {x.P} ana {x.o} {x.ngapi}?",
    }, lambda x: (f"After buying, {x.P} has {x.a} + {x.b} = {x.s} {x.o}. After giving {x.c} to {x.Q}, {x.P} has "
                  f"{x.s} - {x.c} = {x.r}. The answer is {x.r}.")),
    Template("boxes_plus_loose", 2, _groups_plus, {
        "en": lambda x: f"{x.P} has {x.a} boxes with {x.b} {x.o} in each box. {x.P} also has {x.c} more {x.o} outside the boxes. How many {x.o} does {x.P} have in total?",
        "de": lambda x: f"{x.P} hat {x.a} Schachteln. In jeder Schachtel sind {x.b} {x.o}. Außerdem hat {x.P} noch {x.c} einzelne {x.o}. Wie viele {x.o} hat {x.P} insgesamt?",
        "fr": lambda x: f"{x.P} a {x.a} boîtes de {x.b} {x.o} chacune, plus {x.c} {x.o} à part. Combien {x.de}{x.o} {x.P} a-t-{x.il} en tout ?",
        "es": lambda x: f"{x.P} tiene {x.a} cajas con {x.b} {x.o} cada una y además {x.c} {x.o} {x.sueltos}. ¿{x.cu} {x.o} tiene {x.P} en total?",
        "ru": lambda x: f"У {x.Pg} {x.ru(x.a, RU_BOX)}, в каждой по {x.n(x.b)}, и ещё {x.n(x.c)} отдельно. Сколько всего {x.o} у {x.Pg}?",
        "zh": lambda x: f"{x.P}有{x.a}个盒子，每个盒子里有{x.b}{x.cl}{x.o}，另外还有{x.c}{x.cl}{x.o}没有放在盒子里。{x.P}一共有多少{x.cl}{x.o}？",
        "ja": lambda x: f"{x.P}は{x.o}が{x.b}{x.cl}ずつ入った箱を{x.a}個持っていて、ほかに箱に入っていない{x.o}が{x.c}{x.cl}あります。{x.P}は{x.o}を全部で何{x.cl}持っていますか？",
        "th": lambda x: f"{x.P}มีกล่อง {x.a} ใบ แต่ละกล่องมี{x.o} {x.b} {x.cl} และยังมี{x.o}ที่ไม่ได้อยู่ในกล่องอีก {x.c} {x.cl} {x.P}มี{x.o}ทั้งหมดกี่{x.cl}",
        "sw": lambda x: f"{x.P} ana masanduku {x.a}, na kila sanduku lina {x.o} {x.b}. Pia ana {x.o} {x.c} nje ya masanduku. {x.P} ana {x.o} {x.ngapi} kwa jumla?",
    }, lambda x: (f"The boxes hold {x.a} * {x.b} = {x.s} {x.o}. With the {x.c} outside, that is {x.s} + {x.c} = {x.r}. "
                  f"The answer is {x.r}.")),
    Template("buy_then_share", 2, _buy_share, {
        "en": lambda x: f"{x.P} has {x.a} {x.o} and buys {x.b} more. Then {x.P} shares all the {x.o} equally among {x.c} friends. How many {x.o} does each friend get?",
        "de": lambda x: f"{x.P} hat {x.a} {x.o} und kauft {x.b} weitere dazu. Dann verteilt {x.P} alle {x.o} gleichmäßig an {x.c} Freunde. Wie viele {x.o} bekommt jeder Freund?",
        "fr": lambda x: f"{x.P} a {x.a} {x.o} et en achète {x.b} de plus. Ensuite, {x.P} partage {x.tous} les {x.o} équitablement entre {x.c} amis. Combien {x.de}{x.o} chaque ami reçoit-il ?",
        "es": lambda x: f"{x.P} tiene {x.a} {x.o} y compra {x.b} más. Luego reparte {x.todos} {x.o} en partes iguales entre {x.c} amigos. ¿{x.cu} {x.o} recibe cada amigo?",
        "ru": lambda x: f"У {x.Pg} {x.n(x.a)}, и {x.P} покупает ещё {x.n(x.b)}. Потом {x.P} поровну раздаёт их {x.c} друзьям. Сколько {x.o} получит каждый друг?",
        "zh": lambda x: f"{x.P}有{x.a}{x.cl}{x.o}，又买了{x.b}{x.cl}。然后{x.P}把所有的{x.o}平均分给{x.c}个朋友。每个朋友能分到多少{x.cl}{x.o}？",
        "ja": lambda x: f"{x.P}は{x.o}を{x.a}{x.cl}持っていて、さらに{x.b}{x.cl}買いました。それから全部の{x.o}を{x.c}人の友達に同じ数ずつ分けました。友達一人あたり何{x.cl}もらえますか？",
        "th": lambda x: f"{x.P}มี{x.o} {x.a} {x.cl} และซื้อเพิ่มอีก {x.b} {x.cl} จากนั้น{x.P}แบ่ง{x.o}ทั้งหมดให้เพื่อน {x.c} คนเท่า ๆ กัน เพื่อนแต่ละคนจะได้{x.o}กี่{x.cl}",
        "sw": lambda x: f"{x.P} ana {x.o} {x.a} na ananunua {x.o} {x.b} zaidi. Kisha anawagawia marafiki {x.c} kwa usawa. Kila rafiki anapata {x.o} {x.ngapi}?",
    }, lambda x: (f"After buying, {x.P} has {x.a} + {x.b} = {x.s} {x.o}. Shared among {x.c} friends, each gets "
                  f"{x.s} / {x.c} = {x.r}. The answer is {x.r}.")),
    Template("money_left", 2, _money_left, {
        "en": lambda x: f"{x.P} has {x.a} dollars. {x.P} buys {x.b} {x.o} that cost {x.c} dollars each. How many dollars does {x.P} have left?",
        "de": lambda x: f"{x.P} hat {x.a} Dollar. {x.P} kauft {x.b} {x.o} zu je {x.c} Dollar. Wie viele Dollar hat {x.P} noch?",
        "fr": lambda x: f"{x.P} a {x.a} dollars. {x.P} achète {x.b} {x.o} à {x.c} dollars pièce. Combien de dollars reste-t-il à {x.P} ?",
        "es": lambda x: f"{x.P} tiene {x.a} dólares. {x.P} compra {x.b} {x.o} a {x.c} dólares cada {x.uno}. ¿Cuántos dólares le quedan a {x.P}?",
        "ru": lambda x: f"У {x.Pg} {x.ru(x.a, RU_DOLLAR)}. {x.P} покупает {x.n(x.b)} по {x.ru(x.c, RU_DOLLAR)} за штуку. Сколько долларов осталось у {x.Pg}?",
        "zh": lambda x: f"{x.P}有{x.a}美元。{x.P}买了{x.b}{x.cl}{x.o}，每{x.cl}{x.c}美元。{x.P}还剩多少美元？",
        "ja": lambda x: f"{x.P}は{x.a}ドル持っています。1{x.cl}{x.c}ドルの{x.o}を{x.b}{x.cl}買いました。{x.P}には何ドル残っていますか？",
        "th": lambda x: f"{x.P}มีเงิน {x.a} ดอลลาร์ {x.P}ซื้อ{x.o} {x.b} {x.cl} ราคา{x.cl}ละ {x.c} ดอลลาร์ {x.P}เหลือเงินกี่ดอลลาร์",
        "sw": lambda x: f"{x.P} ana dola {x.a}. {x.P} ananunua {x.o} {x.b}, na kila {x.sg} {x.pre}nagharimu dola {x.c}. {x.P} amebaki na dola ngapi?",
    }, lambda x: (f"The {x.o} cost {x.b} * {x.c} = {x.s} dollars. {x.P} has {x.a} - {x.s} = {x.r} dollars left. "
                  f"The answer is {x.r}.")),
    Template("times_together", 2, _times_together, {
        "en": lambda x: f"{x.P} has {x.a} {x.o}. {x.Q} has {x.b} times as many {x.o} as {x.P}. How many {x.o} do they have together?",
        "de": lambda x: f"{x.P} hat {x.a} {x.o}. {x.Q} hat {x.b}-mal so viele {x.o} wie {x.P}. Wie viele {x.o} haben die beiden zusammen?",
        "fr": lambda x: f"{x.P} a {x.a} {x.o}. {x.Q} a {x.b} fois plus {x.de}{x.o} {x.que}{x.P}. Combien {x.de}{x.o} ont-{x.ils} ensemble ?",
        "es": lambda x: f"{x.P} tiene {x.a} {x.o}. {x.Q} tiene {x.b} veces la cantidad de {x.o} que tiene {x.P}. ¿{x.cu} {x.o} tienen entre {x.los_dos}?",
        "ru": lambda x: f"У {x.Pg} {x.n(x.a)}. У {x.Qg} в {x.ru(x.b, RU_TIMES)} больше {x.o}, чем у {x.Pg}. Сколько {x.o} у них вместе?",
        "zh": lambda x: f"{x.P}有{x.a}{x.cl}{x.o}。{x.Q}的{x.o}数量是{x.P}的{x.b}倍。两人一共有多少{x.cl}{x.o}？",
        "ja": lambda x: f"{x.P}は{x.o}を{x.a}{x.cl}持っています。{x.Q}は{x.P}の{x.b}倍の数の{x.o}を持っています。ふたり合わせて{x.o}を何{x.cl}持っていますか？",
        "th": lambda x: f"{x.P}มี{x.o} {x.a} {x.cl} {x.Q}มี{x.o}เป็น {x.b} เท่าของ{x.P} ทั้งสองคนมี{x.o}รวมกันกี่{x.cl}",
        "sw": lambda x: f"{x.P} ana {x.o} {x.a}. {x.Q} ana {x.o} mara {x.b} ya idadi ya {x.o} ya {x.P}. Wote wawili wana {x.o} {x.ngapi} kwa pamoja?",
    }, lambda x: (f"{x.Q} has {x.a} * {x.b} = {x.s} {x.o}. Together they have {x.a} + {x.s} = {x.r}. "
                  f"The answer is {x.r}.")),
    Template("pages_left", 2, _pages_left, {
        "en": lambda x: f"A book has {x.a} pages. {x.P} reads {x.b} pages every day for {x.c} days. How many pages are left to read?",
        "de": lambda x: f"Ein Buch hat {x.a} Seiten. {x.P} liest {x.c} Tage lang jeden Tag {x.b} Seiten. Wie viele Seiten muss {x.P} noch lesen?",
        "fr": lambda x: f"Un livre a {x.a} pages. {x.P} lit {x.b} pages par jour pendant {x.c} jours. Combien de pages reste-t-il à lire ?",
        "es": lambda x: f"Un libro tiene {x.a} páginas. {x.P} lee {x.b} páginas al día durante {x.c} días. ¿Cuántas páginas le quedan por leer?",
        "ru": lambda x: f"В книге {x.ru(x.a, RU_PAGE)}. {x.P} читает по {x.ru(x.b, RU_PAGE)} в день {x.ru(x.c, RU_DAY)} подряд. Сколько страниц осталось прочитать?",
        "zh": lambda x: f"一本书有{x.a}页。{x.P}每天读{x.b}页，连续读了{x.c}天。还剩多少页没有读？",
        "ja": lambda x: f"ある本は{x.a}ページあります。{x.P}は毎日{x.b}ページずつ{x.c}日間読みました。残りは何ページですか？",
        "th": lambda x: f"หนังสือเล่มหนึ่งมี {x.a} หน้า {x.P}อ่านวันละ {x.b} หน้าเป็นเวลา {x.c} วัน ยังเหลืออีกกี่หน้าที่ยังไม่ได้อ่าน",
        "sw": lambda x: f"Kitabu kina kurasa {x.a}. {x.P} anasoma kurasa {x.b} kila siku kwa siku {x.c}. Kurasa ngapi zimebaki bila kusomwa?",
    }, lambda x: (f"{x.P} reads {x.b} * {x.c} = {x.s} pages. {x.a} - {x.s} = {x.r} pages are left. "
                  f"The answer is {x.r}.")),
    Template("basket", 2, _basket, {
        "en": lambda x: f"There are {x.a} {x.o} in a basket. {x.P} takes out {x.b} {x.o} and {x.Q} puts in {x.c} more {x.o}. How many {x.o} are in the basket now?",
        "de": lambda x: f"In einem Korb liegen {x.a} {x.o}. {x.P} nimmt {x.b} {x.o} heraus, und {x.Q} legt {x.c} {x.o} hinein. Wie viele {x.o} liegen jetzt im Korb?",
        "fr": lambda x: f"Il y a {x.a} {x.o} dans un panier. {x.P} en prend {x.b}, puis {x.Q} en ajoute {x.c}. Combien {x.de}{x.o} y a-t-il maintenant dans le panier ?",
        "es": lambda x: f"En una cesta hay {x.a} {x.o}. {x.P} saca {x.b} y {x.Q} mete {x.c} más. ¿{x.cu} {x.o} hay ahora en la cesta?",
        "ru": lambda x: f"В корзине {x.n(x.a)}. {x.P} берёт {x.n(x.b)}, а {x.Q} кладёт ещё {x.n(x.c)}. Сколько {x.o} теперь в корзине?",
        "zh": lambda x: f"篮子里有{x.a}{x.cl}{x.o}。{x.P}拿走了{x.b}{x.cl}，{x.Q}又放进去{x.c}{x.cl}。现在篮子里有多少{x.cl}{x.o}？",
        "ja": lambda x: f"かごに{x.o}が{x.a}{x.cl}入っています。{x.P}が{x.b}{x.cl}取り出し、{x.Q}が{x.c}{x.cl}入れました。今、かごには{x.o}が何{x.cl}入っていますか？",
        "th": lambda x: f"ในตะกร้ามี{x.o} {x.a} {x.cl} {x.P}หยิบออกไป {x.b} {x.cl} แล้ว{x.Q}ใส่เพิ่มอีก {x.c} {x.cl} ตอนนี้ในตะกร้ามี{x.o}กี่{x.cl}",
        "sw": lambda x: f"Kuna {x.o} {x.a} kwenye kikapu. {x.P} anatoa {x.o} {x.b}, kisha {x.Q} anaweka {x.o} {x.c} zaidi. Sasa kuna {x.o} {x.ngapi} kwenye kikapu?",
    }, lambda x: (f"After {x.P} takes {x.b} out, there are {x.a} - {x.b} = {x.s}. After {x.Q} puts in {x.c}, there "
                  f"are {x.s} + {x.c} = {x.r}. The answer is {x.r}.")),
    Template("pack_bags", 1, _pack, {
        "en": lambda x: f"{x.P} puts {x.a} {x.o} into bags, with {x.b} {x.o} in each bag. How many bags does {x.P} fill?",
        "de": lambda x: f"{x.P} packt {x.a} {x.o} in Tüten, je {x.b} Stück pro Tüte. Wie viele Tüten braucht {x.P}?",
        "fr": lambda x: f"{x.P} range {x.a} {x.o} dans des sachets de {x.b}. Combien de sachets {x.P} remplit-{x.il} ?",
        "es": lambda x: f"{x.P} guarda {x.a} {x.o} en bolsas de {x.b}. ¿Cuántas bolsas llena {x.P}?",
        "ru": lambda x: f"{x.P} раскладывает {x.n(x.a)} по пакетам, по {x.b} в каждый. Сколько пакетов получится?",
        "zh": lambda x: f"{x.P}把{x.a}{x.cl}{x.o}装进袋子里，每袋装{x.b}{x.cl}。一共需要多少个袋子？",
        "ja": lambda x: f"{x.P}は{x.o}{x.a}{x.cl}を{x.b}{x.cl}ずつ袋に入れます。袋はいくつ必要ですか？",
        "th": lambda x: f"{x.P}แบ่ง{x.o} {x.a} {x.cl} ใส่ถุง ถุงละ {x.b} {x.cl} {x.P}ต้องใช้ถุงกี่ใบ",
        "sw": lambda x: f"{x.P} anaweka {x.o} {x.a} kwenye mifuko, {x.o} {x.b} kwa kila mfuko. {x.P} anahitaji mifuko mingapi?",
    }, lambda x: f"{x.a} {x.o} with {x.b} in each bag fill {x.a} / {x.b} = {x.r} bags. The answer is {x.r}."),
)

BY_KEY = {t.key: t for t in TEMPLATES}

"""Names and countable objects of the synthetic world, spelled per language with the grammar they need.

Every surface form the templates use is written out here by hand: Russian case forms of names and
1/2-4/5+ noun forms, Chinese/Japanese/Thai classifiers, French/Spanish noun gender, Swahili noun
class (for the agreement of -ngapi "how many"). Numbers in the problems are always >= 2, so no
language needs its singular count form except Russian (21, 31, ... take the "one" form).
"""

from __future__ import annotations

from dataclasses import dataclass

LANGS = ("en", "de", "fr", "es", "ru", "zh", "ja", "th", "sw")


@dataclass(frozen=True)
class Name:
    gender: str  # "m" | "f": French/Spanish pronoun agreement
    forms: dict[str, str]
    ru_gen: str  # "у Анны"
    ru_dat: str  # "отдаёт Анне"


def _name(gender: str, en: str, de: str, fr: str, es: str, ru: tuple[str, str, str], zh: str, ja: str,
          th: str, sw: str) -> Name:
    return Name(gender, {"en": en, "de": de, "fr": fr, "es": es, "ru": ru[0], "zh": zh, "ja": ja, "th": th,
                         "sw": sw}, ru[1], ru[2])


NAMES: tuple[Name, ...] = (
    _name("f", "Anna", "Anna", "Anna", "Ana", ("Анна", "Анны", "Анне"), "安娜", "アンナ", "แอนนา", "Anna"),
    _name("m", "Tom", "Tom", "Tom", "Tomás", ("Том", "Тома", "Тому"), "汤姆", "トム", "ทอม", "Tom"),
    _name("f", "Maria", "Maria", "Marie", "María", ("Мария", "Марии", "Марии"), "玛丽亚", "マリア", "มาเรีย",
          "Maria"),
    _name("m", "Ali", "Ali", "Ali", "Alí", ("Али", "Али", "Али"), "阿里", "アリ", "อาลี", "Ali"),
    _name("f", "Lena", "Lena", "Léna", "Lena", ("Лена", "Лены", "Лене"), "莉娜", "レナ", "ลีนา", "Lena"),
    _name("m", "Juma", "Juma", "Juma", "Juma", ("Джума", "Джумы", "Джуме"), "朱马", "ジュマ", "จูมา", "Juma"),
    _name("m", "Ken", "Ken", "Ken", "Ken", ("Кен", "Кена", "Кену"), "小健", "ケン", "เคน", "Ken"),
    _name("f", "Sara", "Sara", "Sara", "Sara", ("Сара", "Сары", "Саре"), "萨拉", "サラ", "ซารา", "Sara"),
    _name("m", "Ivan", "Ivan", "Ivan", "Iván", ("Иван", "Ивана", "Ивану"), "伊万", "イワン", "อีวาน", "Ivan"),
    _name("f", "Mei", "Mei", "Mei", "Mei", ("Мэй", "Мэй", "Мэй"), "小梅", "メイ", "เหมย", "Mei"),
    _name("m", "Omar", "Omar", "Omar", "Omar", ("Омар", "Омара", "Омару"), "奥马尔", "オマル", "โอมาร์", "Omar"),
    _name("f", "Nia", "Nia", "Nia", "Nia", ("Ния", "Нии", "Ние"), "妮娅", "ニア", "เนีย", "Nia"),
)


@dataclass(frozen=True)
class Thing:
    en: tuple[str, str]  # singular, plural
    de: str  # plural (nominative = accusative)
    fr: tuple[str, str]  # plural, gender
    es: tuple[str, str]  # plural, gender
    ru: tuple[str, str, str]  # forms after 1 / 2-4 / 5+ (the last is also "сколько ...")
    zh: tuple[str, str]  # noun, classifier
    ja: tuple[str, str]  # noun, counter
    th: tuple[str, str]  # noun, classifier
    sw: tuple[str, str, str]  # plural, singular, noun class ("ma" | "n" | "vi")


THINGS: tuple[Thing, ...] = (
    Thing(("apple", "apples"), "Äpfel", ("pommes", "f"), ("manzanas", "f"), ("яблоко", "яблока", "яблок"),
          ("苹果", "个"), ("りんご", "個"), ("แอปเปิล", "ลูก"), ("matufaha", "tufaha", "ma")),
    Thing(("pencil", "pencils"), "Bleistifte", ("crayons", "m"), ("lápices", "m"),
          ("карандаш", "карандаша", "карандашей"), ("铅笔", "支"), ("鉛筆", "本"), ("ดินสอ", "แท่ง"),
          ("penseli", "penseli", "n")),
    Thing(("book", "books"), "Bücher", ("livres", "m"), ("libros", "m"), ("книга", "книги", "книг"),
          ("书", "本"), ("本", "冊"), ("หนังสือ", "เล่ม"), ("vitabu", "kitabu", "vi")),
    Thing(("sticker", "stickers"), "Aufkleber", ("autocollants", "m"), ("pegatinas", "f"),
          ("наклейка", "наклейки", "наклеек"), ("贴纸", "张"), ("シール", "枚"), ("สติกเกอร์", "แผ่น"),
          ("stika", "stika", "n")),
    Thing(("marble", "marbles"), "Murmeln", ("billes", "f"), ("canicas", "f"), ("шарик", "шарика", "шариков"),
          ("弹珠", "颗"), ("ビー玉", "個"), ("ลูกแก้ว", "ลูก"), ("gololi", "gololi", "n")),
    Thing(("candy", "candies"), "Bonbons", ("bonbons", "m"), ("caramelos", "m"), ("конфета", "конфеты", "конфет"),
          ("糖果", "颗"), ("あめ", "個"), ("ลูกอม", "เม็ด"), ("pipi", "pipi", "n")),
    Thing(("egg", "eggs"), "Eier", ("œufs", "m"), ("huevos", "m"), ("яйцо", "яйца", "яиц"), ("鸡蛋", "个"),
          ("卵", "個"), ("ไข่", "ฟอง"), ("mayai", "yai", "ma")),
    Thing(("flower", "flowers"), "Blumen", ("fleurs", "f"), ("flores", "f"), ("цветок", "цветка", "цветов"),
          ("花", "朵"), ("花", "本"), ("ดอกไม้", "ดอก"), ("maua", "ua", "ma")),
    Thing(("card", "cards"), "Karten", ("cartes", "f"), ("tarjetas", "f"), ("открытка", "открытки", "открыток"),
          ("卡片", "张"), ("カード", "枚"), ("การ์ด", "ใบ"), ("kadi", "kadi", "n")),
)

# Swahili agreement by noun class: "how many", "few", singular subject prefix ("kila tufaha li-na-gharimu")
SW_NGAPI = {"ma": "mangapi", "n": "ngapi", "vi": "vingapi"}
SW_CHACHE = {"ma": "machache", "n": "chache", "vi": "vichache"}
SW_SG_PREFIX = {"ma": "li", "n": "i", "vi": "ki"}


def ru_form(n: int, forms: tuple[str, str, str]) -> str:
    """Russian noun form after the number n: 1 яблоко, 3 яблока, 5 яблок, 11 яблок, 21 яблоко."""
    if 11 <= n % 100 <= 14:
        return forms[2]
    if n % 10 == 1:
        return forms[0]
    if 2 <= n % 10 <= 4:
        return forms[1]
    return forms[2]


RU_BOX = ("коробка", "коробки", "коробок")
RU_PAGE = ("страница", "страницы", "страниц")
RU_DAY = ("день", "дня", "дней")
RU_DOLLAR = ("доллар", "доллара", "долларов")
RU_TIMES = ("раз", "раза", "раз")

"""Languages SLAM works with: ISO 639-1 code -> English name, and the script its text must use.

The script check catches mislabelled rows (Latin text labelled zh/ja/ru/th/bn, say): a question in a
non-Latin-script language must be mostly written in that script.
"""

from __future__ import annotations

import functools
import re

NAMES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "ru": "Russian", "zh": "Chinese",
    "ja": "Japanese", "th": "Thai", "sw": "Swahili", "bn": "Bengali", "te": "Telugu", "it": "Italian",
    "pt": "Portuguese", "nl": "Dutch", "ko": "Korean", "ar": "Arabic", "hi": "Hindi", "vi": "Vietnamese",
    "id": "Indonesian", "tr": "Turkish", "uk": "Ukrainian", "pl": "Polish", "yo": "Yoruba", "ha": "Hausa",
}
# MGSM / MSVAMP file-name spellings
BY_NAME = {v: k for k, v in NAMES.items()}

# Unicode-name prefixes of the letters a language's text is written in (None = Latin, not checked strictly)
SCRIPTS: dict[str, tuple[str, ...]] = {
    "zh": ("CJK",), "ja": ("CJK", "HIRAGANA", "KATAKANA"), "ko": ("HANGUL", "CJK"),
    "ru": ("CYRILLIC",), "uk": ("CYRILLIC",), "th": ("THAI",), "bn": ("BENGALI",), "te": ("TELUGU",),
    "hi": ("DEVANAGARI",), "ar": ("ARABIC",),
}


def name(code: str) -> str:
    return NAMES.get(code, code)


# Code-point ranges of those scripts (regexes: per-character Python loops cost ~1 s per 10k questions)
_RANGES = {
    "LATIN": "A-Za-z\u00c0-\u024f\u1e00-\u1eff", "CJK": "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff",
    "HIRAGANA": "\u3040-\u309f", "KATAKANA": "\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f",
    "HANGUL": "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f", "CYRILLIC": "\u0400-\u052f",
    "THAI": "\u0e00-\u0e7f", "BENGALI": "\u0980-\u09ff", "TELUGU": "\u0c00-\u0c7f",
    "DEVANAGARI": "\u0900-\u097f", "ARABIC": "\u0600-\u06ff\u0750-\u077f",
}
_LETTER = re.compile(r"[^\W\d_]")


@functools.lru_cache(maxsize=64)
def _script_re(prefixes: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"(?=[^\W\d_])[" + "".join(_RANGES[p] for p in prefixes) + "]")


def script_share(text: str, lang: str) -> float:
    """Share of the letters in `text` written in `lang`'s script (Latin for languages not in SCRIPTS)."""
    letters = len(_LETTER.findall(text))
    if not letters:
        return 0.0
    return len(_script_re(SCRIPTS.get(lang, ("LATIN",))).findall(text)) / letters


def script_matches(text: str, lang: str, min_share: float = 0.5) -> bool:
    return script_share(text, lang) >= min_share

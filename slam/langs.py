"""Languages SLAM works with: ISO 639-1 code -> English name, and the script its text must use.

The script check catches mislabelled rows (Latin text labelled zh/ja/ru/th/bn, say): a question in a
non-Latin-script language must be mostly written in that script.
"""

from __future__ import annotations

import unicodedata

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


def script_share(text: str, lang: str) -> float:
    """Share of the letters in `text` written in `lang`'s script (1.0 for Latin-script languages)."""
    prefixes = SCRIPTS.get(lang)
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    if prefixes is None:
        return sum(1 for c in letters if unicodedata.name(c, "").startswith("LATIN")) / len(letters)
    return sum(1 for c in letters if unicodedata.name(c, "").startswith(prefixes)) / len(letters)


def script_matches(text: str, lang: str, min_share: float = 0.5) -> bool:
    return script_share(text, lang) >= min_share

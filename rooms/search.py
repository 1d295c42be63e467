"""Search tokens for chat text, Chinese included.

Chinese has no spaces between words, so a word tokenizer finds nothing in it. Muster
indexes CJK text as overlapping character pairs (bigrams: 水库水位 → 水库 库水 水位) and
other text as lower-cased words. A query is tokenized the same way and a message matches
when it holds every query token, so any run of two or more CJK characters in a message
is found. One-character CJK queries are kept as that character (matched only where the
message has the character on its own, e.g. a one-character run).
"""

from __future__ import annotations

import re
import unicodedata

_CJK = (
    r"\u3040-\u30ff"  # kana
    r"\u3400-\u4dbf"  # CJK extension A
    r"\u4e00-\u9fff"  # CJK unified ideographs
    r"\uac00-\ud7af"  # hangul
    r"\uf900-\ufaff"  # compatibility ideographs
)
_RUNS = re.compile(rf"([{_CJK}]+)|([^\W_{_CJK}]+)", re.UNICODE)
MAX_TOKENS = 256
MAX_TOKEN_LEN = 40


def tokenize(text: str) -> list[str]:
    """Distinct search tokens of `text`, in first-seen order."""
    text = unicodedata.normalize("NFKC", text).lower()
    seen: dict[str, None] = {}
    for match in _RUNS.finditer(text):
        cjk, word = match.group(1), match.group(2)
        if cjk:
            if len(cjk) == 1:
                seen.setdefault(cjk)
            for i in range(len(cjk) - 1):
                seen.setdefault(cjk[i : i + 2])
        elif word:
            seen.setdefault(word[:MAX_TOKEN_LEN])
        if len(seen) >= MAX_TOKENS:
            break
    return list(seen)[:MAX_TOKENS]


def query_tokens(query: str) -> list[str]:
    """Tokens a message must all hold to match `query`."""
    return tokenize(query)

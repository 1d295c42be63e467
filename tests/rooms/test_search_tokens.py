"""Search tokens (pure): Chinese bigrams, words, normalisation."""

from __future__ import annotations

import pytest

from rooms.search import MAX_TOKENS, query_tokens, tokenize


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("水库水位上涨", ["水库", "库水", "水位", "位上", "上涨"]),
        ("Level II 洪水", ["level", "ii", "洪水"]),
        ("救援队 3号 ROAD-7", ["救援", "援队", "3", "号", "road", "7"]),
        ("ＡＢＣ１２", ["abc12"]),  # full-width letters and digits fold to ASCII
        ("", []),
        ("!!! ...", []),
        ("水", ["水"]),
        ("水水水", ["水水"]),
    ],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_every_query_of_two_or_more_cjk_chars_is_covered_by_the_message_tokens() -> None:
    message = "请水利局立即核查东沟水库大坝渗漏情况"
    tokens = set(tokenize(message))
    for start in range(len(message)):
        for end in range(start + 2, len(message) + 1):
            assert set(query_tokens(message[start:end])) <= tokens


def test_tokens_are_bounded() -> None:
    assert len(tokenize(" ".join(f"w{i}" for i in range(1000)))) == MAX_TOKENS
    assert len(tokenize("x" * 500)[0]) == 40

"""Texts that tokenizers disagree on: accents, case, CJK, emoji, control and zero-width characters,
RTL marks, separators, unassigned code points, long words and 100 kB texts; plus seeded random
strings drawn from those same families."""
import random

FIXED = [
    "", " ", "\t\n\r", "Why does my code keep throwing me null pointer exception?",
    "Café naïve résumé coöperate", "ÀÉÎÕÜ àéîõü Ççñ", "İstanbul ıi İI", "ΟΔΟΣ Σίσυφος ΣΑΣ σ", "Straße STRASSE",
    "ﬁnance ﬂow", "ＡＢＣ ｆｕｌｌ－ｗｉｄｔｈ １２３", "wait… what‽", "“quotes” ‘single’ «guillemets»",
    "中文标点，测试。", "日本語のテキストとカタカナ", "한국어 텍스트", "𠀋𡈽𡌛 rare CJK ext B", "豈更車 compat",
    "emoji 😀👍🏽👨‍👩‍👧 flags 🇩🇪", "zero\u200bwidth\u200cjoin\u200dnon\ufeffbom", "soft\u00adhyphen",
    "rtl \u202eevil\u202c mark \u200f\u200e", "عربي مع English", "עברית", "null\x00byte", "bell\x07 esc\x1b[31m",
    "line\u2028sep\u2029para", "nbsp\u00a0thin\u2009ideographic\u3000space", "\x85next line\x1cfs",
    "replacement \ufffd char", "private \ue000 use", "unassigned \u0378 \U000e0080 x", "tag \U000e0041 chars",
    "combining a\u0301 e\u0308 n\u0303 stacked a\u0301\u0302\u0303", "Ǆ ǅ ǆ titlecase", "ﬀ ﬃ ligatures",
    "x" * 100, "x" * 101, "é" * 100, "é" * 101, "ab" + "\u0301" * 200, "😀" * 120,
    "C++ C# .NET node.js @user #tag $var 100% a&b <html> {json} [list] |pipe| ~tilde^ `tick`",
    "don't won't it's", "e-mail co-op", "1,000.50 3.14 -7", "http://example.com/a?b=c&d=e",
    "mixed ΑαΒβ ДдЖж ԱաԲբ", "Dž ǈ ǋ", "ǰ ẖ ẘ", "K Å Ω", "ⅷ ⅸ Ⅻ", "①②③", "㎏㎞", "ß ẞ",
]


def _long_text(seed, size=100000):
    rng = random.Random(seed)
    words = ["exception", "Java", "naïve", "中文", "😀", "null\u200b", "C++", "überflüssig", "ΣΟΦΙΑ", "a\u0301"]
    out, length = [], 0
    while length < size:
        word = rng.choice(words)
        out.append(word)
        length += len(word.encode("utf-8")) + 1
    return " ".join(out)


# Code point families to draw random strings from.
_FAMILIES = [(0x20, 0x7e), (0x0, 0x1f), (0x7f, 0x9f), (0xa0, 0x24f), (0x300, 0x36f), (0x370, 0x52f),
             (0x590, 0x6ff), (0x2000, 0x206f), (0x2100, 0x22ff), (0x3000, 0x30ff), (0x4e00, 0x4eff),
             (0xac00, 0xacff), (0xfe00, 0xfe0f), (0xff00, 0xffef), (0x1f300, 0x1f6ff), (0x20000, 0x200ff),
             (0xe0000, 0xe007f), (0xe000, 0xe00f)]


def random_texts(n, seed=0):
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(1, 40)):
            low, high = rng.choice(_FAMILIES)
            chars.append(chr(rng.randint(low, high)))
            if rng.random() < 0.2:
                chars.append(" ")
        texts.append("".join(chars))
    return texts


def hostile_texts(n_random=2000):
    return FIXED + [_long_text(1), _long_text(2, 30000)] + random_texts(n_random)

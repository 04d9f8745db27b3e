#!/usr/bin/env python3
# Tokenizer goldens for tests/tokenizer_test.cpp, made with HF `tokenizers` (the reference
# implementation) from the Qwen2 tokenizer.json. Writes a JSON list of {text, ids, decoded} where
# ids = encode(text, add_special_tokens=False).ids and decoded = decode(ids).
# --sweep writes a large (~40 MB, not checked in) file covering every code point in a few contexts,
# used once to confirm that PCRE2/utf8proc classify characters as Oniguruma/unicode-normalization do.
# --classes prints, as hex ranges, the code points HF's regex engine puts in \p{L}, \p{N} and \s:
# diff them against PCRE2 to update the additions in core/tokenizer.cpp (kQwen2PatternPcre2).
# --nfc-inert prints core/tokenizer.cpp's kNfcInert table: code points whose normalization HF's old
# Unicode tables do not know (needs `pip install unicodedata2` for current Unicode data).
#
#   python3 scripts/gen_tokenizer_goldens.py tests/data/tokenizer/tokenizer.json tests/data/tokenizer/cases.json
import argparse
import json
import random
import re

from tokenizers import Tokenizer

# The 15 shared acceptance cases (/work/shared/fixtures/tokenizer_cases.json), first and unchanged.
SHARED = [
    "Hello, how are you today?",
    "<|im_start|>assistant\nHello world.<|im_end|>\n<|im_start|>assistant\n",
    "It's 3:45pm — don't you think we'll be late? I've 12,345.67 reasons.",
    "  leading and   multiple   spaces\tand\ttabs\n\nnew lines\r\n",
    "你好，世界！今天天气很好。",
    "こんにちは、世界。カタカナとひらがな。",
    "안녕하세요 세계",
    "Привет, мир! Ünïcödé àccents café naïve",
    "emoji 🎉🚀 and symbols ©®™ ∑∫√",
    "numbers 1234567890 and 3.14159",
    "URL https://example.com/path?x=1&y=2#frag",
    "MiXeD CaSe, 'quotes' \"double\" `back`",
    "",
    " ",
    "a",
]


def long_word(n, seed):
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))


EXTRA = [
    # mixed case (where the Mistral-fix regex would differ, spec P-27)
    "iPhone McDonald MacBook eBay YouTube",
    "HTTPServer parseJSONResponse XMLHttpRequest",
    # combining marks that NFC composes, singletons NFC replaces, compat chars NFC keeps
    "e\u0301 cafe\u0301 re\u0301sume\u0301 A\u030a \u212b \u1100\u1161\u11a8",
    "o\u0308\u0304 q\u0307\u0323 \u0041\u0323\u0302",
    # marks newer than HF's Unicode 9 normalization tables: HF does not reorder or compose them
    "a\u0323\u07fd\u0301 \U00011935\U00011930 \u0898\u0323 x\u1df6\u0323",
    "\ufb01 ligature \uff21\uff22\uff23 fullwidth \u2460 circled",
    # line endings, tabs, whitespace runs
    "line one\r\nline two\r\n\r\nthree\rfour",
    "\tindented\t\ttext\t",
    "a  b   c    d     e",
    "   ",
    "\n",
    "\n\n\n",
    " \n ",
    "word \n\n  next  \t\n\tend   ",
    "\nHello after a leading newline",
    "\u00a0nbsp\u3000ideographic\u2003em\u2009thin\u202fnarrow\u205fmath space",
    "\u000b vertical tab \u000c form feed \u0085 next line \u2028 ls \u2029 ps",
    # digits and other numbers
    "007 31415926535897932384626433832795028841971 0x1F",
    "\u00bd \u00b2 \u2167 \u0661\u0662\u0663 \u096a\u0968 \uff11\uff12",
    # emoji, ZWJ sequences, modifiers, flags
    "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 family, \U0001F44D\U0001F3FD thumbs, "
    "\U0001F3F3\ufe0f\u200d\U0001F308 flag \U0001F1EF\U0001F1F5",
    # scripts
    "مرحبا بالعالم، كيف حالك؟ ١٢٣",
    "שָׁלוֹם עולם! מה שלומך?",
    "สวัสดีครับ ภาษาไทยไม่มีช่องว่าง",
    "नमस्ते दुनिया। हिन्दी भाषा क़",
    "대한민국의 수도는 서울입니다. 한국어 텍스트",
    "東京都は日本の首都です。「こんにちは」と言った。ｶﾀｶﾅ",
    "我们（今天）说：“你好！”——好吧；……《书名》",
    "Ελληνική γλώσσα ΠΡΙΒΕΤ Привет",
    # contractions (the regex's case-insensitive group)
    "DON'T STOP, I'M HERE, WE'LL SEE, THEY'RE, YOU'VE, IT'S, HE'D",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'Ve ''s it\u2019s it'\u017f",
    # special tokens, literal and partial
    "<|im_end|>",
    "<tts_pad><tts_text_bos>hello<tts_text_eod><tts_text_bos_single>",
    "<|im_ <|im_start| <|im_start|<|im_start|> <tts_pad <tts_pad>>",
    "text<|endoftext|>more<|audio_start|><|audio_pad|><|audio_end|>",
    "<think>x</think> <tool_call>{}</tool_call>",
    "<|im_end|>\u0301 <think>\u0338",
    "<|IM_END|> < |im_end| > <|im_end|><|im_end|>",
    # punctuation, code, symbols
    "!!!??? ... ---- ====\n\n**bold** _it_ ~~s~~",
    "def f(x):\n    return x**2  # comment\n\n\tpass\r\n",
    "\u2014 \u2026 \u00a92024 \u20ac100 \u00a35 \u00a5 \u2122 \u00b0C \u00b1",
    "\u0000nul\u0001 \u007f del \u200b zwsp \ufeff bom \u00ad shy",
    "\ue000\U000f0000 private use",
    # long words (BPE on big inputs)
    long_word(5000, 1),
    "x" * 5000,
    "\U0001F600" * 300,
]


def encode(tok, text):
    ids = tok.encode(text, add_special_tokens=False).ids
    return {"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)}


def sweep_texts():
    # Every code point (no surrogates) in contexts that exercise the regex classes (\p{L}, \p{N}, \s,
    # other) and NFC composition with a preceding base letter.
    texts = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        texts.append(f"a{c}b {c}1 {c}{c} x{c}\n'{c}'s {c}\t{c} \n{c}")
    return texts


def class_ranges():
    from tokenizers import Regex
    from tokenizers import pre_tokenizers as pt

    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    everything = "".join(map(chr, cps))
    for name, rx in (("L", r"\p{L}"), ("N", r"\p{N}"), ("S", r"\s")):
        rest = set()  # "removed" keeps only the non-matching runs
        for piece, _ in pt.Split(Regex(rx), "removed").pre_tokenize_str(everything):
            rest.update(map(ord, piece))
        ranges = []
        for c in cps:
            if c in rest:
                continue
            if ranges and ranges[-1][1] == c - 1:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
        print(name, " ".join(f"{a:X}-{b:X}" if a != b else f"{a:X}" for a, b in ranges))


def nfc_inert(tok):
    import unicodedata2 as u2

    norm = tok.normalizer.normalize_str
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    inert = set()
    for cp in cps:
        c = chr(cp)
        k = u2.combining(c)
        if k:
            # HF knows c's combining class iff it puts c and a mark of another class in one order
            m = "\u0323" if k != 220 else "\u0301"
            if norm("x" + c + m) != norm("x" + m + c):
                inert.add(cp)
        d = u2.decomposition(c)
        if d and not d.startswith("<"):  # canonical decomposition
            parts = "".join(chr(int(x, 16)) for x in d.split())
            if norm(c) != u2.normalize("NFC", c) or norm(parts) != u2.normalize("NFC", parts):
                inert.update((cp, ord(parts[0])))

    def segmented_nfc(t):  # what core/tokenizer.cpp computes
        out, cur = [], ""
        for ch in t:
            if ord(ch) in inert:
                out += [u2.normalize("NFC", cur), ch]
                cur = ""
            else:
                cur += ch
        return "".join(out) + u2.normalize("NFC", cur)

    for cp in cps:
        c = chr(cp)
        for t in (c, u2.normalize("NFD", c), c + "\u0301", c + "\u0308\u0323", "\u0323" + c,
                  "a\u0301" + c + "\u0323", "a" + c + "\u0323\u0301", c + "\u3099", c + "\u0307"):
            assert norm(t) == segmented_nfc(t), (hex(cp), t)
    ranges = []
    for c in sorted(inert):
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    print(f"// Unicode {u2.unidata_version}")
    print(", ".join(f"{{0x{a:04X}, 0x{b:04X}}}" for a, b in ranges))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tokenizer_json")
    ap.add_argument("out")
    ap.add_argument("--sweep", action="store_true", help="write the code point sweep instead")
    ap.add_argument("--classes", action="store_true", help="print HF's \\p{L}/\\p{N}/\\s ranges")
    ap.add_argument("--nfc-inert", action="store_true", help="print the kNfcInert table")
    args = ap.parse_args()
    if args.classes:
        class_ranges()
        return
    tok = Tokenizer.from_file(args.tokenizer_json)
    if args.nfc_inert:
        nfc_inert(tok)
        return
    if args.sweep:
        texts = sweep_texts()
        encs = tok.encode_batch(texts, add_special_tokens=False)
        # pieces: the pre-tokenizer's split (byte-level form), to compare splits rather than only ids
        pieces = [[p for p, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(t))]
                  for t in texts]
        cases = [{"text": t, "ids": e.ids, "pieces": p} for t, e, p in zip(texts, encs, pieces)]
    else:
        cases = [encode(tok, t) for t in SHARED + EXTRA]
        # decode(encode(s)) == NFC(s) (HF's NFC, whose tables are Unicode 9, not Python's), where the
        # spans between added tokens are normalized separately (so "<think>\u0338" keeps its ">" instead of composing it into U+226F).
        added = sorted((t.content for t in tok.get_added_tokens_decoder().values()), key=len, reverse=True)
        splitter = re.compile("(" + "|".join(map(re.escape, added)) + ")")
        for c in cases:
            parts = splitter.split(c["text"])
            want = "".join(p if i % 2 else tok.normalizer.normalize_str(p) for i, p in enumerate(parts))
            assert c["decoded"] == want, c["text"]
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=None if args.sweep else 1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()

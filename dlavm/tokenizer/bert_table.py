"""Unicode tables of the BERT normalizer and pre-tokenizer, as HF ``tokenizers`` applies them.

``BertNormalizer`` (clean_text, handle_chinese_chars, strip_accents, lowercase) and
``BertPreTokenizer`` classify characters with the Unicode tables compiled into HF ``tokenizers``
(Rust's ``char`` methods, the ``unicode_categories`` and ``unicode-normalization`` crates), whose
Unicode versions differ from Python's ``unicodedata``. So, as ``unicode_table`` does for the GPT-2
classes, this module asks the installed ``tokenizers`` about every code point and writes what it
answers as C++ tables (``clib/src/tokenizer_bert_table.inc``)::

    python -m dlavm.tokenizer.bert_table > clib/src/tokenizer_bert_table.inc

Per code point (surrogates excepted):

* flags: dropped by ``clean_text`` (NUL, U+FFFD, control / format / unassigned / private use
  characters other than tab, newline and carriage return), turned into a space by ``clean_text``
  (whitespace), a CJK ideograph (``handle_chinese_chars`` puts spaces around it), a nonspacing mark
  (dropped by ``strip_accents`` after NFD), whitespace and punctuation of ``BertPreTokenizer``;
* its canonical decomposition (NFD) when it has one, Hangul syllables excepted (the C++ code
  decomposes them arithmetically; this module checks that ``tokenizers`` agrees);
* its canonical combining class when not 0 (NFD's canonical reordering), found by probing the
  ordering ``tokenizers`` applies against reference marks;
* its lowercase mapping when it has one.

Python's ``unicodedata`` only proposes the candidates (code points with a combining class) and
the reference marks; every value written is what ``tokenizers`` does. tests/tokenizer checks that
the shipped table equals a fresh one.
"""
from __future__ import annotations

import sys
import unicodedata

MAX_CODE_POINT = 0x10FFFF

# flag bits, as clib/src/tokenizer.cc reads them
DROP, SPACE, CJK, MN, WS, PUNCT = 1, 2, 4, 8, 16, 32
FLAG_NAMES = {DROP: "kDrop", SPACE: "kToSpace", CJK: "kCjk", MN: "kMn", WS: "kWs", PUNCT: "kPunct"}

HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3


def hangul_nfd(cp: int) -> str:
    """The canonical decomposition of a Hangul syllable (Unicode 3.12, arithmetic)."""
    s = cp - HANGUL_FIRST
    lead, vowel, trail = 0x1100 + s // 588, 0x1161 + (s % 588) // 28, 0x11A7 + s % 28
    return chr(lead) + chr(vowel) + (chr(trail) if trail != 0x11A7 else "")


def _code_points():
    for cp in range(MAX_CODE_POINT + 1):
        if not 0xD800 <= cp <= 0xDFFF:
            yield cp


def build_tables():
    """(flag ranges, decompositions, combining classes, lowercase mappings), from HF tokenizers."""
    from tokenizers import normalizers, pre_tokenizers

    def bert(clean=False, cjk=False, strip=False, lower=False):
        return normalizers.BertNormalizer(clean_text=clean, handle_chinese_chars=cjk, strip_accents=strip,
                                          lowercase=lower).normalize_str

    clean, cjk, strip, lower = bert(clean=True), bert(cjk=True), bert(strip=True), bert(lower=True)
    nfd = normalizers.NFD().normalize_str
    pre = pre_tokenizers.BertPreTokenizer().pre_tokenize_str

    flags: dict[int, int] = {}
    decomp: dict[int, str] = {}
    lowers: dict[int, str] = {}
    for cp in _code_points():
        c = chr(cp)
        f = 0
        cleaned = clean(c)
        if cleaned == "":
            f |= DROP
        elif cleaned == " " and c != " ":
            f |= SPACE
        elif cleaned != c:
            raise AssertionError(f"clean_text maps U+{cp:04X} to {cleaned!r}")
        spaced = cjk(c)
        if spaced == f" {c} ":
            f |= CJK
        elif spaced != c:
            raise AssertionError(f"handle_chinese_chars maps U+{cp:04X} to {spaced!r}")
        d = nfd(c)
        if d != c:
            if HANGUL_FIRST <= cp <= HANGUL_LAST:
                if d != hangul_nfd(cp):
                    raise AssertionError(f"NFD of Hangul U+{cp:04X} is {d!r}, not the arithmetic one")
            else:
                decomp[cp] = d
        elif strip(c) == "":
            f |= MN
        pieces = [p for p, _ in pre("a" + c + "a")]
        if pieces == ["a", "a"]:
            f |= WS
        elif pieces == ["a", c, "a"]:
            f |= PUNCT
        elif pieces != ["a" + c + "a"]:
            raise AssertionError(f"BertPreTokenizer splits 'a' U+{cp:04X} 'a' as {pieces!r}")
        low = lower(c)
        if low != c:
            lowers[cp] = low
        if f:
            flags[cp] = f

    # strip_accents of a decomposable character: its decomposition less the nonspacing marks
    for cp, d in decomp.items():
        want = "".join(ch for ch in d if not flags.get(ord(ch), 0) & MN)
        if strip(chr(cp)) != want:
            raise AssertionError(f"strip_accents of U+{cp:04X} is {strip(chr(cp))!r}, expected {want!r}")
        for ch in d:
            if nfd(ch) != ch:
                raise AssertionError(f"the NFD of U+{cp:04X} is not fully decomposed")

    ccc = _combining_classes(nfd, decomp)
    ranges = []
    for cp in sorted(flags):
        f = flags[cp]
        if ranges and ranges[-1][2] == f and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp, f])
    ccc_ranges = []
    for cp in sorted(ccc):
        if ccc_ranges and ccc_ranges[-1][2] == ccc[cp] and ccc_ranges[-1][1] == cp - 1:
            ccc_ranges[-1][1] = cp
        else:
            ccc_ranges.append([cp, cp, ccc[cp]])
    return ranges, decomp, ccc_ranges, lowers


def _combining_classes(nfd, decomp) -> dict[int, int]:
    """The canonical combining class (non-zero ones) that tokenizers' NFD orders marks by.

    NFD sorts each run of marks (class > 0) stably by class. A mark x is placed before a
    reference mark r written just before it iff 0 < class(x) < class(r); probing x against one
    reference mark per class value gives class(x) exactly, relative to the references."""
    # one reference per class value: the first mark of that class (per unicodedata) that tokenizers
    # orders as that class against U+0334 (class 1) and U+0345 (class 240), marks since Unicode 1.1
    def agrees(x: str, v: int) -> bool:
        if x in ("\u0334", "\u0345"):
            return True
        return (nfd("a" + x + "\u0334") == "a\u0334" + x) == (v > 1) and \
            (nfd("a\u0345" + x) == "a" + x + "\u0345") == (v < 240)

    by_value: dict[int, int] = {}
    for cp in _code_points():
        v = unicodedata.combining(chr(cp))
        if v and v not in by_value and nfd(chr(cp)) == chr(cp) and agrees(chr(cp), v):
            by_value[v] = cp
    values = sorted(by_value)
    refs = [chr(by_value[v]) for v in values]
    # the references order among themselves as their classes say
    for i, a in enumerate(refs):
        for j, b in enumerate(refs):
            if i == j:
                continue
            moved = nfd("a" + a + b) == "a" + b + a
            if moved != (values[j] < values[i]):
                raise AssertionError(f"tokenizers orders U+{ord(a):04X}, U+{ord(b):04X} unlike unicodedata")
    lowest, highest = refs[0], refs[-1]
    candidates = {cp for cp in _code_points() if unicodedata.combining(chr(cp))}
    candidates |= {ord(ch) for d in decomp.values() for ch in d}
    out = {}
    for cp in sorted(candidates):
        x = chr(cp)
        if nfd(x) != x:
            continue
        # class(x) > lowest: x moves after the lowest; 0 < class(x) < highest: x moves before the highest
        above_lowest = nfd("a" + x + lowest) == "a" + lowest + x
        below_highest = nfd("a" + highest + x) == "a" + x + highest
        if not above_lowest and not below_highest and x not in (lowest, highest):
            continue  # a starter (class 0) for tokenizers
        v = values[0]
        for value, r in zip(values, refs):
            if nfd("a" + r + x) == "a" + r + x:  # not placed before r: class(x) >= value
                v = value
        out[cp] = v
    return out


def _cpp_string(s: str) -> str:
    return "{" + ", ".join(f"0x{ord(ch):X}" for ch in s) + "}"


def render_cpp(tables) -> str:
    """The C++ tables: arrays of the structs clib/src/tokenizer.cc declares before including them."""
    import tokenizers
    ranges, decomp, ccc_ranges, lowers = tables
    longest = max(len(m) for m in [*decomp.values(), *lowers.values()])
    assert longest <= 4, f"a mapping of {longest} code points: widen CodePointMap::to in tokenizer.cc"
    lines = [f"// Generated by `python -m dlavm.tokenizer.bert_table` from HF tokenizers {tokenizers.__version__}: "
             "do not edit.",
             "// The BERT normalizer's and pre-tokenizer's view of every code point (dlavm/tokenizer/bert_table.py).",
             "// All sorted by code point; code points not listed have no flag, no decomposition, class 0, and",
             "// are their own lowercase."]

    def table(decl, items, per_row):
        lines.append(decl + " = {")
        for i in range(0, len(items), per_row):
            lines.append("    " + " ".join(items[i:i + per_row]))
        lines.append("};")

    def names(f):
        return "|".join(FLAG_NAMES[b] for b in sorted(FLAG_NAMES) if f & b)

    table("const BertFlagRange kBertFlags[]", [f"{{0x{a:X}, 0x{b:X}, {names(f)}}}," for a, b, f in ranges], 3)
    table("const CodePointMap kBertDecompositions[]",
          [f"{{0x{cp:X}, {len(d)}, {_cpp_string(d)}}}," for cp, d in sorted(decomp.items())], 3)
    table("const CombiningClassRange kBertCombiningClasses[]",
          [f"{{0x{a:X}, 0x{b:X}, {v}}}," for a, b, v in ccc_ranges], 4)
    table("const CodePointMap kBertLowercase[]",
          [f"{{0x{cp:X}, {len(low)}, {_cpp_string(low)}}}," for cp, low in sorted(lowers.items())], 3)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_cpp(build_tables()))

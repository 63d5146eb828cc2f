"""English word and sentence splitting by the rules of spaCy's English tokenizer and sentencizer.

datatrove's Gopher, C4 and FineWeb filters count words and sentences with a blank spaCy English
pipeline (tokenizer + rule-based sentencizer). Word counts, word lengths, n-grams and sentence
counts decide which documents those filters keep, so tokenmill splits text by the same rules to
make the same decisions on any text (lowercase, tokenized, code, boilerplate, other scripts).
This module holds those rules: character classes, affixes, the special cases (contractions,
abbreviations, emoticons) and the algorithm for one whitespace-free chunk. `pipeline.filter.text`
applies them to whole batches, once per distinct chunk.

How a chunk becomes tokens (spaCy's algorithm):

1. A special case (``don't`` -> ``do n't``, ``Mr.``, ``:)``) is taken whole.
2. Otherwise prefixes (opening punctuation, quotes, currency, symbols) and suffixes (closing
   punctuation, ``'s``, a period after a lowercase letter or a digit, units after a number) are
   peeled off, alternately, until none is left or what is left is a special case.
3. What remains is kept whole if it is a URL; else it is cut at infixes (``...``, a hyphen or
   ``/`` ``:`` ``=`` between letters, ``,`` between letters, ``.`` between a lowercase and an
   uppercase letter, an operator between digits).
4. Runs of tokens that spell a special case with affixes (``)`` ``:`` -> ``):``) are merged.

A sentence starts at the first token after a sentence-final mark (``.``, ``!``, ``?`` and their
counterparts in other scripts, standing as a token of their own) that is not punctuation.

The character sets are written out below as code point ranges: they are the ones the reference
tokenizer uses (Unicode blocks it lists, symbols as of Unicode 11), not the newest Unicode
properties, so that the splits do not drift with the Python version.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from itertools import pairwise

# -- character classes --------------------------------------------------------------------------


def _codes(spec: str) -> set[int]:
    """Code points of a space-separated list of hex code points and ranges ("0041-005A 00AA")."""
    out: set[int] = set()
    for part in spec.split():
        first, _, last = part.partition("-")
        out.update(range(int(first, 16), int(last or first, 16) + 1))
    return out


def _class(codes: Iterable[int]) -> str:
    """A regex character-class body (no brackets) matching exactly ``codes``."""
    s = sorted(set(codes))
    out, i = [], 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(re.escape(chr(s[i])) + ("" if i == j else "-" + re.escape(chr(s[j]))))
        i = j + 1
    return "".join(out)


def _of_category(codes: set[int], *categories: str) -> set[int]:
    return {c for c in codes if unicodedata.category(chr(c)) in categories}


# Cased letters: Latin (basic, Latin-1, Extended A-D, Extended Additional, fullwidth) and IPA, the
# Russian, Ukrainian, Macedonian and Tatar Cyrillic letters, and the basic Greek letters.
_LATIN = _codes(
    "0041-005A 0061-007A 00C0-00D6 00D8-00F6 00F8-024F 1E00-1EFF 2C60-2C7F A722-A7B9 A7FA FF21-FF3A FF41-FF5A"
)
_IPA = _codes("0250-02AF 1D00-1D25 1D6B-1D77 1D79-1D9A AB30-AB5A AB60-AB64")  # lowercase by convention
_CYRILLIC_LOWER = _codes("0430-044F 0451") | {ord(c) for c in "іїєґѓѕјљњќѐѝәөүҗңһ"}
_CYRILLIC_UPPER = _codes("0410-042F 0401") | {ord(c) for c in "ІЇЄҐЃЅЈЉЊЌЀЍӘӨҮҖҢҺ"}
_GREEK_LOWER = _codes("03AC-03AF 03B1-03C9 03CC-03CE")
_GREEK_UPPER = _codes("0386 0388-038A 038C 038E-038F 0391-03A9")
# Scripts without case count as both lower and upper: Ethiopic, Bengali, Hebrew, Arabic/Persian,
# Sinhala, Devanagari, Kannada, Tamil, Telugu, Hangul, Kana and CJK (whole blocks).
_UNCASED = _codes(
    "1200-137F 0980-09FF 0591-05F4 FB1D-FB4F 0620-064A 066E-06D5 06E5-06FF 0750-077F 08A0-08BD "
    "FB50-FBB1 FBD3-FD3D FD50-FDC7 FDF0-FDFB FE70-FEFC 1EE00-1EEBB 0D80-0DFF 0900-097F 0C80-0CFF "
    "0B80-0BFF 0C00-0C7F AC00-D7AF 1100-11FF 3040-30FF 4E00-9FFF 3400-4DBF 20000-2A6DF 2A700-2EBEF "
    "2E80-2FDF 2FF0-303F 31C0-31EF 3200-33FF F900-FAFF FE30-FE4F 1F200-1F2FF 2F800-2FA1F"
)
LOWER_CODES = _of_category(_LATIN, "Ll") | _IPA | _CYRILLIC_LOWER | _GREEK_LOWER | _UNCASED
UPPER_CODES = _of_category(_LATIN, "Lu") | _CYRILLIC_UPPER | _GREEK_UPPER | {0x3A2} | _UNCASED
ALPHA_CODES = LOWER_CODES | UPPER_CODES | _of_category(_LATIN, "Lt") | {0x1BB}
LOWER, UPPER, ALPHA = _class(LOWER_CODES), _class(UPPER_CODES), _class(ALPHA_CODES)
# Symbols (Unicode 11's "So"), split off like punctuation.
ICON_CODES = frozenset(
    _codes(
        "00A6 00A9 00AE 00B0 0482 058D-058E 060E-060F 06DE 06E9 06FD-06FE 07F6 09FA 0B70 0BF3-0BF8 "
        "0BFA 0C7F 0D4F 0D79 0F01-0F03 0F13 0F15-0F17 0F1A-0F1F 0F34 0F36 0F38 0FBE-0FC5 0FC7-0FCC "
        "0FCE-0FCF 0FD5-0FD8 109E-109F 1390-1399 1940 19DE-19FF 1B61-1B6A 1B74-1B7C 2100-2101 "
        "2103-2106 2108-2109 2114 2116-2117 211E-2123 2125 2127 2129 212E 213A-213B 214A 214C-214D "
        "214F 218A-218B 2195-2199 219C-219F 21A1-21A2 21A4-21A5 21A7-21AD 21AF-21CD 21D0-21D1 21D3 "
        "21D5-21F3 2300-2307 230C-231F 2322-2328 232B-237B 237D-239A 23B4-23DB 23E2-2426 2440-244A "
        "249C-24E9 2500-25B6 25B8-25C0 25C2-25F7 2600-266E 2670-2767 2794-27BF 2800-28FF 2B00-2B2F "
        "2B45-2B46 2B4D-2B73 2B76-2B95 2B98-2BC8 2BCA-2BFE 2CE5-2CEA 2E80-2E99 2E9B-2EF3 2F00-2FD5 "
        "2FF0-2FFB 3004 3012-3013 3020 3036-3037 303E-303F 3190-3191 3196-319F 31C0-31E3 3200-321E "
        "322A-3247 3250 3260-327F 328A-32B0 32C0-32FE 3300-33FF 4DC0-4DFF A490-A4C6 A828-A82B "
        "A836-A837 A839 AA77-AA79 FDFD FFE4 FFE8 FFED-FFEE FFFC-FFFD 10137-1013F 10179-10189 "
        "1018C-1018E 10190-1019B 101A0 101D0-101FC 10877-10878 10AC8 1173F 16B3C-16B3F 16B45 1BC9C "
        "1D000-1D0F5 1D100-1D126 1D129-1D164 1D16A-1D16C 1D183-1D184 1D18C-1D1A9 1D1AE-1D1E8 "
        "1D200-1D241 1D245 1D300-1D356 1D800-1D9FF 1DA37-1DA3A 1DA6D-1DA74 1DA76-1DA83 1DA85-1DA86 "
        "1ECAC 1F000-1F02B 1F030-1F093 1F0A0-1F0AE 1F0B1-1F0BF 1F0C1-1F0CF 1F0D1-1F0F5 1F110-1F16B "
        "1F170-1F1AC 1F1E6-1F202 1F210-1F23B 1F240-1F248 1F250-1F251 1F260-1F265 1F300-1F3FA "
        "1F400-1F6D4 1F6E0-1F6EC 1F6F0-1F6F9 1F700-1F773 1F780-1F7D8 1F800-1F80B 1F810-1F847 "
        "1F850-1F859 1F860-1F887 1F890-1F8AD 1F900-1F90B 1F910-1F93E 1F940-1F970 1F973-1F976 1F97A "
        "1F97C-1F9A2 1F9B0-1F9B9 1F9C0-1F9C2 1F9D0-1F9FF 1FA60-1FA6D"
    )
)
ICONS = _class(ICON_CODES)
PUNCT = "…,:;!?¿؟¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪"  # split off at either end
QUOTES = "'\"”“`‘´’‚,„»«「」『』（）〔〕【】《》〈〉〈〉⟦⟧"  # split off at either end
CURRENCY = ("US$", "C$", "A$", *"$£€¥฿₽﷼₴₠₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₵₶₷₸₹₺₻₼₾₿")
UNITS = (
    "km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz m/s "
    "km/h kmh mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K % км км² км³ м м² м³ дм дм² дм³ см см² "
    "см³ мм мм² мм³ нм кг г мг м/с км/ч кПа Па мбар Кб КБ кб Мб МБ мб Гб ГБ гб Тб ТБ тбكم كم كم² كم³ "
    "م م² م³ سم سم² سم³ مم مم² مم³ كم غرام جرام جم كغ ملغ كوب اكواب"
).split()  # after a number ("5km", "10GB"); the reference list runs "тб" into the next word
HYPHENS = ("-", "–", "—", "--", "---", "——", "~")

# Sentence-final marks of the sentencizer: a token that is exactly one of these ends a sentence.
SENTENCE_FINAL = frozenset(
    chr(c)
    for c in _codes(
        "0021 002E 003F 0589 061F 06D4 0700-0702 07F9 0964-0965 104A-104B 1362 1367-1368 166E "
        "1735-1736 1803 1809 1944-1945 1AA8-1AAB 1B5A-1B5B 1B5E-1B5F 1C3B-1C3C 1C7E-1C7F 203C-203D "
        "2047-2049 2E2E 2E3C 3002 A4FF A60E-A60F A6F3 A6F7 A876-A877 A8CE-A8CF A92F A9C8-A9C9 "
        "AA5D-AA5F AAF0-AAF1 ABEB FE52 FE56-FE57 FF01 FF0E FF1F FF61 10A56-10A57 11047-11048 "
        "110BE-110C1 11141-11143 111C5-111C6 111CD 111DE-111DF 11238-11239 1123B-1123C 112A9 "
        "1144B-1144C 115C2-115C3 115C9-115D7 11641-11642 1173C-1173E 11A42-11A43 11A9B-11A9C "
        "11C41-11C42 16A6E-16A6F 16AF5 16B37-16B38 16B44 1BC9F 1DA88"
    )
)

_esc = re.escape
_PREFIX_CHARS = "§%=—–" + PUNCT + QUOTES
_SUFFIX_CHARS = PUNCT + QUOTES + "—–"
_PERIOD_AFTER = "0-9" + LOWER + _esc("%²-+" + PUNCT + "|(?:)" + QUOTES)


def _in(ascii_only: bool, *sets: Iterable[int | str]) -> str:
    """A character class of the characters (or code points) of ``sets``; with ``ascii_only``, of
    the ASCII ones alone (``(?!)``, which never matches, if none is)."""
    codes = {c if isinstance(c, int) else ord(c) for chars in sets for c in chars}
    if ascii_only:
        codes = {c for c in codes if c < 128}
    return f"[{_class(codes)}]" if codes else "(?!)"


# A URL's optional scheme and user parts: the one needs "://", the other "@" (see _url_forms).
_URL_SCHEME = r"(?:[\w+\-.]{2,}://)?"
_URL_USER = r"(?:\S+(?::\S*)?@)?"


def _patterns(ascii_only: bool) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(PREFIX_RE, SUFFIX_RE, INFIX_RE, URL_RE). With ``ascii_only`` they are for ASCII strings
    alone, on which they match exactly as the full ones: their classes hold only ASCII
    characters, which Python's re tests with a bitmap, where a class reaching past U+FFFF (the
    symbols, the uncased scripts) is a scan of all its ranges at every character tried."""

    def cls(*sets: Iterable[int | str]) -> str:
        return _in(ascii_only, *sets)

    digits = "0123456789"
    currency1 = [c for c in CURRENCY if len(c) == 1]
    prefix = re.compile(
        rf"{cls(_PREFIX_CHARS, ICON_CODES)}|\+(?![0-9])|\.\.+|"
        + "|".join(_esc(c) for c in CURRENCY if len(c) > 1)
        + "|"
        + cls(currency1)
    )
    # Every alternative ends the string, so the leftmost match is the longest suffix.
    period_after = cls(digits, LOWER_CODES, "%²-+" + PUNCT + "|(?:)" + QUOTES)
    apostrophe = cls("'’")
    suffix = re.compile(
        rf"(?:{cls(_SUFFIX_CHARS, ICON_CODES)}|……|\.\.+|{apostrophe}[sS]"
        rf"|(?<=[0-9])\+|(?<=°[FfCcKk])\."
        rf"|(?<=[0-9])(?:{'|'.join(_esc(c) for c in CURRENCY)})"
        rf"|(?<=[0-9])(?:{'|'.join(_esc(u) for u in UNITS)})"
        rf"|(?<={period_after})\.|(?<={cls(UPPER_CODES)}{cls(UPPER_CODES)})\.)$"
    )
    # Every infix starts with one of these characters; testing that first (a lookahead) spares
    # trying each alternative and its lookbehind at every position.
    infix_first = "." + "…" + "+-*^," + "".join(h[0] for h in HYPHENS) + ":<>=/"
    alpha = cls(ALPHA_CODES)
    infix = re.compile(
        rf"(?={cls(infix_first, ICON_CODES)})(?:"
        rf"\.\.+|…|{cls(ICON_CODES)}|(?<=[0-9])[+\-*^](?=[0-9-])"
        rf"|(?<={cls(LOWER_CODES, QUOTES)})\.(?={cls(UPPER_CODES, QUOTES)})"
        rf"|(?<={alpha}),(?={alpha})"
        rf"|(?<={cls(ALPHA_CODES, digits)})(?:{'|'.join(_esc(h) for h in HYPHENS)})(?={alpha})"
        rf"|(?<={cls(ALPHA_CODES, digits)})[:<>=/](?={alpha})"
        ")"
    )
    # A URL or e-mail-like address is one token: optional scheme, optional user@, a public IPv4
    # address or dotted host names ending in a lowercase top-level domain, optional port and path.
    host = "[A-Za-z0-9" + ("" if ascii_only else "\u00a1-\uffff") + "]"
    host_ = host[:-1] + "_-]"
    url = re.compile(
        _URL_SCHEME + _URL_USER + "(?:"
        r"(?!(?:10|127)(?:\.\d{1,3}){3})(?!(?:169\.254|192\.168)(?:\.\d{1,3}){2})"
        r"(?!172\.(?:1[6-9]|2\d|3[0-1])(?:\.\d{1,3}){2})"
        r"(?:[1-9]\d?|1\d\d|2[01]\d|22[0-3])(?:\.(?:1?\d{1,2}|2[0-4]\d|25[0-5])){2}"
        r"(?:\.(?:[1-9]\d?|1\d\d|2[0-4]\d|25[0-4]))"
        rf"|(?:(?:{host}{host_}{{0,62}})?{host}\.)+(?:{cls(LOWER_CODES)}{{2,63}})"
        r")(?::\d{2,5})?(?:[/?#]\S*)?"
    )
    return prefix, suffix, infix, url


PREFIX_RE, SUFFIX_RE, INFIX_RE, URL_RE = _patterns(ascii_only=False)
_INFIX_SPLIT = re.compile(f"({INFIX_RE.pattern})")
# The same for ASCII strings (most chunks the splitter sees): str.isascii() picks them.
_ASCII_PREFIX_RE, _ASCII_SUFFIX_RE, _ASCII_INFIX_RE, _ASCII_URL_RE = _patterns(ascii_only=True)
_ASCII_INFIX_SPLIT = re.compile(f"({_ASCII_INFIX_RE.pattern})")


def _url_forms(url: re.Pattern[str]) -> dict[tuple[bool, bool], re.Pattern[str]]:
    """``url`` by (the string holds "://", it holds "@"): without the scheme or user part where
    the string lacks what that part needs, so that it matches the same strings. Trying those
    parts (their \\S runs backtrack over the whole string) is most of the pattern's cost on the
    many chunks with a period that are no URL (code: ``os.path.join(a,``)."""
    return {
        (scheme, user): re.compile(
            url.pattern.replace(_URL_SCHEME, _URL_SCHEME if scheme else "", 1).replace(
                _URL_USER, _URL_USER if user else "", 1
            )
        )
        for scheme in (False, True)
        for user in (False, True)
    }


_URL_FORMS, _ASCII_URL_FORMS = _url_forms(URL_RE), _url_forms(_ASCII_URL_RE)


def is_url(s: str) -> bool:
    """``s`` is a URL or e-mail-like address as a whole (URL_RE matches all of it)."""
    return (_ASCII_URL_FORMS if s.isascii() else _URL_FORMS)["://" in s, "@" in s].fullmatch(s) is not None


# Longest suffix but a run of dots: a unit or currency sign after a number ("5اكواب", "5US$").
_ASCII_DIGIT = re.compile("[0-9]")
_LONGEST_SUFFIX = max(len(x) for x in (*UNITS, *CURRENCY, "……", "'s")) + 1
# A suffix of one character (SUFFIX_RE's character class), and the last characters of the longer
# ones (units, currency signs, "……", "'s", runs of dots, a period or "+" after something): a
# string ending in none of the latter has a suffix of one character or none.
_ONE_CHAR_SUFFIX = frozenset(_SUFFIX_CHARS) | frozenset(map(chr, ICON_CODES))
# Characters a prefix can start with (PREFIX_RE's alternatives).
_PREFIX_FIRST = frozenset(_PREFIX_CHARS + "+." + "".join(c[0] for c in CURRENCY)) | frozenset(
    map(chr, ICON_CODES)
)
_ENDS_LONGER_SUFFIX = frozenset(x[-1] for x in (*UNITS, *CURRENCY, "……", "'s", "’s", "'S", "’S", ".", "+"))


# -- special cases ------------------------------------------------------------------------------


def _cased(word: str) -> tuple[str, str]:
    return word, word.capitalize()


def _special_cases() -> dict[str, tuple[str, ...]]:
    """Every special case: the chunk and the tokens it becomes (``"don't": ("do", "n't")``)."""
    out: dict[str, tuple[str, ...]] = {}

    def add(*tokens: str) -> None:
        out["".join(tokens)] = tokens

    # Pronoun and wh-word contractions, with and without the apostrophe ("I'm" / "Im").
    clitics = {
        "i": ["m", "ma", "ll", "llve", "d", "dve", "ve"],
        "you": ["ll", "llve", "d", "dve", "ve", "re"],
        "he": ["ll", "llve", "d", "dve", "s"],
        "she": ["ll", "llve", "d", "dve", "s"],
        "it": ["ll", "llve", "d", "dve", "s"],
        "we": ["ll", "llve", "d", "dve", "ve", "re"],
        "they": ["ll", "llve", "d", "dve", "ve", "re"],
    }
    for word in ("who", "what", "when", "where", "why", "how", "there", "that", "this", "these", "those"):
        forms = ["ll", "llve", "d", "dve"]
        forms += [] if word in ("these", "those") else ["s"]
        forms += [] if word in ("that", "this") else ["re", "ve"]
        clitics[word] = forms
    pieces = {"m": ("m",), "ma": ("m", "a"), "ll": ("ll",), "llve": ("ll", "ve"), "d": ("d",)}
    pieces.update({"dve": ("d", "ve"), "ve": ("ve",), "re": ("re",), "s": ("s",)})
    for word, forms in clitics.items():
        for w in _cased(word):
            for form in forms:
                parts = pieces[form]
                add(w, *parts)
                add(w, *("'" + p if p != "a" else p for p in parts))
    # Negations: "don't" / "dont" (and "'ve" after them for modal verbs).
    modal = ("could", "might", "must", "should", "would")
    for verb in ("ca", "do", "does", "did", "had", "may", "need", "ought", "sha", "wo", *modal):
        for v in _cased(verb):
            add(v, "n't")
            add(v, "nt")
            add(v, "n't", "'ve")
            add(v, "nt", "ve")
    for verb in modal:
        for v in _cased(verb):
            add(v, "'ve")
            add(v, "ve")
    for verb in ("ai", "are", "is", "was", "were", "have", "has", "dare"):
        for v in _cased(verb):
            add(v, "n't")
            add(v, "nt")
    # Dropped letters kept whole: "doin'", "nothin", "'em", "'nuff".
    for word in ("doin", "goin", "nothin", "nuthin", "ol", "somethin", "lovin", "havin"):
        for w in _cased(word):
            add(w)
            add(w + "'")
    for word in ("em", "ll", "nuff", "re", "d", "s", "S", "bout", "cos", "coz", "cuz", "cause"):
        add("'" + word)
    for word in ("em", "ll", "nuff", "'Cause", "'Cos", "'Coz", "'Cuz", "\u2018S", "\u2018s"):
        add(word)
    for h in range(1, 13):
        for period in ("a.m.", "am", "p.m.", "pm"):
            add(str(h), period)
    for w in _cased("not"):
        add(w, "'ve")
        add(w, "ve")
    for a, b in (("can", "not"), ("gon", "na"), ("got", "ta"), ("let", "'s"), ("c'm", "on")):
        add(a, b)
        add(a.capitalize(), b)
    add("y'", "all")
    add("y", "all")
    add("how", "'d", "'y")
    add("How", "'d", "'y")
    for w in ("ma'am", "o'clock"):
        add(w)
        add(w.capitalize())
    # Abbreviations that keep their period.
    abbreviations = (
        "Mt. Ak. Ala. Apr. Ariz. Ark. Aug. Calif. Colo. Conn. Dec. Del. Feb. Fla. Ga. Ia. Id. Ill. "
        "Ind. Jan. Jul. Jun. Kan. Kans. Ky. La. Mar. Mass. Mich. Minn. Miss. N.C. N.D. N.H. N.J. N.M. "
        "N.Y. Neb. Nebr. Nev. Nov. Oct. Okla. Ore. Pa. S.C. Sep. Sept. Tenn. Va. Wash. Wis. a.m. Adm. "
        "Bros. co. Co. Corp. D.C. Dr. e.g. E.g. E.G. Gen. Gov. i.e. I.e. I.E. Inc. Jr. Ltd. Md. "
        "Messrs. Mo. Mont. Mr. Mrs. Ms. p.m. Ph.D. Prof. Rep. Rev. Sen. St. vs. v.s. and/or w/o"
    )
    for w in abbreviations.split():
        add(w)
    # Words that look like contractions but are words ("ill", "its", "well", "were").
    for w in ("ill", "its", "hell", "shell", "shed", "were", "well", "whore"):
        for c in _cased(w):
            out.pop(c, None)
    # Whitespace, quotes, single letters with a period, emoticons (all languages).
    for w in (" ", "\t", "\\t", "\n", "\\n", "\u2014", "\u00a0", "'", '\\")', "<space>", "''", "C++"):
        add(w)
    for letter in "abcdefghijklmnopqrstuvwxyzäöü":
        add(letter + ".")
    emoticons = (
        ":) :-) :)) :-)) :))) :-))) (: (-: =) (= :] :-] [: [-: [= =] :o) (o: :} :-} 8) 8-) (-8 ;) ;-) "
        "(; (-; :( :-( :(( :-(( :((( :-((( ): )-: =( >:( :') :'-) :'( :'-( :/ :-/ =/ =| :| :-| ]= =[ "
        ":1 :P :-P :p :-p :O :-O :o :-o :0 :-0 :() >:o :* :-* :3 :-3 =3 :> :-> :X :-X :x :-x :D :-D "
        ";D ;-D =D xD XD xDD XDD 8D 8-D ^_^ ^__^ ^___^ >.< >.> <.< ._. ;_; -_- -__- v.v V.V v_v V_V "
        "o_o o_O O_o O_O 0_o o_0 0_0 o.O O.o O.O o.o 0.0 o.0 0.o @_@ <3 <33 <333 </3 (^_^) (-_-) (._.) "
        "(>_<) (*_*) (¬_¬) ಠ_ಠ ಠ︵ಠ (ಠ_ಠ) ¯\\(ツ)/¯ (╯°□°）╯︵┻━┻ ><(((*>"
    )
    for w in emoticons.split():
        add(w)
    for unit in "cfkCFK":
        add("°", unit, ".")
    # Every form with a straight apostrophe also exists with a typographic one.
    for chunk, tokens in list(out.items()):
        if "'" in chunk:
            out[chunk.replace("'", "’")] = tuple(t.replace("'", "’") for t in tokens)
    return out


SPECIAL: dict[str, tuple[str, ...]] = _special_cases()


# -- one chunk ----------------------------------------------------------------------------------


def _suffix_len(s: str) -> int:
    """Length of the suffix to split off ``s`` (0: none); ``s`` is all the rule may look at."""
    # Only the last few characters can start a suffix (a run of dots excepted): search there.
    if not s:
        return 0
    last = s[-1]
    if last not in _ENDS_LONGER_SUFFIX:
        return 1 if last in _ONE_CHAR_SUFFIX else 0  # no longer suffix can end in ``last``
    return _suffix_search(s)


def _suffix_search(s: str) -> int:
    """:func:`_suffix_len` by the suffix pattern alone."""
    if not s:
        return 0
    last = s[-1]
    if last.isalnum() and last not in "sS" and not _ASCII_DIGIT.search(s):
        return 0  # only "'s" or a unit after a digit ends in a letter or digit
    start = len(s) - _LONGEST_SUFFIX
    if start > 0 and s.endswith(".."):
        start = len(s.rstrip("."))
    m = (_ASCII_SUFFIX_RE if s.isascii() else SUFFIX_RE).search(s, max(start, 0))
    return len(s) - m.start() if m else 0


def _affixes(chunk: str, specials: bool) -> tuple[list[str], str, list[str]]:
    """Peel prefixes and suffixes off ``chunk``: (prefixes, the rest, suffixes in order)."""
    prefixes: list[str] = []
    suffixes: list[str] = []
    s, last = chunk, -1
    while s and len(s) != last:
        if specials and s in SPECIAL:
            break
        last = len(s)
        m = (_ASCII_PREFIX_RE if s.isascii() else PREFIX_RE).match(s) if s[0] in _PREFIX_FIRST else None
        pre = m.end() if m else 0
        if pre and specials and s[pre:] in SPECIAL:
            prefixes.append(s[:pre])
            s = s[pre:]
            break
        # _suffix_len(s[pre:]), its common case inline
        end = s[-1]
        if end not in _ENDS_LONGER_SUFFIX:
            suf = 1 if end in _ONE_CHAR_SUFFIX and len(s) > pre else 0
        else:
            suf = _suffix_search(s[pre:] if pre else s)
        if suf and specials and s[:-suf] in SPECIAL:
            suffixes.append(s[-suf:])
            s = s[:-suf]
            break
        if pre and suf and pre + suf <= len(s):
            prefixes.append(s[:pre])
            suffixes.append(s[-suf:])
            s = s[pre:-suf]
        elif pre:
            prefixes.append(s[:pre])
            s = s[pre:]
        elif suf:
            suffixes.append(s[-suf:])
            s = s[:-suf]
    suffixes.reverse()
    return prefixes, s, suffixes


def _infixes(s: str) -> list[str]:
    """``s`` cut at its infixes (an infix at the very start does not cut)."""
    # Split keeping the infixes: [text, infix, text, ..., text], texts possibly empty.
    parts = (_ASCII_INFIX_SPLIT if s.isascii() else _INFIX_SPLIT).split(s)
    if len(parts) == 1:
        return parts
    if not parts[0]:  # an infix at the start stays with what follows it
        parts[1:3] = [parts[1] + parts[2]]
    return [p for p in parts if p]


def _split(chunk: str, specials: bool) -> list[str]:
    if specials and chunk in SPECIAL:
        return list(SPECIAL[chunk])
    prefixes, s, suffixes = _affixes(chunk, specials)
    if not s:
        middle: list[str] = []
    elif specials and s in SPECIAL:
        middle = list(SPECIAL[s])
    elif "." in s and is_url(s):
        middle = [s]
    else:
        middle = _infixes(s)
    return prefixes + middle + suffixes


def _merge_patterns() -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """Special cases that affixes would split, as the tokens they split into, by first token."""
    out: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for chunk in sorted(SPECIAL):
        if chunk.isspace() or not (
            PREFIX_RE.match(chunk) or SUFFIX_RE.search(chunk) or INFIX_RE.search(chunk)
        ):
            continue
        tokens = tuple(_split(chunk, specials=False))
        if len(tokens) > 1:  # a single token would be replaced by itself
            out.setdefault(tokens[0], []).append((tokens, chunk))
    return out


_MERGE = _merge_patterns()


def _by_pair() -> dict[tuple[str, str], list[tuple[tuple[str, ...], str]]]:
    """_MERGE by the first two tokens of each pattern (every pattern has two or more), so that
    a run is tried only against the patterns its first two tokens begin."""
    out: dict[tuple[str, str], list[tuple[tuple[str, ...], str]]] = {}
    for patterns in _MERGE.values():
        for pattern in patterns:
            out.setdefault((pattern[0][0], pattern[0][1]), []).append(pattern)
    return out


_MERGE_BY_PAIR = _by_pair()
_MERGE_PAIRS = frozenset(_MERGE_BY_PAIR)


def _merge_specials(tokens: list[str]) -> list[str]:
    """Runs of tokens that spell an affixed special case become that case's tokens (longest
    runs first, then leftmost; a run overlapping one already considered is skipped)."""
    if _MERGE_PAIRS.isdisjoint(pairwise(tokens)):
        return tokens
    found = []
    for i, pair in enumerate(pairwise(tokens)):
        for pattern, chunk in _MERGE_BY_PAIR.get(pair, ()):
            n = len(pattern)
            if n == 2 or tuple(tokens[i : i + n]) == pattern:
                found.append((n, i, chunk))
    if not found:
        return tokens
    found.sort(key=lambda f: (-f[0], f[1]))
    seen: set[int] = set()
    keep = []
    for n, i, chunk in found:
        if i not in seen and i + n - 1 not in seen:
            keep.append((i, n, chunk))
        seen.update(range(i, i + n))
    out: list[str] = []
    pos = 0
    for i, n, chunk in sorted(keep):
        out += tokens[pos:i]
        out += SPECIAL[chunk]
        pos = i + n
    return out + tokens[pos:]


def split_chunk(chunk: str) -> list[str]:
    """The tokens of one whitespace-free chunk of text."""
    tokens = _split(chunk, specials=True)
    return _merge_specials(tokens) if len(tokens) > 1 else tokens


@lru_cache(maxsize=4096)
def is_punct(token: str) -> bool:
    """Every character is punctuation (Unicode category P*)."""
    return all(unicodedata.category(c)[0] == "P" for c in token)

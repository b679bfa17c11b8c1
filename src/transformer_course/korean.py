"""The translation task's Korean: a small grammar of English sentences and their translations in Hangul.

Nothing is downloaded: sentences are generated from a grammar and a lexicon, so the data is
endless, the same on every machine, and the true alignment of every word is known::

    the student who reads the book sees a small cat in the park
    책 을 읽는 학생 이 공원 에서 작은 고양이 를 본다        (the model's tokens)
    책을 읽는 학생이 공원에서 작은 고양이를 본다             (join: Korean as it is written)

What the grammar does:

- **Particles** follow the noun they mark and depend on its last sound: a noun that ends in a
  consonant (a *batchim*) takes 이, 을, 은, 과, 으로; one that ends in a vowel takes 가, 를, 는,
  와, 로 (and one that ends in ㄹ takes 로: 연필로). ``final_consonant`` reads the sound off
  the syllable's Unicode code point. 에서 marks the place of an action, 에 a time or a
  destination.
- **Word order**: subject, time, place, means, destination, object, adverb, verb. The verb
  moves from the middle of the English sentence to the end of the Korean one, and every
  prepositional phrase moves from the end to the middle.
- **Verbs** in the plain declarative present (본다, 읽는다, 만든다), an attributive form for
  relative clauses (보는, 읽는, 만드는), -고 for "and" and -지만 for "but" between clauses;
  the forms are computed from the stem (``verb_forms``). The subjects of clauses joined by
  "but" are contrasted, with the topic particle 은/는.
- **Relative clauses** come before the noun they describe: "the student who reads the book" is
  책을 읽는 학생, "the book that the student reads" is 학생이 읽는 책; one may nest in another.
- **Coordinated nouns** take 와/과 ("the dog and the cat": 개와 고양이); coordinated clauses
  reach 40 words and more.

What it leaves out: tense (every verb is in the present), honorific verb forms (선생님이
보신다), speech levels other than the plain declarative, plurals, pronouns, questions,
negation, and the irregular verbs and adjectives whose forms it does not need. Articles have
no Korean counterpart; demonstratives do (this 이, that 그, "that ... over there" 저).

Each Korean token points at the English word it translates (``Example.source``): a particle
that marks a role (이/가, 을/를, 은/는) translates no word; 와/과 translates "and", 에서 and 에
the preposition, (으)로 "with" or "by"; the ending of a verb is part of the verb's token.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from . import _validate

__all__ = ["LENGTHS", "PHRASES", "final_consonant", "is_hangul", "particle", "verb_forms", "join",
           "Example", "generate", "translate", "lexicon", "source_words", "target_words"]

# --- Hangul: which particle a noun takes depends on the last sound of its last syllable ------------

SYLLABLES = (0xAC00, 0xD7A3)  # 가 ... 힣: every syllable is 0xAC00 + (initial * 21 + vowel) * 28 + final
N_FINALS = 28  # the final consonants (batchim) a syllable may end with; 0 is none
NIEUN, RIEUL = 4, 8  # the finals ㄴ and ㄹ

# role -> (after a final consonant, after a vowel)
PARTICLES = {"subject": ("이", "가"), "object": ("을", "를"), "topic": ("은", "는"),
             "and": ("과", "와"), "with": ("으로", "로")}
AT, TO = "에서", "에"  # where an action happens; a time or a destination (the same after any sound)
ALL_PARTICLES = (*(p for pair in PARTICLES.values() for p in pair), AT, TO)


def is_hangul(word: str) -> bool:
    """True when ``word`` is one or more Hangul syllables and nothing else."""
    return isinstance(word, str) and word != "" and all(
        SYLLABLES[0] <= ord(c) <= SYLLABLES[1] for c in word)


def final_consonant(word: str) -> int:
    """The final consonant of the word's last syllable: 0 for none (a vowel), 4 for ㄴ, 8 for ㄹ ..."""
    if not is_hangul(word):
        raise ValueError(f"final_consonant expects a word in Hangul, got {word!r}")
    return (ord(word[-1]) - SYLLABLES[0]) % N_FINALS


def particle(word: str, role: str) -> str:
    """The particle that marks ``word`` in ``role`` (subject, object, topic, and, with).

    학생 -> 학생이, 개 -> 개가; 책 -> 책을, 공 -> 공을, 사과 -> 사과를; 칼 -> 칼로 (ㄹ takes 로).
    """
    _validate.one_of(role, tuple(PARTICLES), "role", "particle")
    after_consonant, after_vowel = PARTICLES[role]
    final = final_consonant(word)
    if role == "with" and final == RIEUL:
        return after_vowel
    return after_consonant if final else after_vowel


class VerbForms(NamedTuple):
    """The four forms of a verb the grammar uses."""

    plain: str        # the plain declarative present, ending a sentence: 본다, 읽는다
    attributive: str  # before a noun, in a relative clause: 보는, 읽는
    and_: str         # before "and" and the next clause: 보고, 읽고
    but: str          # before "but" and the next clause: 보지만, 읽지만


def verb_forms(stem: str) -> VerbForms:
    """The forms of a verb from its stem (the dictionary form without 다): 보 -> 본다, 보는, 보고, 보지만.

    After a vowel the declarative adds ㄴ다 to the last syllable (본다), after a consonant 는다
    (읽는다); a stem ending in ㄹ drops it before ㄴ (만들 -> 만든다, 만드는).
    """
    final = final_consonant(stem)
    if final == RIEUL:
        head = stem[:-1] + chr(ord(stem[-1]) - RIEUL)  # drop the ㄹ: 만들 -> 만드
        return VerbForms(head[:-1] + chr(ord(head[-1]) + NIEUN) + "다", head + "는", stem + "고",
                         stem + "지만")
    plain = stem + "는다" if final else stem[:-1] + chr(ord(stem[-1]) + NIEUN) + "다"
    return VerbForms(plain, stem + "는", stem + "고", stem + "지만")


def join(tokens: Sequence[str]) -> str:
    """Korean as it is written: each particle joined to the noun before it.

    ["학생", "이", "책", "을", "읽는다"] -> "학생이 책을 읽는다". A particle joins only a noun of the
    lexicon, so the demonstrative 이 ("this") before a noun stays a word of its own.
    """
    if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
        raise TypeError(f"join expects a list of Korean tokens, got {tokens!r}")
    words: list[str] = []
    previous = None
    for token in tokens:
        if words and token in ALL_PARTICLES and previous in _NOUNS_KO:
            words[-1] += token
        else:
            words.append(token)
        previous = token
    return " ".join(words)


# --- The lexicon: English -> Hangul ----------------------------------------------------------------

PEOPLE = {"student": "학생", "teacher": "선생님", "boy": "소년", "girl": "소녀", "child": "아이",
          "baby": "아기", "farmer": "농부", "doctor": "의사", "nurse": "간호사", "cook": "요리사",
          "friend": "친구", "mother": "어머니", "father": "아버지", "painter": "화가", "singer": "가수",
          "writer": "작가", "king": "왕", "queen": "여왕", "soldier": "군인", "neighbour": "이웃",
          "guest": "손님", "fisherman": "어부"}
ANIMALS = {"dog": "개", "cat": "고양이", "bird": "새", "horse": "말", "rabbit": "토끼", "tiger": "호랑이",
           "bear": "곰", "monkey": "원숭이", "fox": "여우", "lion": "사자", "cow": "소", "pig": "돼지",
           "duck": "오리", "mouse": "쥐", "elephant": "코끼리", "chicken": "닭", "wolf": "늑대",
           "turtle": "거북이", "sheep": "양"}
THINGS = {"book": "책", "letter": "편지", "ball": "공", "picture": "그림", "song": "노래",
          "newspaper": "신문", "map": "지도", "bag": "가방", "hat": "모자", "umbrella": "우산",
          "box": "상자", "chair": "의자", "door": "문", "window": "창문", "cup": "컵", "clock": "시계",
          "bicycle": "자전거", "car": "자동차", "key": "열쇠", "pencil": "연필", "photo": "사진",
          "gift": "선물", "toy": "장난감", "flower": "꽃"}
FOODS = {"apple": "사과", "bread": "빵", "cake": "케이크", "rice": "밥", "egg": "달걀",
         "banana": "바나나", "watermelon": "수박", "potato": "감자", "carrot": "당근", "meat": "고기",
         "cookie": "과자", "soup": "국"}
DRINKS = {"milk": "우유", "water": "물", "tea": "차", "juice": "주스", "coffee": "커피"}
PLACES = {"park": "공원", "school": "학교", "house": "집", "garden": "정원", "library": "도서관",
          "market": "시장", "river": "강", "forest": "숲", "hospital": "병원", "station": "역",
          "kitchen": "부엌", "room": "방", "shop": "가게", "restaurant": "식당", "office": "사무실",
          "village": "마을", "city": "도시", "beach": "해변", "mountain": "산", "museum": "박물관",
          "zoo": "동물원", "classroom": "교실", "yard": "마당", "lake": "호수", "farm": "농장"}
# "in the park", but "at the school", "on the mountain": the English preposition of each place
PLACE_PREPOSITIONS = {"school": "at", "market": "at", "station": "at", "beach": "at", "farm": "at",
                      "lake": "at", "mountain": "on"}
# A time is a fixed phrase: its English words before the noun, and the noun's Korean.
TIMES = {"morning": (("in", "the"), "아침"), "afternoon": (("in", "the"), "오후"),
         "evening": (("in", "the"), "저녁"), "weekend": (("at", "the"), "주말"),
         "night": (("at",), "밤"), "spring": (("in",), "봄"), "summer": (("in",), "여름"),
         "autumn": (("in",), "가을"), "winter": (("in",), "겨울"), "today": ((), "오늘"), "now": ((), "지금")}
INSTRUMENTS = {"pencil": "연필", "pen": "펜", "brush": "붓", "knife": "칼", "spoon": "숟가락",
               "fork": "포크", "chopsticks": "젓가락", "key": "열쇠", "hammer": "망치", "net": "그물",
               "stick": "막대기", "towel": "수건", "water": "물", "soap": "비누"}
BARE = ("chopsticks", "water", "soap")  # instruments without an article: "with water"
VEHICLES = {"bus": "버스", "train": "기차", "bicycle": "자전거", "boat": "배", "taxi": "택시",
            "subway": "지하철", "car": "자동차"}  # "by bus": no article

ANIMATE = ("person", "animal")
NOUN_KINDS = {"person": PEOPLE, "animal": ANIMALS, "thing": THINGS, "food": FOODS, "drink": DRINKS,
              "place": PLACES}


class Adjective(NamedTuple):
    """An adjective, its attributive Korean form, and the kinds of noun it describes."""

    en: str
    ko: str
    kinds: tuple[str, ...]


_ANY = ("person", "animal", "thing", "food", "drink", "place")
_OBJECTS = ("thing", "food", "drink")
ADJECTIVES = tuple(Adjective(*a) for a in [
    ("happy", "행복한", ANIMATE), ("tired", "피곤한", ANIMATE), ("clever", "똑똑한", ANIMATE),
    ("kind", "친절한", ("person",)), ("young", "젊은", ANIMATE), ("sad", "슬픈", ANIMATE),
    ("hungry", "배고픈", ANIMATE), ("brave", "용감한", ANIMATE), ("lazy", "게으른", ANIMATE),
    ("busy", "바쁜", ("person",)), ("cute", "귀여운", ("animal", "thing")),
    ("old", "늙은", ANIMATE), ("old", "오래된", ("thing", "place")),  # one English word, two Korean
    ("big", "큰", ("person", "animal", "thing", "place")),
    ("small", "작은", ("person", "animal", "thing", "place", "food")),
    ("pretty", "예쁜", ("person", "animal", "thing", "place")),
    ("beautiful", "아름다운", ("person", "thing", "place")),
    ("famous", "유명한", ("person", "thing", "place")), ("good", "좋은", _ANY),
    ("new", "새로운", ("thing", "place")), ("red", "빨간", ("thing",)), ("blue", "파란", ("thing",)),
    ("white", "하얀", ("animal", "thing")), ("black", "검은", ("animal", "thing")),
    ("yellow", "노란", ("thing",)), ("heavy", "무거운", ("thing",)), ("light", "가벼운", ("thing",)),
    ("clean", "깨끗한", ("thing", "place", "drink")), ("dirty", "더러운", ("animal", "thing", "place")),
    ("long", "긴", ("thing",)), ("expensive", "비싼", ("thing", "food")), ("cheap", "싼", ("thing", "food")),
    ("warm", "따뜻한", ("food", "drink", "place")), ("cold", "차가운", ("food", "drink")),
    ("delicious", "맛있는", ("food", "drink")), ("sweet", "달콤한", ("food", "drink")),
    ("fresh", "신선한", ("food",)), ("interesting", "재미있는", ("thing",)),
    ("quiet", "조용한", ("person", "place")), ("noisy", "시끄러운", ("person", "animal", "place")),
])
ADVERBS = {"often": "자주", "always": "항상", "sometimes": "가끔", "usually": "보통", "slowly": "천천히",
           "quickly": "빨리", "quietly": "조용히", "again": "다시", "carefully": "조심스럽게",
           "happily": "행복하게", "suddenly": "갑자기", "secretly": "몰래"}
DEMONSTRATIVES = {"this": "이", "that": "그"}  # "that ... over there" is 저
FAR = "저"


@dataclass(frozen=True)
class Verb:
    """A verb: its English forms, its Korean stem, and the nouns it takes."""

    en: str                          # with a singular subject: "sees"
    en_plural: str                   # with "the dog and the cat": "see"
    stem: str                        # the Korean stem: 보 (보다)
    subjects: tuple[str, ...]        # the kinds of noun that can be its subject
    objects: tuple[str, ...] = ()    # the kinds of its object; () for an intransitive verb
    instruments: tuple[str, ...] = ()  # what it can be done with: "with a pencil"
    motion: bool = False             # goes somewhere: "to the park", "by bus"; no place phrase

    @property
    def forms(self) -> VerbForms:
        """Its Korean forms: plain, attributive, and-, but-."""
        return verb_forms(self.stem)


_P, _A = ("person",), ANIMATE
VERBS = tuple(Verb(*v[:5], **(v[5] if len(v) > 5 else {})) for v in [
    ("sees", "see", "보", _A, _ANY), ("likes", "like", "좋아하", _A, _ANY),
    ("loves", "love", "사랑하", _P, _A), ("helps", "help", "돕", _A, _A),
    ("follows", "follow", "따라가", _A, _A), ("calls", "call", "부르", _P, _A),
    ("meets", "meet", "만나", _P, _P), ("teaches", "teach", "가르치", _P, _P),
    ("praises", "praise", "칭찬하", _P, _P), ("wakes", "wake", "깨우", _P, _A),
    ("chases", "chase", "쫓", _A, _A), ("bites", "bite", "물", ("animal",), _A),
    ("finds", "find", "찾", _A, ("person", "animal", "thing", "food")),
    ("remembers", "remember", "기억하", _P, _ANY), ("visits", "visit", "방문하", _P, ("place", "person")),
    ("cleans", "clean", "청소하", _P, ("place",)),
    ("reads", "read", "읽", _P, ("thing",), {"instruments": ()}),
    ("writes", "write", "쓰", _P, ("thing",), {"instruments": ("pencil", "pen", "brush")}),
    ("draws", "draw", "그리", _P, ("person", "animal", "thing", "food"),
     {"instruments": ("pencil", "pen", "brush")}),
    ("eats", "eat", "먹", _A, ("food",), {"instruments": ("spoon", "fork", "chopsticks")}),
    ("drinks", "drink", "마시", _A, ("drink",)), ("buys", "buy", "사", _P, _OBJECTS),
    ("sells", "sell", "팔", _P, _OBJECTS), ("makes", "make", "만들", _P, ("thing", "food")),
    ("cuts", "cut", "자르", _P, ("food", "thing"), {"instruments": ("knife",)}),
    ("washes", "wash", "씻", _P, ("thing", "food"), {"instruments": ("water", "soap", "towel")}),
    ("catches", "catch", "잡", _A, ("animal", "thing"), {"instruments": ("net", "stick")}),
    ("throws", "throw", "던지", _P, ("thing", "food")),
    ("opens", "open", "열", _P, ("thing",), {"instruments": ("key", "knife", "stick")}),
    ("closes", "close", "닫", _P, ("thing",)),
    ("fixes", "fix", "고치", _P, ("thing",), {"instruments": ("hammer", "knife", "stick")}),
    ("carries", "carry", "나르", _A, _OBJECTS), ("pushes", "push", "밀", _A, ("thing", "person", "animal")),
    ("receives", "receive", "받", _P, ("thing", "food")), ("sends", "send", "보내", _P, ("thing", "food")),
    ("brings", "bring", "가져오", _P, _OBJECTS), ("hears", "hear", "듣", _A, ("thing",)),
    ("runs", "run", "달리", _A), ("sleeps", "sleep", "자", _A), ("laughs", "laugh", "웃", _P),
    ("cries", "cry", "울", _A), ("sings", "sing", "노래하", ("person",)), ("dances", "dance", "춤추", _P),
    ("walks", "walk", "걷", _A), ("rests", "rest", "쉬", _A), ("plays", "play", "놀", _A),
    ("works", "work", "일하", _P), ("studies", "study", "공부하", _P), ("waits", "wait", "기다리", _A),
    ("swims", "swim", "수영하", _A), ("cooks", "cook", "요리하", _P), ("shouts", "shout", "소리치", _P),
    ("goes", "go", "가", _A, (), {"motion": True}), ("comes", "come", "오", _A, (), {"motion": True}),
    ("returns", "return", "돌아가", _A, (), {"motion": True}),
])
# Nouns without "a": "the water", never "a water".
MASS = ("water", "milk", "tea", "juice", "coffee", "rice", "bread", "meat", "soup")
_GIFTS = ("letter", "gift", "photo", "picture", "flower", "book", "box", "cake", "cookie", "toy")
_GOODS = tuple(n for d in (THINGS, FOODS, DRINKS) for n in d if n not in ("letter", "song", "photo", "gift"))
# Objects a verb really takes, beyond its kinds: one reads a book, not a chair.
OBJECT_NOUNS = {"reads": ("book", "letter", "newspaper", "map"), "writes": ("letter", "book", "song"),
                "hears": ("song",), "cleans": ("room", "kitchen", "house", "classroom", "yard", "office"),
                "opens": ("door", "window", "box", "bag"),
                "closes": ("door", "window", "box", "bag", "umbrella"),
                "catches": ("ball", *ANIMALS), "throws": ("ball", "apple", "egg", "hat", "box", "key"),
                "fixes": ("chair", "door", "window", "clock", "bicycle", "car", "toy", "box"),
                "cuts": ("bread", "cake", "meat", "watermelon", "carrot", "potato", "apple", "picture"),
                "washes": ("cup", "apple", "potato", "carrot", "car", "bicycle", "hat", "bag"),
                "bites": ("boy", "girl", "child", "farmer", "fisherman", *ANIMALS),
                "visits": (*PLACES, *PEOPLE),
                "makes": ("cake", "bread", "cookie", "soup", "box", "toy", "chair", "hat", "picture", "song"),
                "sends": _GIFTS, "receives": _GIFTS,
                "buys": _GOODS, "sells": _GOODS}
_VERB_BY_WORD = {w: (v, w == v.en_plural) for v in VERBS for w in (v.en, v.en_plural)}
# The Korean nouns: each is followed by a particle (오늘 "today" and 지금 "now" are adverbs: no particle).
_NOUNS_KO = frozenset(k for d in (*NOUN_KINDS.values(), INSTRUMENTS, VEHICLES) for k in d.values()) | {
    ko for before, ko in TIMES.values() if before}
_ADJECTIVE_WORDS = tuple(dict.fromkeys(a.en for a in ADJECTIVES))

MAX_DEPTH = 2   # a relative clause may hold one more inside it, no deeper
MAX_CLAUSES = 4  # clauses joined by "and" / "but"
MAX_ADJECTIVES = 2
LENGTHS = (4, 48)  # the shortest and longest English sentence ``generate`` makes, in words
PHRASES = ("subject", "object", "verb", "adverb", "place", "time", "means", "destination")


def lexicon() -> dict[str, list[tuple[str, str]]]:
    """Every English word of the task with its Korean, by part of speech (verbs in their plain form)."""
    nouns = {en: ko for d in (*NOUN_KINDS.values(), INSTRUMENTS, VEHICLES) for en, ko in d.items()}
    return {
        "noun": list(nouns.items()) + [(en, ko) for en, (before, ko) in TIMES.items() if before],
        "adjective": [(a.en, a.ko) for a in ADJECTIVES],
        "verb": [(v.en, v.forms.plain) for v in VERBS],
        "adverb": list(ADVERBS.items()) + [("today", "오늘"), ("now", "지금")],
        "demonstrative": [*DEMONSTRATIVES.items(), ("that ... over there", FAR)],
    }


def source_words() -> list[str]:
    """Every English word a sentence of the task can contain (the source vocabulary)."""
    words = ["the", "a", "an", "this", "that", "over", "there", "who", "and", "but",
             "with", "by", "to", "in", "at", "on"]
    words += [en for kind in NOUN_KINDS.values() for en in kind] + [*INSTRUMENTS, *VEHICLES, *TIMES]
    words += [*_ADJECTIVE_WORDS, *ADVERBS] + [w for v in VERBS for w in (v.en, v.en_plural)]
    return list(dict.fromkeys(words))


def target_words() -> list[str]:
    """Every Korean token a translation can contain (the target vocabulary)."""
    words = [ko for kind in NOUN_KINDS.values() for ko in kind.values()]
    words += [*INSTRUMENTS.values(), *VEHICLES.values(), *(ko for _, ko in TIMES.values())]
    words += [a.ko for a in ADJECTIVES] + list(ADVERBS.values()) + [*DEMONSTRATIVES.values(), FAR]
    words += [f for v in VERBS for f in v.forms] + list(ALL_PARTICLES)
    return list(dict.fromkeys(words))


# --- Sentences as trees ----------------------------------------------------------------------------


@dataclass(eq=False)
class NP:
    """A noun phrase: [determiner] [adjectives] noun [over there] [relative clause] [and NP]."""

    kind: str                       # person, animal, thing, food, drink, place, instrument, vehicle
    noun: str                       # the English noun
    det: str | None = "the"         # the, a, this, that; None for "with water", "by bus"
    adjectives: list[str] = field(default_factory=list)
    far: bool = False               # "that dog over there": 저 개
    rel: Clause | None = None       # "who reads the book", "that the boy sees"
    conj: NP | None = None          # "and the cat"
    depth: int = 0                  # how many relative clauses this phrase sits in
    open: bool = True               # may take a relative clause or a conjunct


@dataclass(eq=False)
class Clause:
    """A clause: subject [adverb] verb [object] [to ...] [with/by ...] [in/at ...] [time].

    In a relative clause, ``gap`` names the role its head noun plays (and the subject or object
    is None there): "the boy who reads the book" has gap "subject".
    """

    verb: Verb
    subject: NP | None
    object: NP | None = None
    gap: str | None = None
    adverb: str | None = None
    means: NP | None = None         # "with a pencil" (an instrument), "by bus" (a vehicle)
    destination: NP | None = None   # "to the park" (verbs of motion)
    place: NP | None = None         # "in the park"
    time: str | None = None         # "in the morning", "today": a key of TIMES


class Example(NamedTuple):
    """One English sentence, its Korean tokens, and for each token the English word it translates."""

    english: list[str]
    korean: list[str]
    source: list[int | None]  # index into ``english``; None for 이/가, 을/를, 은/는
    phrase: list[str]         # the role of each Korean token in its clause (PHRASES)


# --- Rendering a tree as English and Korean, with the alignment -------------------------------------


class _Word:
    """One English word; the Korean tokens that translate it point at this object."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


_Ko = tuple[str, "_Word | None", str]  # a Korean token, the English word it translates, its phrase


def _adjective_ko(word: str, kind: str) -> str:
    forms = [a for a in ADJECTIVES if a.en == word]
    return next((a.ko for a in forms if kind in a.kinds), forms[0].ko)


def _noun_ko(np: NP) -> str:
    table = {"instrument": INSTRUMENTS, "vehicle": VEHICLES, **NOUN_KINDS}[np.kind]
    return table[np.noun]


def _render_np(np: NP, phrase: str) -> tuple[list[_Word], list[_Ko]]:
    """English and Korean of a noun phrase (without the particle that marks its role)."""
    words = [*np.adjectives, np.noun]
    det = None
    if np.det is not None:
        det = _Word("an" if np.det == "a" and words[0][0] in "aeiou" else np.det)
    adjs, noun = [_Word(w) for w in np.adjectives], _Word(np.noun)
    en = ([det] if det else []) + adjs + [noun] + ([_Word("over"), _Word("there")] if np.far else [])
    ko: list[_Ko] = []
    if np.rel is not None:
        rel_en, rel_ko = _render_relative(np.rel, np)
        en, ko = en + rel_en, rel_ko
    if np.det in DEMONSTRATIVES:
        ko.append((FAR if np.far else DEMONSTRATIVES[np.det], det, phrase))
    ko += [(_adjective_ko(a.text, np.kind), a, phrase) for a in adjs]
    ko.append((_noun_ko(np), noun, phrase))
    if np.conj is not None:
        and_ = _Word("and")
        conj_en, conj_ko = _render_np(np.conj, phrase)
        en += [and_, *conj_en]
        ko += [(particle(ko[-1][0], "and"), and_, phrase), *conj_ko]
    return en, ko


def _marked(np: NP, phrase: str, role: str) -> tuple[list[_Word], list[_Ko]]:
    """A noun phrase and the particle of its role after its last noun."""
    en, ko = _render_np(np, phrase)
    return en, ko + [(particle(ko[-1][0], role), None, phrase)]


def _render_relative(c: Clause, head: NP) -> tuple[list[_Word], list[_Ko]]:
    """A relative clause: English after its noun ("who reads the book"), Korean before it (책을 읽는)."""
    verb = _Word(c.verb.en)
    adverb = [_Word(c.adverb)] if c.adverb else []
    ko_adverb: list[_Ko] = [(ADVERBS[w.text], w, "adverb") for w in adverb]
    ko_verb: list[_Ko] = [(c.verb.forms.attributive, verb, "verb")]
    if c.gap == "subject":
        who = _Word("who" if head.kind == "person" else "that")
        obj_en, obj_ko = _marked(c.object, "object", "object") if c.object else ([], [])
        return [who, *adverb, verb, *obj_en], obj_ko + ko_adverb + ko_verb
    subj_en, subj_ko = _marked(c.subject, "subject", "subject")
    return [_Word("that"), *subj_en, *adverb, verb], subj_ko + ko_adverb + ko_verb


def _render_clause(c: Clause, topic: bool, ending: str) -> tuple[list[_Word], list[_Ko]]:
    """A main clause. Korean order: subject, time, place, means, destination, object, adverb, verb."""
    subj_en, subj_ko = _marked(c.subject, "subject", "topic" if topic else "subject")
    verb = _Word(c.verb.en_plural if c.subject.conj is not None else c.verb.en)
    adverb = [_Word(c.adverb)] if c.adverb else []
    obj_en, obj_ko = _marked(c.object, "object", "object") if c.object else ([], [])
    en = [*subj_en, *adverb, verb, *obj_en]
    phrases: dict[str, list[_Ko]] = {}
    for slot in ("destination", "means", "place"):  # the English order
        np = getattr(c, slot)
        if np is not None:
            prep = _Word({"means": "with" if np.kind == "instrument" else "by", "destination": "to",
                          "place": PLACE_PREPOSITIONS.get(np.noun, "in")}[slot])
            np_en, np_ko = _render_np(np, slot)
            mark = {"means": particle(np_ko[-1][0], "with"), "destination": TO, "place": AT}[slot]
            en += [prep, *np_en]
            phrases[slot] = np_ko + [(mark, prep, slot)]
    time_ko: list[_Ko] = []
    if c.time is not None:
        before, ko = TIMES[c.time]
        time_en = [_Word(w) for w in before] + [_Word(c.time)]
        en += time_en
        time_ko = [(ko, time_en[-1], "time")] + ([(TO, time_en[0], "time")] if before else [])
    form = {"plain": c.verb.forms.plain, "and": c.verb.forms.and_, "but": c.verb.forms.but}[ending]
    ko = subj_ko + time_ko + [t for s in ("place", "means", "destination") for t in phrases.get(s, [])]
    ko += obj_ko + [(ADVERBS[w.text], w, "adverb") for w in adverb] + [(form, verb, "verb")]
    return en, ko


def _render(clauses: Sequence[Clause], connectors: Sequence[str]) -> Example:
    """The English and Korean of a sentence of clauses joined by "and" / "but", and the alignment."""
    en: list[_Word] = []
    ko: list[_Ko] = []
    for i, clause in enumerate(clauses):
        before = connectors[i - 1] if i else None
        after = connectors[i] if i < len(connectors) else None
        if before:
            en.append(_Word(before))
        c_en, c_ko = _render_clause(clause, "but" in (before, after), after or "plain")
        en += c_en
        ko += c_ko
    index = {id(w): i for i, w in enumerate(en)}
    return Example([w.text for w in en], [t for t, _, _ in ko],
                   [index[id(w)] if w is not None else None for _, w, _ in ko], [p for _, _, p in ko])



# --- Generating a sentence of a given length ----------------------------------------------------------
#
# Start from one short clause and grow it: an adjective, an adverb, a time, a place, a relative clause,
# a conjunct, another clause ... Each growth adds a known number of English words, and only growths that
# fit the words still missing are drawn, so the sentence ends at exactly the length asked for.

DETERMINERS = ("the", "the", "the", "a", "a", "this", "that")  # drawn with these frequencies
CORE = tuple(NOUN_KINDS)  # the kinds of noun a subject or an object can be
_TABLES = {"instrument": INSTRUMENTS, "vehicle": VEHICLES, **NOUN_KINDS}
_TIMES_BY_WORDS = {n: tuple(t for t, (before, _) in TIMES.items() if len(before) + 1 == n) for n in (1, 2, 3)}
Growth = tuple[int, Callable[[], None]]  # (English words it adds, the function that applies it)


@functools.cache
def _nouns(kinds: tuple[str, ...], only: tuple[str, ...] | None = None) -> tuple[tuple[str, str], ...]:
    """The (kind, noun) pairs of ``kinds``, restricted to the nouns in ``only`` when given."""
    return tuple((k, n) for k in kinds for n in _TABLES[k] if only is None or n in only)


def _objects(verb: Verb) -> tuple[tuple[str, str], ...]:
    """The nouns a verb takes as its object."""
    return _nouns(verb.objects, OBJECT_NOUNS.get(verb.en))


# Tables the generator consults at every growth, computed once.
_ADJECTIVES_BY_KIND = {k: tuple(dict.fromkeys(a.en for a in ADJECTIVES if k in a.kinds)) for k in CORE}
_ADJECTIVES_BY_KIND["instrument"] = _ADJECTIVES_BY_KIND["thing"]
_ACTING = {(k, t): [v for v in VERBS if k in v.subjects and not v.motion and bool(v.objects) == t]
           for k in CORE for t in (False, True)}  # verbs of a subject relative, by kind and transitivity
_UNDERGOING = {(k, n): [v for v in VERBS if (k, n) in set(_objects(v))] for k, n in _nouns(CORE)}


def _new_np(rng: random.Random, nouns: Sequence[tuple[str, str]], depth: int = 0, open_: bool = True,
            bare: bool = False) -> NP:
    kind, noun = rng.choice(nouns)
    det = None if bare else rng.choice(DETERMINERS)
    if det == "a" and noun in MASS:
        det = "the"
    return NP(kind, noun, det, depth=depth, open=open_)


def _new_clause(rng: random.Random, verb: Verb) -> Clause:
    obj = _new_np(rng, _objects(verb)) if verb.objects else None
    return Clause(verb, _new_np(rng, _nouns(verb.subjects)), obj)


def _clause_words(verb: Verb) -> int:
    return 5 if verb.objects else 3  # "the dog sees the cat", "the dog runs"


def _relatives(np: NP | None) -> Iterator[Clause]:
    """The relative clause of a noun phrase and those nested inside it."""
    if np is not None and np.rel is not None:
        yield np.rel
        yield from _relatives(np.rel.subject)
        yield from _relatives(np.rel.object)


def _slots(c: Clause) -> Iterator[tuple[NP, str]]:
    """The noun phrases of one clause (not of its relative clauses), conjuncts included, and their slots."""
    for slot in ("subject", "object", "means", "destination", "place"):
        np = getattr(c, slot)
        while np is not None:
            yield np, slot
            np = np.conj


def _growths(rng: random.Random, clauses: list[Clause], connectors: list[str]) -> list[Growth]:
    """Every way to grow the sentence by a few words."""
    growths: list[Growth] = []
    if len(clauses) < MAX_CLAUSES:
        for transitive in (False, True):
            verbs = [v for v in VERBS if bool(v.objects) == transitive]

            def add(verbs=verbs):
                connectors.append(rng.choice(("and", "and", "but")))
                clauses.append(_new_clause(rng, rng.choice(verbs)))
            growths.append((1 + _clause_words(verbs[0]), add))
    relatives = [r for c in clauses for np, _ in _slots(c) for r in _relatives(np)]
    for c, main in [(c, True) for c in clauses] + [(r, False) for r in relatives]:
        growths += _clause_growths(rng, c, main)
        for np, slot in _slots(c):
            growths += _np_growths(rng, np, slot, c if main else None)
    return growths


def _clause_growths(rng: random.Random, c: Clause, main: bool) -> list[Growth]:
    """An adverb; in a main clause also a time, a place, a destination, a means."""
    def setter(name: str, make: Callable[[], object]) -> Callable[[], None]:
        return lambda: setattr(c, name, make())

    growths: list[Growth] = []
    if c.adverb is None:
        growths.append((1, setter("adverb", lambda: rng.choice(list(ADVERBS)))))
    if not main:
        return growths  # a relative clause has no time, place or means
    if c.time is None:
        growths += [(n, setter("time", lambda t=t: rng.choice(t))) for n, t in _TIMES_BY_WORDS.items()]
    places = _nouns(("place",))
    if c.place is None and not c.verb.motion:
        growths.append((3, setter("place", lambda: _new_np(rng, places))))
    if c.destination is None and c.verb.motion:
        growths.append((3, setter("destination", lambda: _new_np(rng, places))))
    if c.means is None and c.verb.motion:
        vehicles = _nouns(("vehicle",))
        growths.append((2, setter("means", lambda: _new_np(rng, vehicles, open_=False, bare=True))))
    if c.means is None:
        for bare in (True, False):
            tools = [("instrument", n) for n in c.verb.instruments if (n in BARE) == bare]
            if tools:
                growths.append((2 if bare else 3, setter(
                    "means", lambda tools=tools, bare=bare: _new_np(rng, tools, open_=False, bare=bare))))
    return growths


def _adjectives_for(np: NP) -> list[str]:
    return [w for w in _ADJECTIVES_BY_KIND.get(np.kind, ()) if w not in np.adjectives]


def _np_growths(rng: random.Random, np: NP, slot: str, clause: Clause | None) -> list[Growth]:
    """An adjective, "over there", a relative clause, a conjunct (in a main clause's subject or object)."""
    growths: list[Growth] = []
    adjectives = _adjectives_for(np) if np.det is not None else []
    if adjectives and len(np.adjectives) < MAX_ADJECTIVES:
        growths.append((1, lambda: np.adjectives.insert(rng.randint(0, len(np.adjectives)),
                                                        rng.choice(adjectives))))
    if np.det == "that" and not np.far and np.rel is None:
        growths.append((2, lambda: setattr(np, "far", True)))
    if np.rel is not None or np.conj is not None or not np.open:
        return growths
    if clause is not None and slot in ("subject", "object"):
        fits = _nouns(clause.verb.subjects) if slot == "subject" else _objects(clause.verb)
        nouns = [(k, n) for k, n in fits if k == np.kind and n != np.noun]  # "reads a book and a map"
        if nouns:
            growths.append((3, lambda: setattr(np, "conj", _new_np(rng, nouns, np.depth, open_=False))))
    if np.depth < MAX_DEPTH and not np.far:
        growths += _relative_growths(rng, np)
    return growths


def _relative_growths(rng: random.Random, np: NP) -> list[Growth]:
    """A subject relative ("who runs", "who reads the book") or an object relative ("that the boy reads")."""
    def relative(verbs: list[Verb], gap: str) -> Callable[[], None]:
        def make() -> None:
            verb = rng.choice(verbs)
            if gap == "subject":
                obj = _new_np(rng, _objects(verb), np.depth + 1) if verb.objects else None
                np.rel = Clause(verb, None, obj, gap="subject")
            else:
                subj = _new_np(rng, _nouns(verb.subjects), np.depth + 1, open_=False)
                if subj.det == "that":  # not "the book that that boy reads"
                    subj.det = "the"
                np.rel = Clause(verb, subj, None, gap="object")
        return make

    growths: list[Growth] = []
    for transitive in (False, True):
        verbs = _ACTING.get((np.kind, transitive))
        if verbs:
            growths.append((4 if transitive else 2, relative(verbs, "subject")))
    undergoing = _UNDERGOING.get((np.kind, np.noun))
    if undergoing:
        growths.append((4, relative(undergoing, "object")))
    return growths


def generate(rng: random.Random, length: int) -> Example:
    """A random sentence of exactly ``length`` English words, its Korean and its alignment."""
    if not isinstance(rng, random.Random):
        raise TypeError(f"generate expects a random.Random, got {type(rng).__name__}")
    _validate.int_in(length, "length", "generate", LENGTHS[0], LENGTHS[1] + 1)
    while True:  # a dead end (nothing left that fits) is rare: start again
        verbs = [v for v in VERBS if _clause_words(v) <= length]
        clauses, connectors = [_new_clause(rng, rng.choice(verbs))], []
        missing = length - _clause_words(clauses[0].verb)
        while missing > 0:
            fits = [g for g in _growths(rng, clauses, connectors) if g[0] <= missing]
            if not fits:
                break
            words, apply = rng.choices(fits, weights=[w for w, _ in fits])[0]
            apply()
            missing -= words
        if missing == 0:
            return _render(clauses, connectors)


# --- Reading an English sentence back into a tree: its translation ------------------------------------
#
# A small backtracking parser of the same grammar. Every parse is tried in turn; the first that reads
# the whole sentence is translated. The grammar is built so that a sentence has one reading (the tests
# check it on generated sentences): a relative clause has no prepositional phrase, a conjunct no
# relative clause, and the verb agrees with its subject ("the dog and the cat see").

_Parse = Iterator[tuple["NP | Clause", int]]


def _np_parses(ws: Sequence[str], i: int, kinds: Sequence[str], depth: int, open_: bool,
               conj: bool) -> _Parse:
    n = len(ws)
    det = None
    if i < n and ws[i] in ("the", "a", "an", "this", "that"):
        det, i = ("a" if ws[i] == "an" else ws[i]), i + 1
    adjectives = []
    while i < n and ws[i] in _ADJECTIVE_WORDS:
        adjectives.append(ws[i])
        i += 1
    kind = next((k for k in kinds if i < n and ws[i] in _TABLES[k]), None)
    if kind is None:
        return
    bare = kind == "vehicle" or (kind == "instrument" and ws[i] in BARE)
    if (det is None) != bare or (bare and adjectives):
        return
    np = NP(kind, ws[i], det, adjectives, depth=depth, open=open_)
    i += 1
    if det == "that" and list(ws[i : i + 2]) == ["over", "there"]:
        np.far, i = True, i + 2
    yield np, i
    if open_ and not np.far and depth < MAX_DEPTH:
        for rel, j in _relative_parses(ws, i, np, depth):
            yield replace(np, rel=rel), j
    if conj and i < n and ws[i] == "and":
        for other, j in _np_parses(ws, i + 1, (kind,), depth, False, False):
            yield replace(np, conj=other), j


def _verb_at(ws: Sequence[str], i: int) -> tuple[str | None, Verb | None, bool, int]:
    """[adverb] verb at position i: (adverb, verb, plural, the position after the verb)."""
    adverb = None
    if i < len(ws) and ws[i] in ADVERBS:
        adverb, i = ws[i], i + 1
    if i < len(ws) and ws[i] in _VERB_BY_WORD:
        verb, plural = _VERB_BY_WORD[ws[i]]
        return adverb, verb, plural, i + 1
    return adverb, None, False, i


def _relative_parses(ws: Sequence[str], i: int, head: NP, depth: int) -> _Parse:
    if i < len(ws) and ws[i] in ("who", "that"):  # subject relative: who [adverb] verb [object]
        adverb, verb, plural, j = _verb_at(ws, i + 1)
        if verb is not None and not plural and not verb.motion:
            if not verb.objects:
                yield Clause(verb, None, None, gap="subject", adverb=adverb), j
            else:
                for obj, k in _np_parses(ws, j, CORE, depth + 1, True, False):
                    yield Clause(verb, None, obj, gap="subject", adverb=adverb), k
    if i < len(ws) and ws[i] == "that":  # object relative: that subject [adverb] verb
        for subj, j in _np_parses(ws, i + 1, CORE, depth + 1, False, False):
            adverb, verb, plural, k = _verb_at(ws, j)
            if verb is not None and verb.objects and not plural:
                yield Clause(verb, subj, None, gap="object", adverb=adverb), k


def _optional(ws: Sequence[str], i: int, c: Clause, slot: str) -> _Parse:
    """Clause ``c`` with or without the phrase of ``slot`` at position i (means, destination, place, time)."""
    yield c, i
    if i >= len(ws):
        return
    word = ws[i]
    if slot == "means" and word in ("with", "by"):
        kinds = ("instrument",) if word == "with" else ("vehicle",)
        if word == "by" or c.verb.instruments:
            for np, j in _np_parses(ws, i + 1, kinds, 0, False, False):
                yield replace(c, means=np), j
    elif (slot == "destination" and word == "to" and c.verb.motion) or (
            slot == "place" and word in ("in", "at", "on") and not c.verb.motion):
        for np, j in _np_parses(ws, i + 1, ("place",), 0, True, False):
            yield replace(c, **{slot: np}), j
    elif slot == "time":
        for t, (before, _) in TIMES.items():
            end = i + len(before)
            if tuple(ws[i:end]) == before and end < len(ws) and ws[end] == t:
                yield replace(c, time=t), end + 1


def _clause_parses(ws: Sequence[str], i: int) -> _Parse:
    for subj, j in _np_parses(ws, i, CORE, 0, True, True):
        adverb, verb, plural, k = _verb_at(ws, j)
        if verb is None or plural != (subj.conj is not None):
            continue
        objects = _np_parses(ws, k, CORE, 0, True, True) if verb.objects else iter([(None, k)])
        for obj, m in objects:
            partial = [(Clause(verb, subj, obj, adverb=adverb), m)]
            for slot in ("destination", "means", "place", "time"):
                partial = [p for c, at in partial for p in _optional(ws, at, c, slot)]
            yield from partial


def _sentence_parses(ws: Sequence[str], i: int) -> Iterator[tuple[list[Clause], list[str]]]:
    for c, j in _clause_parses(ws, i):
        if j == len(ws):
            yield [c], []
        elif ws[j] in ("and", "but"):
            for rest, connectors in _sentence_parses(ws, j + 1):
                yield [c, *rest], [ws[j], *connectors]


def translate(english: Sequence[str]) -> Example:
    """The Korean of an English sentence of the grammar, with its alignment (``Example``).

    Raises ``ValueError`` for a sentence the grammar cannot make.
    """
    if isinstance(english, str) or not all(isinstance(w, str) for w in english):
        raise TypeError(f"translate expects a list of English words, got {english!r}")
    parse = next(_sentence_parses(list(english), 0), None)
    if parse is None:
        raise ValueError(f"translate: {' '.join(english)!r} is not a sentence of the translate task's "
                         f"grammar")
    return _render(*parse)

"""``nexmark`` source: the standard Nexmark Person / Auction / Bid generator.

This follows the generator of Apache Beam's and Flink's Nexmark benchmark
(``GeneratorConfig``, ``PersonGenerator``, ``AuctionGenerator``, ``BidGenerator``,
``PriceGenerator``, ``StringsGenerator``):

* event number ``e`` is a person when ``e % 50 == 0``, an auction when ``e % 50`` is 1..3 and a bid
  otherwise (the 1:3:46 proportion);
* ids come from event numbers: the person of epoch ``e // 50`` has id ``1000 + e // 50``, the
  auctions of that epoch ``1000 + 3 * (e // 50) + 0..2``; sellers and bidders are "hot" (the first
  person of the last 100) with probability 3/4, bids go to a hot auction with probability 1/2,
  otherwise ids are drawn among the last ``NUM_ACTIVE_PEOPLE`` people / ``NUM_IN_FLIGHT_AUCTIONS``
  auctions plus a lead of 10;
* prices are ``round(10 ** (random * 6) * 100)``; ``dateTime`` is
  ``base_time + e * 1000 / first_event_rate`` ms, so output never depends on the wall clock;
* bids carry Flink Nexmark's ``channel`` and ``url`` (4 hot channels half the time, else one of
  10,000); ``extra`` pads records towards Nexmark's average sizes.

Where it differs, on purpose: randomness is Python's, not Java's, so values are not bit-equal to
Beam's; strings (names, descriptions, e-mails, extras) are picked from pools made once per seed
from the seeded RNG instead of being drawn character by character, which is what makes a bid cost
well under a microsecond.

**Determinism and splits.**  The event-number space is cut into blocks of :data:`BLOCK` events.
Block ``b``'s records depend only on ``(seed, b)`` (one RNG per block and kind), so a kind filter
yields exactly the matching records of the unfiltered stream, and split ``i`` of ``p``
(blocks ``i, i + p, ...``) gives, over all subtasks, the same events whatever the parallelism.
Within a block, a batch is built field by field with list comprehensions over random words drawn
in bulk (``getrandbits`` -> ``memoryview.cast``), one comprehension per epoch of 50 events.
"""

from __future__ import annotations

import functools
import math
import random
from bisect import bisect_left
from fractions import Fraction
from typing import Any, Callable, Mapping, Sequence

from streamlet.connectors.base import Param, slice_splits, validate_params
from streamlet.connectors.generator import DEFAULT_BASE_TIME
from streamlet.connectors.pacing import RateLimiter
from streamlet.errors import PipelineDefinitionError

FIRST_PERSON_ID = 1000
FIRST_AUCTION_ID = 1000
FIRST_CATEGORY_ID = 10
PERSON_PROPORTION = 1
AUCTION_PROPORTION = 3
BID_PROPORTION = 46
PROPORTION_DENOMINATOR = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION
NUM_ACTIVE_PEOPLE = 1000
NUM_IN_FLIGHT_AUCTIONS = 100
PERSON_ID_LEAD = 10
AUCTION_ID_LEAD = 10
#: hot ids are the first of each group of this many (Beam's HOT_*_RATIO constants)
HOT_GROUP = 100
#: P(hot) = 1 - 1/ratio (Beam's NexmarkConfiguration defaults)
HOT_AUCTION_RATIO = 2
HOT_SELLERS_RATIO = 4
HOT_BIDDERS_RATIO = 4
NUM_CATEGORIES = 5
AVG_PERSON_BYTE_SIZE = 200
AVG_AUCTION_BYTE_SIZE = 500
AVG_BID_BYTE_SIZE = 100
#: Nexmark's default firstEventRate: events per second of simulated event time
DEFAULT_EVENT_RATE = 10_000
CHANNELS_NUMBER = 10_000
HOT_CHANNELS = ("Google", "Facebook", "Baidu", "Apple")
US_STATES = ("AZ", "CA", "ID", "OR", "WA", "WY")
US_CITIES = ("Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle",
             "Kent", "Cheyenne")
FIRST_NAMES = ("Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter")
LAST_NAMES = ("Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris")

#: events per generator block (a multiple of 50 so every block has the same mix)
BLOCK = 1000
KINDS = ("person", "auction", "bid")
#: Flink Nexmark's ``event_type`` of each kind in the mixed stream
EVENT_TYPES = {"person": 0, "auction": 1, "bid": 2}
#: offsets within an epoch of 50 events: [start, end) per kind
_KIND_OFFSETS = {"person": (0, 1), "auction": (1, 4), "bid": (4, 50)}
_POOL = 1024  # strings per pool; indexes use 10 random bits
_U32 = 0xFFFFFFFF
_PRICE_SCALE = 6.0 / 2 ** 32
_LETTERS_TABLE = bytes(97 + b % 26 for b in range(256))


def _spaced_table(special: int) -> bytes:
    # 20 of 256 byte values (~1/13, as StringsGenerator.nextString) become the special character
    return bytes(special if b < 20 else 97 + b % 26 for b in range(256))


def last_base0_person_id(event_id: int) -> int:
    """The newest person id (base 0) at event ``event_id``; the current one for a person event."""
    epoch, offset = divmod(event_id, PROPORTION_DENOMINATOR)
    return epoch * PERSON_PROPORTION + min(offset, PERSON_PROPORTION - 1)


def last_base0_auction_id(event_id: int) -> int:
    """The newest auction id (base 0) at event ``event_id``; the current one for an auction event."""
    epoch, offset = divmod(event_id, PROPORTION_DENOMINATOR)
    if offset < PERSON_PROPORTION:
        epoch, offset = epoch - 1, AUCTION_PROPORTION - 1
    elif offset >= PERSON_PROPORTION + AUCTION_PROPORTION:
        offset = AUCTION_PROPORTION - 1
    else:
        offset -= PERSON_PROPORTION
    return epoch * AUCTION_PROPORTION + offset


def count_kind(kind: str | None, lo: int, hi: int) -> int:
    """How many events of ``kind`` (all kinds when None) have numbers in ``[lo, hi)``."""
    if hi <= lo:
        return 0
    if kind is None:
        return hi - lo
    a, b = _KIND_OFFSETS[kind]

    def upto(x: int) -> int:
        q, r = divmod(x, PROPORTION_DENOMINATOR)
        return q * (b - a) + min(max(r - a, 0), b - a)
    return upto(hi) - upto(lo)


class _Pools:
    """Strings made once per seed: names, descriptions, e-mails, extras, channels and URLs."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed * 1000003 + 0x4E4558)
        self.item_names = self._strings(rng, 20, b" ")
        self.descriptions = self._strings(rng, 100, b" ")
        users, domains = self._strings(rng, 7, b" "), self._strings(rng, 5, b" ")
        self.emails = [f"{u}@{d}.com" for u, d in zip(users, domains)]
        # average string sizes of the generators, for nextExtra's padding
        self.person_extras = self._extras(rng, 8 + 11 + 16 + 19 + 8 + 2, AVG_PERSON_BYTE_SIZE)
        self.auction_extras = self._extras(rng, 8 + 10 + 50 + 40, AVG_AUCTION_BYTE_SIZE)
        self.bid_extras = self._extras(rng, 8 + 8 + 8 + 8, AVG_BID_BYTE_SIZE)
        self.channels, self.urls = self._channels(rng)

    @staticmethod
    def _text(rng: random.Random, n: int, table: bytes) -> str:
        return rng.randbytes(n).translate(table).decode("ascii")

    def _strings(self, rng: random.Random, max_length: int, special: bytes, count: int = _POOL,
                 strip: bool = True) -> list[str]:
        """StringsGenerator.nextString: 3..max_length-1 letters, ~1/13 of them ``special``."""
        lengths = [3 + int(rng.random() * (max_length - 3)) for _ in range(count)]
        text = self._text(rng, sum(lengths), _spaced_table(special[0]))
        out, pos = [], 0
        for n in lengths:
            s = text[pos:pos + n]
            pos += n
            out.append(s.strip() if strip else s)
        return out

    def _extras(self, rng: random.Random, current_size: int, average: int) -> list[str]:
        """StringsGenerator.nextExtra: letters so that the record averages ``average`` bytes."""
        if current_size > average:
            return [""] * _POOL
        want = average - current_size
        delta = round(want * 0.2)
        lengths = [want - delta + (int(rng.random() * 2 * delta) if delta else 0) for _ in range(_POOL)]
        text = self._text(rng, sum(lengths), _LETTERS_TABLE)
        out, pos = [], 0
        for n in lengths:
            out.append(text[pos:pos + n])
            pos += n
        return out

    def _channels(self, rng: random.Random) -> tuple[list[str], list[str]]:
        """Channel names and URLs: indexes 0..3 are the hot channels, 4 + n is ``channel-n``."""
        parts = self._strings(rng, 5, b"_", count=3 * (len(HOT_CHANNELS) + CHANNELS_NUMBER), strip=False)
        urls = [f"https://www.nexmark.com/{parts[3 * i]}/{parts[3 * i + 1]}/{parts[3 * i + 2]}/item.htm?query=1"
                for i in range(len(HOT_CHANNELS) + CHANNELS_NUMBER)]
        channels = list(HOT_CHANNELS)
        for n in range(CHANNELS_NUMBER):
            channels.append(f"channel-{n}")
            i = len(HOT_CHANNELS) + n
            if rng.random() * 10 >= 1:  # 9 in 10 cold URLs name their channel
                rev = int(f"{n:032b}"[::-1], 2)  # Java's Integer.reverse, then abs of the int32
                urls[i] += f"&channel_id={abs(rev - (1 << 32) if rev >= 1 << 31 else rev)}"
        return channels, urls


@functools.lru_cache(maxsize=16)
def _kind_offsets(kind: str | None, length: int) -> Sequence[int]:
    """Offsets in ``[0, length)`` of the events of ``kind`` in a block (every block has the same);
    all of them for the mixed stream (``kind`` None)."""
    if kind is None:
        return range(length)
    a, b = _KIND_OFFSETS[kind]
    return [o for o in range(length) if a <= o % PROPORTION_DENOMINATOR < b]


@functools.lru_cache(maxsize=8)
def _pools(seed: int) -> _Pools:
    return _Pools(seed)


def _words(rng: random.Random, n: int) -> list[int]:
    """``n`` random 64-bit words in one C-level call (~10x cheaper than n getrandbits calls)."""
    return memoryview(rng.getrandbits(64 * n).to_bytes(8 * n, "little")).cast("Q").tolist() if n else []


class NexmarkGenerator:
    """Pure generator of Nexmark records by event number (no I/O, no asyncio).

    ``kind`` None makes the mixed stream, each event wrapped as Flink Nexmark does:
    ``{"event_type": 0|1|2, "person": {...}|None, "auction": {...}|None, "bid": {...}|None}``;
    a kind makes only that kind's flat records.  Example::

        gen = NexmarkGenerator(seed=0, kind="bid")
        bids = gen.generate(0, 100)     # the 92 bids among events 0..99
    """

    def __init__(self, seed: int = 0, base_time: int = DEFAULT_BASE_TIME, event_rate: float = DEFAULT_EVENT_RATE,
                 kind: str | None = None) -> None:
        self.seed = seed
        self.base_time = base_time
        self.kind = kind
        # dateTime = base + e * 1000 / rate in exact integer arithmetic (no float drift over 1e12 events)
        ms = Fraction(1000) / Fraction(event_rate).limit_denominator(1_000_000)
        self._num, self._den = ms.numerator, ms.denominator
        self._pools = _pools(seed)
        self._make: Callable[[int, int, int], list[Any]] = (
            self._mixed if kind is None else getattr(self, f"_{kind}s"))

    def timestamp(self, event_id: int) -> int:
        """Event time (epoch ms) of event number ``event_id``."""
        return self.base_time + event_id * self._num // self._den

    def block_timestamps(self, b: int, stop: int | None = None) -> list[int]:
        """The ``dateTime`` of each record of :meth:`block` ``(b, stop)``, in order (the mixed stream's:
        its person's, auction's or bid's), computed from event numbers without making the records.

        Event times step by whole milliseconds, so where a block spans few of them (fast event
        rates: Nexmark's 10M events/s puts a block of 1,000 events in 1 or 2 ms), the list is made
        of runs (``[t] * n``), one bisection per millisecond (~1 us), instead of one division per
        record (~0.1 us): runs when there are at most a tenth as many as records.
        """
        lo = b * BLOCK
        hi = lo + BLOCK if stop is None else min(lo + BLOCK, stop)
        if hi <= lo:
            return []
        # offsets from lo of the block's records' events (ascending)
        return self._times(lo, _kind_offsets(self.kind, hi - lo))

    def _times(self, lo: int, offs: Sequence[int]) -> list[int]:
        """The dateTime of events ``lo + o`` for the ascending offsets ``offs`` (a list or a range)."""
        n = len(offs)
        if not n:
            return []
        base, num, den = self.base_time, self._num, self._den
        first, last = self.timestamp(lo + offs[0]), self.timestamp(lo + offs[-1])
        if (last - first + 1) * 10 > n:
            if type(offs) is range:
                return [base + e * num // den for e in range(lo + offs.start, lo + offs.stop)]
            return [base + (lo + o) * num // den for o in offs]
        out: list[int] = []
        start = 0
        for t in range(first + 1, last + 1):
            # records from ``start`` have dateTime >= t - 1; the first event with dateTime >= t is
            # the smallest e with e * num >= (t - base) * den
            j = bisect_left(offs, -(-(t - base) * den // num) - lo, start)
            out += [t - 1] * (j - start)
            start = j
        out += [last] * (n - start)
        return out

    def _rng(self, block: int, kind: int) -> random.Random:
        # unique per (seed, block, kind) for seeds in [0, 2**64)
        return random.Random((block * 4 + kind) * 2 ** 64 + self.seed % 2 ** 64)

    def block(self, b: int, stop: int | None = None) -> list[Any]:
        """The records of block ``b``: events ``[b * BLOCK, (b + 1) * BLOCK)``, cut at ``stop``."""
        lo = b * BLOCK
        hi = lo + BLOCK if stop is None else min(lo + BLOCK, stop)
        return self._make(b, lo, hi) if hi > lo else []

    def generate(self, start: int, stop: int) -> list[Any]:
        """Records of the events ``[start, stop)`` in event order (a reference for tests and tools)."""
        out: list[Any] = []
        a = self.kind
        for b in range(start // BLOCK, (stop + BLOCK - 1) // BLOCK):
            recs = self.block(b, stop)
            lo = b * BLOCK
            if lo < start:
                recs = recs[count_kind(a, lo, start):]
            out += recs
        return out

    def _bids(self, b: int, lo: int, hi: int, wrapped: bool = False) -> Any:
        """The bids of events ``[lo, hi)`` of block ``b``: flat records, or (``wrapped``, for the mixed
        stream) one list per epoch of 50 events of records wrapped by event_type, built in one pass."""
        rng = self._rng(b, 2)
        n = count_kind("bid", lo, hi)
        w1, w2 = _words(rng, n), _words(rng, n)
        # the bids' dateTimes, made at once (runs of equal ms at fast rates); lo is a block's start,
        # a multiple of 50, so the bids' offsets are those of every block
        times = self._times(lo, _kind_offsets("bid", hi - lo))
        p = self._pools
        channels, urls, extras = p.channels, p.urls, p.bid_extras
        # module constants as locals: the comprehension reads them as cells, not globals
        u32, scale, n_channels = _U32, _PRICE_SCALE, CHANNELS_NUMBER
        per, first_bid = PROPORTION_DENOMINATOR, PERSON_PROPORTION + AUCTION_PROPORTION
        out: list[Any] = []
        i = 0
        for k in range(lo // per, (hi + per - 1) // per):
            e0, e1 = max(per * k + first_bid, lo), min(per * k + per, hi)
            if e1 <= e0:
                if wrapped:
                    out.append([])
                continue
            # the id arithmetic of BidGenerator.nextBid for epoch k (see the module docstring)
            last_a = AUCTION_PROPORTION * k + AUCTION_PROPORTION - 1
            hot_a = last_a // HOT_GROUP * HOT_GROUP + FIRST_AUCTION_ID
            min_a = max(last_a - NUM_IN_FLIGHT_AUCTIONS, 0)
            base_a, span_a = min_a + FIRST_AUCTION_ID, last_a - min_a + 1 + AUCTION_ID_LEAD
            people = k + 1
            active = min(people, NUM_ACTIVE_PEOPLE)
            base_p, span_p = people - active + FIRST_PERSON_ID, active + PERSON_ID_LEAD
            hot_b = k // HOT_GROUP * HOT_GROUP + 1 + FIRST_PERSON_ID
            m = e1 - e0
            # x: bit 0 set -> hot auction (P=1/2); bits 1-2 not both clear -> hot bidder (P=3/4);
            #    bit 3 set -> hot channel (P=1/2), bits 4-5 pick it; bits 8-31 / 32-55 draw cold ids.
            # y: bits 0-31 price; bits 32-51 cold channel; bits 52-61 extra.
            # The two comprehensions differ only in the wrapper: wrapping in place saves the mixed
            # stream a second pass over its bids (92% of its events).
            if wrapped:
                out.append([{"event_type": 2, "person": None, "auction": None, "bid": {
                    "auction": hot_a if x & 1 else base_a + (x >> 8 & 0xFFFFFF) % span_a,
                    "bidder": hot_b if x & 6 else base_p + (x >> 32 & 0xFFFFFF) % span_p,
                    "price": int(10.0 ** ((y & u32) * scale) * 100.0 + 0.5),
                    "channel": channels[(c := (x >> 4 & 3) if x & 8 else 4 + (y >> 32 & 0xFFFFF) % n_channels)],
                    "url": urls[c],
                    "dateTime": t,
                    "extra": extras[y >> 52 & 1023],
                }} for t, x, y in zip(times[i:i + m], w1[i:i + m], w2[i:i + m])])
            else:
                out += [{
                    "auction": hot_a if x & 1 else base_a + (x >> 8 & 0xFFFFFF) % span_a,
                    "bidder": hot_b if x & 6 else base_p + (x >> 32 & 0xFFFFFF) % span_p,
                    "price": int(10.0 ** ((y & u32) * scale) * 100.0 + 0.5),
                    "channel": channels[(c := (x >> 4 & 3) if x & 8 else 4 + (y >> 32 & 0xFFFFF) % n_channels)],
                    "url": urls[c],
                    "dateTime": t,
                    "extra": extras[y >> 52 & 1023],
                } for t, x, y in zip(times[i:i + m], w1[i:i + m], w2[i:i + m])]
            i += m
        return out

    def _next_person_id(self, k: int, u: Callable[[], float]) -> int:
        """PersonGenerator.nextBase0PersonId + FIRST_PERSON_ID, for an event of epoch ``k``."""
        people = k + 1
        active = min(people, NUM_ACTIVE_PEOPLE)
        return people - active + int(u() * (active + PERSON_ID_LEAD)) + FIRST_PERSON_ID

    def _auctions(self, b: int, lo: int, hi: int) -> list[dict[str, Any]]:
        # auctions are 6% of events: a plain loop over them (the epochs' offsets 1..3), the random
        # draws in AuctionGenerator's order; PriceGenerator.nextPrice and the times inlined
        u = self._rng(b, 1).random
        p = self._pools
        names, descs, extras = p.item_names, p.descriptions, p.auction_extras
        base, num, den = self.base_time, self._num, self._den
        per, first_a, end_a = PROPORTION_DENOMINATOR, PERSON_PROPORTION, PERSON_PROPORTION + AUCTION_PROPORTION
        # events until NUM_IN_FLIGHT_AUCTIONS more auctions exist: the horizon of auction lengths
        ahead = NUM_IN_FLIGHT_AUCTIONS * PROPORTION_DENOMINATOR // AUCTION_PROPORTION
        out = []
        for k in range(lo // per, (hi + per - 1) // per):
            for e in range(max(per * k + first_a, lo), min(per * k + end_a, hi)):
                if u() * HOT_SELLERS_RATIO >= 1:
                    seller = k // HOT_GROUP * HOT_GROUP + FIRST_PERSON_ID
                else:
                    seller = self._next_person_id(k, u)
                category = FIRST_CATEGORY_ID + int(u() * NUM_CATEGORIES)
                initial = int(10.0 ** (u() * 6.0) * 100.0 + 0.5)
                t = base + e * num // den
                horizon = base + (e + ahead) * num // den - t
                expires = t + 1 + int(u() * max(horizon * 2, 1))
                out.append({
                    "id": k * AUCTION_PROPORTION + e - per * k - PERSON_PROPORTION + FIRST_AUCTION_ID,
                    "itemName": names[int(u() * _POOL)],
                    "description": descs[int(u() * _POOL)],
                    "initialBid": initial,
                    "reserve": initial + int(10.0 ** (u() * 6.0) * 100.0 + 0.5),
                    "dateTime": t,
                    "expires": expires,
                    "seller": seller,
                    "category": category,
                    "extra": extras[int(u() * _POOL)],
                })
        return out

    def _persons(self, b: int, lo: int, hi: int) -> list[dict[str, Any]]:
        u = self._rng(b, 0).random
        p = self._pools
        out = []
        for k in range((lo + PROPORTION_DENOMINATOR - 1) // PROPORTION_DENOMINATOR,
                       (hi + PROPORTION_DENOMINATOR - 1) // PROPORTION_DENOMINATOR):
            e = k * PROPORTION_DENOMINATOR
            out.append({
                "id": k * PERSON_PROPORTION + FIRST_PERSON_ID,
                "name": f"{FIRST_NAMES[int(u() * len(FIRST_NAMES))]} {LAST_NAMES[int(u() * len(LAST_NAMES))]}",
                "emailAddress": p.emails[int(u() * _POOL)],
                "creditCard": "%04d %04d %04d %04d" % (int(u() * 10000), int(u() * 10000), int(u() * 10000),
                                                       int(u() * 10000)),
                "city": US_CITIES[int(u() * len(US_CITIES))],
                "state": US_STATES[int(u() * len(US_STATES))],
                "dateTime": self.timestamp(e),
                "extra": p.person_extras[int(u() * _POOL)],
            })
        return out

    def _mixed(self, b: int, lo: int, hi: int) -> list[dict[str, Any]]:
        persons, auctions = self._persons(b, lo, hi), self._auctions(b, lo, hi)
        bids = self._bids(b, lo, hi, wrapped=True)
        out: list[dict[str, Any]] = []
        ip = ia = 0
        # within an epoch events come person, 3 auctions, 46 bids: bids come one list per epoch
        per = PROPORTION_DENOMINATOR
        first_bid = PERSON_PROPORTION + AUCTION_PROPORTION
        for j, k in enumerate(range(lo // per, (hi + per - 1) // per)):
            e0, e1 = max(per * k, lo) - per * k, min(per * k + per, hi) - per * k
            if e0 < PERSON_PROPORTION:
                out.append({"event_type": 0, "person": persons[ip], "auction": None, "bid": None})
                ip += 1
            n_a = max(0, min(e1, first_bid) - max(e0, PERSON_PROPORTION))
            for r in auctions[ia:ia + n_a]:
                out.append({"event_type": 1, "person": None, "auction": r, "bid": None})
            ia += n_a
            out += bids[j]
        return out


def _resolve_base_time(value: Any, where: str) -> int:
    if value == "now":
        import time

        # resolved once, on the client, so every subtask (and every restart) shares it
        return time.time_ns() // 1_000_000
    if isinstance(value, bool) or not isinstance(value, int):
        raise PipelineDefinitionError(f"expected epoch milliseconds (an int) or 'now', got {value!r}",
                                      f"{where}.base_time")
    return value


class NexmarkSource:
    """The Nexmark generator as a source (``type: nexmark``); bounded with ``events:``.

    YAML keys: ``events`` (count of ALL generated events, every kind; omit for endless), ``rate``
    (events/s for the whole source, divided over subtasks; omit for as fast as possible),
    ``kind`` (person | auction | bid: emit only that kind, as flat records), ``seed``,
    ``base_time`` (epoch ms of event 0, or ``now``), ``first_event_rate`` (events/s of simulated
    event time; default ``rate``, else 10,000).  Example::

        sources:
          bids: {type: nexmark, events: 10000000, kind: bid}
    """

    PARAMS = {
        "events": Param("int", "number of events of every kind for the whole source (omit: endless)"),
        "rate": Param("number", "events per second for the whole source (omit: as fast as possible)"),
        "kind": Param("str", "only this kind of event, as flat records (omit: all, wrapped by event_type)",
                      None, choices=KINDS),
        "seed": Param("int", "seed of the random choices", 0),
        "base_time": Param("any", "epoch ms of event 0's dateTime, or 'now'", DEFAULT_BASE_TIME),
        "first_event_rate": Param("number", "events per second of simulated event time that spaces dateTime "
                                            "(default: rate, else 10000)"),
    }

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
        """Check the keys; resolve ``base_time: now`` and the event-time rate."""
        out = validate_params(params, cls.PARAMS, where, ("type", "parallelism"))
        if out["events"] is not None and out["events"] < 0:
            raise PipelineDefinitionError(f"expected events >= 0, got {out['events']!r}", f"{where}.events")
        for key in ("rate", "first_event_rate"):
            if out[key] is not None and not (0 < out[key] < math.inf):  # nan and inf cannot pace
                raise PipelineDefinitionError(f"expected a positive number, got {out[key]!r}", f"{where}.{key}")
        out["base_time"] = _resolve_base_time(out["base_time"], where)
        if out["first_event_rate"] is None:
            out["first_event_rate"] = out["rate"] if out["rate"] is not None else DEFAULT_EVENT_RATE
        return out

    @classmethod
    def is_bounded(cls, params: Mapping[str, Any]) -> bool:
        """Bounded exactly when ``events`` is set."""
        return params["events"] is not None

    @classmethod
    def enumerate_splits(cls, params: Mapping[str, Any], parallelism: int) -> list[dict[str, Any]]:
        """One slice per subtask: split ``i`` of ``p`` generates blocks ``i, i + p, i + 2p, ...``."""
        return slice_splits(parallelism)

    @classmethod
    def create_reader(cls, params: Mapping[str, Any], ctx: Any) -> NexmarkReader:
        """The reader of one subtask (its slices come with ``add_splits``)."""
        return NexmarkReader(params, ctx)


class _Slice:
    """Read position in one generator slice (blocks ``index, index + count, ...``)."""

    __slots__ = ("id", "index", "count", "block", "pos", "released")

    def __init__(self, split: Mapping[str, Any]) -> None:
        self.id: str = split["id"]
        self.index: int = split["index"]
        self.count: int = split["count"]
        #: the block being read (or the next to start)
        self.block: int = split.get("block", self.index)
        #: records of ``block`` already out
        self.pos: int = split.get("pos", 0)
        #: events of ``block`` already paced out (paced readers only)
        self.released: int = split.get("released", 0)


class NexmarkReader:
    """Generates one subtask's blocks (a :class:`~streamlet.connectors.base.SourceReader`).

    A block's records depend only on the seed and the block number, so any assignment of slices
    to subtasks (a restore after a rescale) yields the same events.  Batches are ``batch_size``
    records of one slice; several slices take turns, block by block.

    Split state: ``{"id", "index", "count", "block": the block being read, "pos": its records
    already out, "released": its events already paced out, "done"}``; a restored reader
    regenerates ``block`` and skips ``pos`` records.

    With a ``rate``, pacing counts events of every kind (as ``events:`` does), so a ``kind: bid``
    reader at ``rate: 1000`` emits about 920 bids/s; batches are then ~10 ms of events, and
    :meth:`poll` returns ``[]`` until the next chunk is due (:meth:`wait_available` waits on
    ``ctx.clock``).
    """

    def __init__(self, params: Mapping[str, Any], ctx: Any) -> None:
        self._ctx = ctx
        self._kind: str | None = params["kind"]
        self._gen = NexmarkGenerator(params["seed"], params["base_time"], params["first_event_rate"], self._kind)
        self._stop: int | None = params["events"]
        #: first block past ``events`` (None: endless)
        self._last = None if self._stop is None else (self._stop + BLOCK - 1) // BLOCK
        self._batch_size: int = ctx.batch_size
        self._rate = params["rate"]
        self._limiter: RateLimiter | None = None
        self._slices: list[_Slice] = []
        self._live: list[_Slice] = []
        self._turn = 0
        # the block in memory: its slice, records and (paced) event offsets
        self._cur: _Slice | None = None
        self._buf: list[Any] = []
        self._offsets: Sequence[int] = []
        self._events = 0
        #: with native timestamps (:meth:`timestamp_stage`): the block's dateTimes, and the last batch's
        self._stamped = False
        self._tsbuf: list[int] = []
        self._batch_ts: list[int] = []
        #: the id of the slice the last batch came from
        self.current_split: str | None = None

    async def open(self) -> None:
        """Nothing to acquire."""
        return None

    def add_splits(self, splits: list[dict[str, Any]]) -> None:
        """Take over slices: fresh ones or states from :meth:`snapshot_state` (any subtask's)."""
        for s in splits:
            sl = _Slice(s)
            self._slices.append(sl)
            if not self._done(sl):
                self._live.append(sl)
        if self._rate is not None and self._slices:
            # each slice is 1/count of the source: this reader's share is the sum over its slices
            rate = self._rate * sum(1 / sl.count for sl in self._slices)
            if self._limiter is None:
                self._limiter = RateLimiter(rate, self._ctx.clock, BLOCK)
            else:
                self._limiter.set_rate(rate)

    def _done(self, sl: _Slice) -> bool:
        return self._last is not None and sl.block >= self._last

    def snapshot_state(self, checkpoint_id: int) -> list[dict[str, Any]]:
        """Every slice's block and position in it (finished slices included, ``done: true``)."""
        return [{"id": sl.id, "index": sl.index, "count": sl.count, "block": sl.block, "pos": sl.pos,
                 "released": sl.released, "done": self._done(sl)} for sl in self._slices]

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Nothing to confirm."""
        return None

    def decode_stage(self) -> None:
        """Records are made as dicts already: no decoding."""
        return None

    def timestamp_stage(self, spec: Mapping[str, Any]) -> Callable[[list[Any]], list[int]] | None:
        """``timestamp: dateTime`` natively: each record's event time from its event number (the
        generator's :meth:`~NexmarkGenerator.block_timestamps`), without reading records.  For the
        mixed stream (no ``kind``) that is the wrapped person's, auction's or bid's ``dateTime``;
        for a kind, its records' own.  Other specs: None (the task reads them from the records)."""
        if spec.get("field") != "dateTime":
            return None
        self._stamped = True
        return self._timestamps

    def _timestamps(self, batch: list[Any]) -> list[int]:
        # the batch is the one poll just returned: its timestamps were cut from the block's with it
        return self._batch_ts

    def _records_in(self, sl: _Slice, upto_block: int) -> int:
        """Records ``sl`` makes in its blocks below ``upto_block``, in O(1) (blocks are alike but the last)."""
        assert self._stop is not None
        blocks = range(sl.index, min(upto_block, self._last or 0), sl.count)
        if not blocks:
            return 0
        last = blocks[-1]
        full = count_kind(self._kind, 0, BLOCK)
        return (len(blocks) - 1) * full + count_kind(self._kind, last * BLOCK, min(last * BLOCK + BLOCK, self._stop))

    def progress(self) -> float | None:
        """Fraction of this subtask's records emitted, or None when endless."""
        if self._stop is None:
            return None
        total = made = 0
        for sl in self._slices:
            total += self._records_in(sl, self._last or 0)
            made += self._records_in(sl, sl.block) + sl.pos
        return 1.0 if total == 0 else min(1.0, made / total)

    def _load(self, sl: _Slice) -> None:
        """Make ``sl``'s current block the one in memory."""
        b = sl.block
        self._cur, self._buf = sl, self._gen.block(b, self._stop)
        if self._stamped:
            self._tsbuf = self._gen.block_timestamps(b, self._stop)
        if self._limiter is not None:
            lo = b * BLOCK
            hi = lo + BLOCK if self._stop is None else min(lo + BLOCK, self._stop)
            # lo is a block's start (a multiple of the 50 events of an epoch): every block's offsets
            self._offsets = _kind_offsets(self._kind, hi - lo)
            self._events = hi - lo

    def _next_slice(self) -> _Slice | None:
        """The live slice whose turn it is (its block loaded), or None when all are done."""
        live = self._live
        while live:
            k = self._turn % len(live)
            sl = live[k]
            if self._done(sl):
                live.pop(k)
                continue
            if self._cur is not sl:
                self._load(sl)
            return sl
        return None

    def _end_block(self, sl: _Slice) -> None:
        sl.block += sl.count
        sl.pos = sl.released = 0
        self._cur = None
        self._turn += 1

    def poll(self) -> list[Any] | None:
        """``batch_size`` records of one slice (~10 ms of events when paced), ``[]`` until the next
        paced chunk is due, or ``END_OF_INPUT`` once every block of every slice is done."""
        if self._limiter is not None:
            return self._poll_paced()
        n = self._batch_size
        stamped = self._stamped
        while True:
            sl = self._next_slice()
            if sl is None:
                return None
            out: list[Any] = []
            ts: list[int] = []
            while True:
                buf, pos = self._buf, sl.pos
                take = min(n - len(out), len(buf) - pos)
                if take > 0:
                    if not out and pos == 0 and take == len(buf):
                        out = buf  # a whole block: hand it out without copying
                        if stamped:
                            ts = self._tsbuf
                    else:
                        out += buf[pos:pos + take]
                        if stamped:
                            ts += self._tsbuf[pos:pos + take]
                    sl.pos = pos + take
                if sl.pos < len(buf) or len(out) >= n:
                    break
                self._end_block(sl)
                if len(self._live) > 1 or self._done(sl):
                    break  # one slice per batch: the next block is another slice's turn
                self._load(sl)
            if out:
                self.current_split = sl.id
                self._batch_ts = ts
                return out

    def _poll_paced(self) -> list[Any] | None:
        limiter = self._limiter
        assert limiter is not None
        while True:
            sl = self._next_slice()
            if sl is None:
                return None
            if sl.released >= self._events:
                self._end_block(sl)
                continue
            if limiter.delay() > 0:
                return []
            n = min(limiter.chunk, self._events - sl.released)
            limiter.take(n)
            sl.released += n
            end = bisect_left(self._offsets, sl.released, sl.pos)
            out = self._buf[sl.pos:end]
            if self._stamped:
                self._batch_ts = self._tsbuf[sl.pos:end]
            sl.pos = end
            if out:
                self.current_split = sl.id
                return out

    async def wait_available(self) -> None:
        """Wait on the clock until the next paced chunk is due (cancel-safe)."""
        if self._limiter is not None:
            await self._limiter.wait()

    async def close(self) -> None:
        """Nothing to release."""
        return None

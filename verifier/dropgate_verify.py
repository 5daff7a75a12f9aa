#!/usr/bin/env python3
"""An independent verifier of dropgate drops, in Python's standard library alone.

It re-runs a drop from its public fairness data (`dropgate event fairness --id <event>`)
following docs/fairness.md, without any of dropgate's own code, and reports the same
findings by the same names as `dropgate event verify`.

    python3 verifier/dropgate_verify.py drop fairness.json     # exit 0 pass, 2 fail
    python3 verifier/dropgate_verify.py vectors docs/fairness-vectors.json

Exit code 1 means the input could not be read.
"""

import hashlib
import hmac
import json
import sys

BEACON_DOMAIN = b"dropgate/beacon/v2"
PSEUDONYM_DOMAIN = b"dropgate/pseudonym/v2"
DRAW_DOMAIN = b"dropgate/draw/v2"
PRE_QUEUE_DOMAIN = b"dropgate/pre-queue/v1"
RULE = "dropgate/draw/v2"
MASK_64 = (1 << 64) - 1
# Times written by different services (the draw, the admitter, PostgreSQL) may differ
# by this much; rules on tickets are exact.
CLOCK_TOLERANCE_MS = 1000


def message(domain, parts):
    """The domain tag's bytes, then each part as a 4-byte big-endian length and its
    UTF-8 bytes."""
    out = bytearray(domain)
    for part in parts:
        data = part.encode("utf-8")
        out += len(data).to_bytes(4, "big") + data
    return bytes(out)


def event_key(seed, beacon):
    """The key draws derive from: the seed, or the seed mixed with a beacon's value."""
    if beacon is None:
        return seed
    return hmac.new(seed, message(BEACON_DOMAIN, [beacon["round"], beacon["value"]]), hashlib.sha256).digest()


def pseudonym(seed, event_id, platform_id, user_id):
    """A user's name in the public log: what they recompute to find their own row."""
    mac = hmac.new(seed, message(PSEUDONYM_DOMAIN, [event_id, platform_id, user_id]), hashlib.sha256)
    return mac.digest()[:16].hex()


def draw_value(seed, event_id, pseudonym_hex):
    mac = hmac.new(seed, message(DRAW_DOMAIN, [event_id, pseudonym_hex]), hashlib.sha256)
    return int.from_bytes(mac.digest()[:8], "big")


def threshold(p):
    """floor(p * 2^64) computed in binary64, as the draw does (exact for 0 < p <= 1)."""
    return int(p * 18446744073709551616.0)


def decide(value, limit, stock_left):
    if stock_left == 0:
        return "sold_out", 0
    if value < limit:
        return "won", stock_left - 1
    return "lost", stock_left


# --- the randomized pre-queue: ChaCha20 (64-bit counter, stream 0) and Fisher-Yates ---


def _rotl(x, n):
    return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF


def _quarter(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF
    s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF
    s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF
    s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF
    s[b] = _rotl(s[b] ^ s[c], 7)


class ChaCha20Words:
    """The keystream of ChaCha20 with a 32-byte key, a 64-bit block counter from 0 and
    a 64-bit stream id of 0, as 32-bit little-endian words in order."""

    def __init__(self, key):
        self.key = [int.from_bytes(key[i : i + 4], "little") for i in range(0, 32, 4)]
        self.counter = 0
        self.words = []

    def _block(self):
        constants = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
        state = constants + self.key + [self.counter & 0xFFFFFFFF, self.counter >> 32, 0, 0]
        working = list(state)
        for _ in range(10):
            _quarter(working, 0, 4, 8, 12)
            _quarter(working, 1, 5, 9, 13)
            _quarter(working, 2, 6, 10, 14)
            _quarter(working, 3, 7, 11, 15)
            _quarter(working, 0, 5, 10, 15)
            _quarter(working, 1, 6, 11, 12)
            _quarter(working, 2, 7, 8, 13)
            _quarter(working, 3, 4, 9, 14)
        self.counter += 1
        return [(w + s) & 0xFFFFFFFF for w, s in zip(working, state)]

    def next_u32(self):
        if not self.words:
            self.words = self._block()
        return self.words.pop(0)

    def next_u64(self):
        low = self.next_u32()
        return low | (self.next_u32() << 32)


def uniform_below(rng, bound):
    """A uniform integer in [0, bound) without modulo bias (multiply and reject)."""
    reject_below = ((1 << 64) - bound) % bound
    while True:
        product = rng.next_u64() * bound
        if product & MASK_64 >= reject_below:
            return product >> 64


def pre_queue_key(seed, event_id):
    return hmac.new(seed, message(PRE_QUEUE_DOMAIN, [event_id]), hashlib.sha256).digest()


def shuffle_pre_queue(seed, event_id, items):
    rng = ChaCha20Words(pre_queue_key(seed, event_id))
    items = list(items)
    for i in range(len(items) - 1, 0, -1):
        j = uniform_below(rng, i + 1)
        items[i], items[j] = items[j], items[i]
    return items


# --- a whole drop ---


def verify_drop(data):
    """Every finding in a closed drop's public fairness data, as (kind, details)."""
    findings = []

    def found(kind, **details):
        findings.append(dict(kind=kind, **details))

    if data.get("rule") != RULE:
        raise ValueError(f"rule {data.get('rule')!r}: this verifier knows {RULE}")
    if "seed" not in data:
        raise ValueError("the seed is not public yet: the event is not closed")
    seed = bytes.fromhex(data["seed"])
    if hashlib.sha256(seed).hexdigest() != data["commitment"]:
        found("commitment_mismatch")
    beacon = data.get("beacon")
    replay = True
    if beacon is not None and beacon.get("value") is None:
        if data["decisions"]:
            found("beacon_missing", round=beacon.get("round"))
        replay = False  # no draw value can be recomputed without it
    else:
        seed = event_key(seed, beacon)
    event_id = data["event_id"]
    stock_total = data["stock_total"]
    limit = threshold(data["win_probability"])
    if str(limit) != data["threshold"]:
        found("threshold_mismatch", published=data["threshold"], expected=str(limit))

    decisions = sorted(data["decisions"], key=lambda d: d["decision_order"])
    stock_left = stock_total
    winners = 0
    seen_users = set()
    previous_order = None
    for decision in decisions:
        order = decision["decision_order"]
        user = decision["pseudonym"]
        if previous_order is not None and order == previous_order:
            found("out_of_order", order=order)
        previous_order = order
        if user in seen_users:
            found("duplicate_user", order=order)
            continue
        seen_users.add(user)
        if replay:
            value = draw_value(seed, event_id, user)
            if str(value) != str(decision["draw_value"]):
                found("wrong_draw_value", order=order)
            outcome, stock_left = decide(value, limit, stock_left)
            if outcome != decision["outcome"]:
                found("wrong_outcome", order=order, recorded=decision["outcome"], expected=outcome)
        if decision["outcome"] == "won":
            winners += 1
    if winners > stock_total:
        found("oversold", winners=winners)

    # Decided in ticket order; no ticket twice.
    by_ticket = sorted(decisions, key=lambda d: (d["ticket"], d["decision_order"]))
    latest = None
    previous_ticket = None
    for decision in by_ticket:
        if previous_ticket == decision["ticket"]:
            found("duplicate_ticket", ticket=decision["ticket"])
        if latest is not None and latest[0] > decision["decision_order"] and latest[1] < decision["ticket"]:
            found("decided_before_an_earlier_ticket", order=decision["decision_order"])
        if latest is None or decision["decision_order"] > latest[0]:
            latest = (decision["decision_order"], decision["ticket"])
        previous_ticket = decision["ticket"]

    orders = [d["decision_order"] for d in decisions]
    for expected, order in enumerate(sorted(orders), start=1):
        if expected != order:
            found("decision_order_gap", expected=expected, found=order)
            break
    if data["decisions_made"] != len(decisions):
        found("decision_count_mismatch", recorded=data["decisions_made"], draws=len(decisions))
    if stock_total - data["stock_left"] != winners or data["stock_left"] > stock_total:
        found("stock_mismatch", stock_left=data["stock_left"], winners=winners)
    revealed = data.get("seed_revealed_at_ms")
    if revealed is not None:
        for decision in decisions:
            if decision["decided_at_ms"] > revealed + CLOCK_TOLERANCE_MS:
                found("drawn_after_the_reveal", order=decision["decision_order"])

    undrawn = data.get("without_a_draw", [])
    tickets = {d["ticket"] for d in decisions}
    for told in undrawn:
        if told["pseudonym"] in seen_users:
            found("drawn_and_undrawn", ticket=told["ticket"])
        if told["ticket"] in tickets:
            found("duplicate_ticket", ticket=told["ticket"])
        tickets.add(told["ticket"])
    won_times = [d["decided_at_ms"] for d in decisions if d["outcome"] == "won"]
    if stock_total == 0:
        sold_out_at = 0
    elif winners >= stock_total:
        sold_out_at = won_times[stock_total - 1]
    else:
        sold_out_at = None
    highest_drawn = max((d["ticket"] for d in decisions), default=None)
    for told in undrawn:
        if told["state"] == "sold_out":
            true_from = sold_out_at
        elif told["state"] == "closed":
            if revealed is not None and told["decided_at_ms"] >= revealed:
                continue  # a late admission, recorded closed after the reveal
            true_from = data.get("closing_at_ms")
        else:
            continue
        if highest_drawn is not None and told["ticket"] < highest_drawn:
            found("swept_ahead_of_a_draw", ticket=told["ticket"])
        if true_from is None or told["decided_at_ms"] + CLOCK_TOLERANCE_MS < true_from:
            found("told_too_early", ticket=told["ticket"])
    return {
        "event_id": event_id,
        "passed": not findings,
        "decisions": len(decisions),
        "winners": winners,
        "findings": findings,
    }


# --- the published test vectors ---


def check_vectors(vectors):
    """Every problem with the vectors, in words (empty when all match)."""
    problems = []
    for item in vectors["commitments"]:
        if hashlib.sha256(bytes.fromhex(item["seed"])).hexdigest() != item["commitment"]:
            problems.append(f"commitment of {item['seed']}")
    for item in vectors["pseudonyms"]:
        parts = [item["event_id"], item["platform_id"], item["user_id"]]
        seed = bytes.fromhex(item["seed"])
        if message(PSEUDONYM_DOMAIN, parts).hex() != item["message"]:
            problems.append(f"pseudonym message of {parts}")
        if hmac.new(seed, bytes.fromhex(item["message"]), hashlib.sha256).hexdigest() != item["hmac"]:
            problems.append(f"pseudonym hmac of {parts}")
        if pseudonym(seed, *parts) != item["pseudonym"]:
            problems.append(f"pseudonym of {parts}")
    for item in vectors["draw_values"]:
        parts = [item["event_id"], item["pseudonym"]]
        seed = bytes.fromhex(item["seed"])
        if message(DRAW_DOMAIN, parts).hex() != item["message"]:
            problems.append(f"message of {parts}")
        if hmac.new(seed, bytes.fromhex(item["message"]), hashlib.sha256).hexdigest() != item["hmac"]:
            problems.append(f"hmac of {parts}")
        if str(draw_value(seed, *parts)) != item["draw_value"]:
            problems.append(f"draw value of {parts}")
    for item in vectors["beacon_keys"]:
        seed = bytes.fromhex(item["seed"])
        beacon = {"round": item["round"], "value": item["value"]}
        if message(BEACON_DOMAIN, [item["round"], item["value"]]).hex() != item["message"]:
            problems.append(f"beacon message of {item['round']}")
        key = event_key(seed, beacon)
        if key.hex() != item["key"]:
            problems.append(f"beacon key of {item['round']}")
        name = pseudonym(key, item["event_id"], item["platform_id"], item["user_id"])
        if name != item["pseudonym"] or str(draw_value(key, item["event_id"], name)) != item["draw_value"]:
            problems.append(f"draw under beacon {item['round']}")
    for item in vectors["thresholds"]:
        if str(threshold(item["p"])) != item["threshold"]:
            problems.append(f"threshold of p={item['p']}")
    drop = vectors["drop"]
    seed = bytes.fromhex(drop["seed"])
    limit = threshold(drop["win_probability"])
    stock = drop["stock"]
    for decision in drop["decisions"]:
        value = draw_value(seed, drop["event_id"], decision["pseudonym"])
        outcome, stock = decide(value, limit, stock)
        if (str(value), outcome, stock) != (decision["draw_value"], decision["outcome"], decision["stock_left"]):
            problems.append(f"drop decision {decision['decision_order']}")
    for item in vectors["shuffles"]:
        seed = bytes.fromhex(item["seed"])
        key = pre_queue_key(seed, item["event_id"])
        if key.hex() != item["key"]:
            problems.append(f"pre-queue key of {item['event_id']}")
        rng = ChaCha20Words(key)
        if [str(rng.next_u64()) for _ in item["first_u64s"]] != item["first_u64s"]:
            problems.append(f"ChaCha20 output of {item['event_id']}")
        if shuffle_pre_queue(seed, item["event_id"], range(item["n"])) != item["order"]:
            problems.append(f"shuffle of {item['event_id']}")
    return problems


def main(argv):
    if len(argv) != 3 or argv[1] not in ("drop", "vectors"):
        print(__doc__, file=sys.stderr)
        return 1
    try:
        with open(argv[2], encoding="utf-8") as handle:
            data = json.load(handle)
        if argv[1] == "vectors":
            problems = check_vectors(data)
            for problem in problems:
                print(f"mismatch: {problem}")
            print(f"{'FAIL' if problems else 'pass'}: test vectors")
            return 2 if problems else 0
        report = verify_drop(data)
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"cannot verify {argv[2]}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""A seeded byte mutator for the fuzz campaign and the live fuzzer (no hypothesis: millions of
inputs an hour need a loop that costs microseconds per input).

``Mutator(rng).mutate(seed)`` applies 1-6 random edits to a copy of ``seed``: bit flips, byte
sets to interesting values, deletions, insertions of random bytes or of protocol tokens,
duplicated slices, truncation, splicing with another seed, CR/LF games.  Everything comes from
the ``random.Random`` given, so a campaign with the same seed repeats exactly.
"""

from __future__ import annotations

import random

INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0A, 0x0D, 0x20, 0x22, 0x25, 0x27, 0x2C, 0x3A, 0x3B, 0x3C,
               0x3E, 0x40, 0x5C, 0xE9, 0xC3, 0xF0)
TOKENS = (b"\r\n", b"\n", b"\r\n\r\n", b"\n\n", b"\r\n ", b"\t", b",", b";", b":", b"=", b"\"", b"'", b"<", b">",
          b"\\", b"%", b"%00", b"&", b"?", b"/", b"*", b"@", b"..", b"\x00", b"\xff", b"\xc3\xa9", b"\xe9",
          b"-1", b"0", b"4294967296", b"99999999999999999999", b"Content-Length: ", b"NULL", b"'';",
          b"\x1b[", b"\xef\xbb\xbf", b" " * 64, b"A" * 300, b"{", b"}", b"[", b"]", b"\xf0\x9f\x98\x80")


class Mutator:
    def __init__(self, rng: random.Random, seeds: list[bytes] | None = None) -> None:
        self.rng = rng
        self.seeds = seeds or []

    def mutate(self, seed: bytes, *, max_edits: int = 6) -> bytes:
        rng = self.rng
        data = bytearray(seed)
        for _ in range(rng.randint(1, max_edits)):
            op = rng.randrange(11)
            n = len(data)
            i = rng.randint(0, n)
            if op == 0 and n:      # flip one bit
                j = rng.randrange(n)
                data[j] ^= 1 << rng.randrange(8)
            elif op == 1 and n:    # an interesting byte
                data[rng.randrange(n)] = rng.choice(INTERESTING)
            elif op == 2:          # delete a slice
                del data[i:i + rng.randint(1, 32)]
            elif op == 3:          # random bytes
                data[i:i] = rng.randbytes(rng.randint(1, 16))
            elif op == 4:          # a protocol token
                data[i:i] = rng.choice(TOKENS)
            elif op == 5 and n:    # duplicate a slice
                j = rng.randrange(n)
                data[i:i] = data[j:j + rng.randint(1, 80)]
            elif op == 6:          # truncate
                del data[i:]
            elif op == 7 and self.seeds:  # splice with another seed
                other = rng.choice(self.seeds)
                j = rng.randint(0, len(other))
                data[i:] = other[j:]
            elif op == 8 and n:    # a whole line removed or doubled
                start = data.rfind(b"\n", 0, i) + 1
                end = data.find(b"\n", i)
                end = n if end < 0 else end + 1
                if rng.random() < 0.5:
                    del data[start:end]
                else:
                    data[start:start] = data[start:end]
            elif op == 9 and n:    # a number made huge, negative or empty
                digits = [k for k in range(n) if 0x30 <= data[k] <= 0x39]
                if digits:
                    k = rng.choice(digits)
                    data[k:k + 1] = rng.choice((b"9999999999", b"-1", b"", b"0x10", b"1e9"))
            else:                  # CR/LF games
                data[i:i] = rng.choice((b"\r", b"\n", b"\r\n", b"\r\n\r\n"))
        return bytes(data)

import { randomFillSync } from 'node:crypto';

// Crockford base32: sorts the same as the numbers it encodes, so ids sort by time.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const TIME_CHARS = 10;
const RANDOM_CHARS = 16;

/**
 * Makes ULID-style ids (26 characters, time first): lexicographic order is creation order, and
 * ids made by one generator strictly increase even when the clock stalls or steps back.
 */
export function createIdGenerator(now: () => number = Date.now): () => string {
  let lastTime = -1;
  const random = new Uint8Array(RANDOM_CHARS);
  let timePart = '';

  return () => {
    const time = now();
    if (time > lastTime) {
      lastTime = time;
      timePart = encodeTime(time);
      const bytes = randomBytes();
      // Top bit left clear so increments within one millisecond cannot overflow in practice.
      for (let i = 0; i < RANDOM_CHARS; i++) random[i] = (bytes[i] as number) & (i === 0 ? 15 : 31);
    } else {
      increment(random);
    }
    let out = timePart;
    for (let i = 0; i < RANDOM_CHARS; i++) out += ALPHABET[random[i] as number];
    return out;
  };
}

// Random bytes drawn from a pool refilled 4 KiB at a time: one call to the CSPRNG per 256 ids, not
// one per id (the call's fixed cost was a tenth of a write-behind append's CPU time).
const pool = new Uint8Array(4096);
let used = pool.length;
function randomBytes(): Uint8Array {
  if (used === pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  used += RANDOM_CHARS;
  return pool.subarray(used - RANDOM_CHARS, used);
}

function increment(digits: Uint8Array): void {
  for (let i = digits.length - 1; i >= 0; i--) {
    const next = (digits[i] as number) + 1;
    if (next < 32) {
      digits[i] = next;
      return;
    }
    digits[i] = 0;
  }
  throw new RangeError('id space exhausted within one millisecond');
}

function encodeTime(time: number): string {
  let out = '';
  let rest = time;
  for (let i = 0; i < TIME_CHARS; i++) {
    out = ALPHABET[rest % 32] + out;
    rest = Math.floor(rest / 32);
  }
  return out;
}

/** The creation time in milliseconds that an id encodes. */
export function idTime(id: string): number {
  let time = 0;
  // As ALPHABET.indexOf(id.charAt(i)) gave: -1 for a character outside it, 0 past the end.
  for (let i = 0; i < TIME_CHARS; i++) time = time * 32 + (VALUE[id.charCodeAt(i)] ?? (i < id.length ? -1 : 0));
  return time;
}

/** ASCII code -> its value in the alphabet, or -1. */
const VALUE = Int8Array.from({ length: 128 }, (_, code) => ALPHABET.indexOf(String.fromCharCode(code)));

export const nextId = createIdGenerator();

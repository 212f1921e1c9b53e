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
  const bytes = new Uint8Array(RANDOM_CHARS);
  let timePart = '';

  return () => {
    const time = now();
    if (time > lastTime) {
      lastTime = time;
      timePart = encodeTime(time);
      randomFillSync(bytes);
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
  for (let i = 0; i < TIME_CHARS; i++) time = time * 32 + ALPHABET.indexOf(id.charAt(i));
  return time;
}

export const nextId = createIdGenerator();

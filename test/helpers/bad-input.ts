import type { TieredStore } from '../../src/index.js';

/** Limits the bad-input cases assume (content 1000 bytes, booking 200, meta 100). */
export const LIMITS = { contentBytes: 1000, bookingBytes: 200, metaBytes: 100 };

const cyclic: Record<string, unknown> = { a: 1 };
cyclic.self = cyclic;

export type Call = [string, () => Promise<unknown>, string];

/** Calls every tier must refuse with the given code, writing nothing. */
export function badCalls(store: TieredStore): Call[] {
  const u = 'valid_user';
  return [
    ['a fractional user id', () => store.addMemory(1.5, 'user', 'x'), 'INVALID_USER_ID'],
    ['an unsafe integer user id', () => store.addMemory(2 ** 60, 'user', 'x'), 'INVALID_USER_ID'],
    ['NaN as user id', () => store.addMemory(Number.NaN, 'user', 'x'), 'INVALID_USER_ID'],
    ['an empty user id', () => store.addMemory('', 'user', 'x'), 'INVALID_USER_ID'],
    ['a user id with a brace', () => store.addMemory('a{b}', 'user', 'x'), 'INVALID_USER_ID'],
    ['a user id of 129 characters', () => store.setUserPhone('a'.repeat(129), '+79991234567'), 'INVALID_USER_ID'],
    ['a user id that is an object', () => store.getHistory({} as never), 'INVALID_USER_ID'],
    ['an unknown role', () => store.addMemory(u, 'admin' as never, 'x'), 'INVALID_ROLE'],
    ['content that is not a string', () => store.addMemory(u, 'user', 42 as never), 'INVALID_CONTENT'],
    ['content with NUL', () => store.addMemory(u, 'user', 'a\u0000b'), 'INVALID_CONTENT'],
    ['content with a lone surrogate', () => store.addMemory(u, 'user', 'a\ud800b'), 'INVALID_CONTENT'],
    ['content over the limit', () => store.addMemory(u, 'user', 'é'.repeat(501)), 'CONTENT_TOO_LARGE'],
    ['meta that is an array', () => store.addMemory(u, 'user', 'x', { meta: [] as never }), 'INVALID_META'],
    ['meta over its limit', () => store.addMemory(u, 'user', 'x', { meta: { k: 'v'.repeat(200) } }), 'INVALID_META'],
    ['a phone with letters', () => store.setUserPhone(u, '+7999abc4567'), 'INVALID_PHONE'],
    ['a phone of 7 digits', () => store.setUserPhone(u, '1234567'), 'INVALID_PHONE'],
    ['a phone of 16 digits', () => store.setUserPhone(u, '1234567890123456'), 'INVALID_PHONE'],
    ['a phone that is a number', () => store.setUserPhone(u, 79991234567 as never), 'INVALID_PHONE'],
    ['booking that is a string', () => store.setBookingData(u, 'haircut' as never), 'INVALID_BOOKING'],
    ['booking that is an array', () => store.setBookingData(u, ['haircut'] as never), 'INVALID_BOOKING'],
    ['booking with a function', () => store.setBookingData(u, { f: () => 1 } as never), 'INVALID_BOOKING'],
    ['booking with a BigInt', () => store.setBookingData(u, { n: 1n } as never), 'INVALID_BOOKING'],
    ['booking with Infinity', () => store.setBookingData(u, { n: Number.POSITIVE_INFINITY }), 'INVALID_BOOKING'],
    ['booking with a Date', () => store.setBookingData(u, { at: new Date() } as never), 'INVALID_BOOKING'],
    ['booking that refers to itself', () => store.setBookingData(u, cyclic as never), 'INVALID_BOOKING'],
    ['booking with NUL in a string', () => store.setBookingData(u, { s: '\u0000' }), 'INVALID_BOOKING'],
    ['booking over the limit', () => store.setBookingData(u, { s: 'x'.repeat(300) }), 'INVALID_BOOKING'],
    ['a negative history limit', () => store.getHistory(u, { limit: -1 }), 'INVALID_OPTION'],
    ['a fractional history limit', () => store.getHistory(u, { limit: 2.5 }), 'INVALID_OPTION'],
  ];
}

/** The error a call rejected with (undefined when it resolved). */
export function rejection(call: () => Promise<unknown>): Promise<unknown> {
  return call().then(
    () => undefined,
    (e: unknown) => e,
  );
}

import { afterAll, describe, expect, it } from 'vitest';
import type { TieredStore } from '../src/index.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { makeStore } from './helpers/stores.js';

// Issue item 4: refills of Redis racing every kind of write from another store instance. Store B
// writes one user (append, clear, delete, phone, booking, subscribe/unsubscribe), one write at a
// time; store A reads that user in tight loops. A read that starts after a write was acknowledged
// must reflect it (there is no in-process cache): its answer must be the state after some write
// between the last one acknowledged when it started and the last one started when it returned.
const ROUNDS = Number(process.env.RACE_ROUNDS ?? 500); // per write mode: 1,000 in all
const HISTORY_LIMIT = 5;
const USER = 'racer';
const used: { keyPrefix: string; schema: string }[] = [];
afterAll(async () => {
  for (const names of used) {
    await cleanupRedis(redisUrl(), names.keyPrefix).catch(() => {});
    await cleanupPostgres(databaseUrl(), names.schema);
  }
});

interface State {
  history: string[];
  phone: string | null;
  booking: string | null;
  subscribed: boolean;
}

type Write = { kind: string; apply: (s: State) => State; run: (b: TieredStore) => Promise<unknown> };

function nextWrite(round: number, random: number): Write {
  if (random < 0.3) {
    const text = `m${round}`;
    return { kind: `addMemory ${text}`, apply: (s) => ({ ...s, history: [...s.history, text] }), run: (b) => b.addMemory(USER, 'user', text) };
  }
  if (random < 0.4) return { kind: 'clearHistory', apply: (s) => ({ ...s, history: [] }), run: (b) => b.clearHistory(USER) };
  if (random < 0.5) {
    return { kind: 'deleteUser', apply: () => ({ history: [], phone: null, booking: null, subscribed: false }), run: (b) => b.deleteUser(USER) };
  }
  if (random < 0.65) {
    const phone = random < 0.63 ? `+7999${String(round).padStart(7, '0')}` : null;
    return { kind: `setUserPhone ${phone}`, apply: (s) => ({ ...s, phone }), run: (b) => b.setUserPhone(USER, phone) };
  }
  if (random < 0.8) {
    const booking = random < 0.78 ? { round } : null;
    const json = booking && JSON.stringify(booking);
    return { kind: `setBookingData ${json}`, apply: (s) => ({ ...s, booking: json }), run: (b) => b.setBookingData(USER, booking) };
  }
  const subscribed = random < 0.9;
  return {
    kind: subscribed ? 'addEmailSubscriber' : 'removeEmailSubscriber',
    apply: (s) => ({ ...s, subscribed }),
    run: (b) => (subscribed ? b.addEmailSubscriber(USER) : b.removeEmailSubscriber(USER)),
  };
}

const READS: { name: string; read: (a: TieredStore) => Promise<unknown>; of: (s: State) => unknown }[] = [
  { name: 'getHistory', read: async (a) => (await a.getHistory(USER)).map((m) => m.content), of: (s) => s.history.slice(-HISTORY_LIMIT) },
  { name: 'getUserPhone', read: (a) => a.getUserPhone(USER), of: (s) => s.phone },
  {
    name: 'getBookingData',
    read: async (a) => JSON.stringify(await a.getBookingData(USER)),
    of: (s) => JSON.stringify(s.booking === null ? null : JSON.parse(s.booking)),
  },
  { name: 'isEmailSubscriber', read: (a) => a.isEmailSubscriber(USER), of: (s) => s.subscribed },
  { name: 'getEmailSubscribers', read: async (a) => (await a.getEmailSubscribers()).includes(USER), of: (s) => s.subscribed },
];

describe.each(['write-through', 'write-behind'] as const)('fills racing writes, %s', (writeMode) => {
  it(`${ROUNDS} writes of every kind from B; every read by A that starts after a write was acknowledged reflects it`, async () => {
    const names = isolation(`race_${writeMode}`);
    used.push(names);
    const options = {
      historyLimit: HISTORY_LIMIT,
      ttlSeconds: {
        history: Number(process.env.RACE_TTL ?? 3600),
        userData: Number(process.env.RACE_TTL ?? 3600),
        subscribers: Number(process.env.RACE_TTL ?? 3600),
      },
    };
    const a = makeStore(writeMode, names, options);
    const b = makeStore(writeMode, names, options);
    // Write-behind: B also syncs in the background, so reads race passes moving the journal too.
    if (writeMode === 'write-behind') b.startSync(20);
    const states: State[] = [{ history: [], phone: null, booking: null, subscribed: false }];
    const log: string[] = [];
    const stale: string[] = [];
    let started = 0;
    let acked = 0;
    let running = true;
    let reads = 0;
    /** Reads that started after the last acknowledged write, and returned. */
    let checkedSinceAck = 0;
    const began = performance.now();

    const writer = async () => {
      for (let round = 1; round <= ROUNDS; round++) {
        const write = nextWrite(round, Math.random());
        states[round] = write.apply(states[round - 1] as State);
        log[round] = write.kind;
        started = round;
        await write.run(b);
        acked = round;
        checkedSinceAck = 0;
        // Half the time the next write races the reads at once; else A gets two reads in first.
        if (Math.random() < 0.5) while (checkedSinceAck < 2) await new Promise((resolve) => setImmediate(resolve));
      }
      running = false;
    };
    const reader = async (r: number) => {
      for (let i = r; running; i++) {
        const { name, read, of } = READS[i % READS.length]!;
        const lo = acked;
        const got = await read(a);
        const hi = started;
        reads++;
        if (lo === acked) checkedSinceAck++;
        let ok = false;
        for (let v = lo; v <= hi && !ok; v++) ok = JSON.stringify(of(states[v] as State)) === JSON.stringify(got);
        if (!ok && stale.length < 5) {
          stale.push(
            `${name} started after write ${lo} was acknowledged and returned ${JSON.stringify(got)} ` +
              `(expected ${JSON.stringify(of(states[lo] as State))}${hi > lo ? ` or a later state up to write ${hi}` : ''}); ` +
              `writes ${Math.max(1, lo - 7)}-${hi}: ${log.slice(Math.max(1, lo - 7), hi + 1).join(' | ')}`,
          );
        }
      }
    };
    try {
      await Promise.all([writer(), reader(0), reader(2)]);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
    console.info(`fills racing writes (${writeMode}): ${ROUNDS} writes, ${reads} reads in ${Math.round(performance.now() - began)} ms, ${stale.length} stale`);
    expect(reads).toBeGreaterThan(ROUNDS);
    expect(stale).toEqual([]);
  }, 60_000);
});

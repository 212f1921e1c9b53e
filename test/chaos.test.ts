import { afterAll, describe, expect, it } from 'vitest';
import { MARGIN_MS, OutageRig, PG_TIMEOUT_MS } from './helpers/outage.js';

// 20+ concurrent writers while Redis and PostgreSQL are cut, refused, hung and restored at random.
const SECONDS = Number(process.env.CHAOS_SECONDS ?? 20);
const SEED = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
const WRITERS = 24;

/** mulberry32: a small seeded PRNG, so a failing run can be replayed with CHAOS_SEED. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let rig: OutageRig | undefined;
afterAll(() => rig?.close());

describe.each([
  ['write-through', SECONDS],
  ['write-behind', Math.ceil(SECONDS / 2)],
] as const)('chaos, %s', (writeMode, seconds) => {
  it(
    `${WRITERS} writers for ${seconds} s through random outages: acknowledged == stored, no duplicates`,
    async () => {
      const rand = random(SEED);
      console.info(`chaos seed ${SEED} (replay with CHAOS_SEED=${SEED})`);
      await rig?.close();
      rig = await OutageRig.start({ writeMode, historyLimit: 20, journalLimit: 1_000_000 });
      const r = rig;
      const deadline = Date.now() + seconds * 1000;
      const faults: string[] = [];

      const writer = async (w: number) => {
        for (let i = 0; Date.now() < deadline; i++) {
          const user = `u${Math.floor(rand() * 8)}`;
          await r.write(user, `w${w}-${i}`);
          if (i % 10 === 0) await r.timed(() => r.store.getHistory(user));
          await new Promise((resolve) => setTimeout(resolve, rand() * 20));
        }
      };
      const chaos = async () => {
        while (Date.now() < deadline - 1000) {
          const proxy = rand() < 0.5 ? r.redis : r.pg;
          const action = (['refuse', 'cut', 'hang', 'pass', 'pass'] as const)[Math.floor(rand() * 5)]!;
          faults.push(`${proxy === r.redis ? 'redis' : 'postgres'}:${action}`);
          await proxy[action]();
          await new Promise((resolve) => setTimeout(resolve, 200 + rand() * 1300));
        }
        await Promise.all([r.redis.pass(), r.pg.pass()]);
      };
      await Promise.all([chaos(), ...Array.from({ length: WRITERS }, (_, w) => writer(w))]);
      await r.recovered(30_000);

      const refused = r.calls.filter((c) => c.error !== undefined);
      const { acked, stored, duplicates } = await r.verify(20);
      const slowest = Math.round(r.slowest());
      console.info(
        `chaos figures (${writeMode}): seed=${SEED} faults=${faults.length} calls=${r.calls.length} acknowledged=${acked} stored=${stored} ` +
          `lost=${acked - stored} duplicated=${duplicates} refused=${refused.length} slowest call=${slowest} ms`,
      );
      expect(refused).toEqual([]);
      expect(stored).toBe(acked);
      expect(duplicates).toBe(0);
      expect(acked).toBeGreaterThan(WRITERS * 10);
      expect(slowest).toBeLessThan(PG_TIMEOUT_MS + MARGIN_MS);
    },
    (seconds + 60) * 1000,
  );
});

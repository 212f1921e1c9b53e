import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { FaultProxy } from './helpers/fault-proxy.js';
import { L1Process, killL1Processes, type L1ProcessConfig } from './helpers/l1-process.js';
import { PrivateRedis } from './helpers/private-redis.js';
import { describeIfAble, missingRedisServer } from './helpers/run-registry.js';
import { cleanupPostgres, databaseUrl, isolation } from './helpers/services.js';

// Issue 15: the in-process tier across real processes (each a child with its own store), on a
// private redis-server so it can be killed and its connections cut without touching other files.
// Every process reads before each write (so its L1 holds a serving copy) and after it: a write
// acknowledged anywhere is in every process's next read.

const names = isolation('l1_processes');
let redis: PrivateRedis;
let direct: Redis;
const proxies: FaultProxy[] = [];

afterEach(async () => {
  await killL1Processes();
  for (const proxy of proxies.splice(0)) await proxy.close();
});

const contents = (history: string[]) => history.map((item) => item.slice(item.indexOf(':') + 1));

describeIfAble('L1 across processes', missingRedisServer(), () => {
  beforeAll(async () => {
    redis = await PrivateRedis.start();
    direct = new Redis(redis.url);
  });
  afterAll(async () => {
    direct?.disconnect();
    await redis?.stop();
    await cleanupPostgres(databaseUrl(), names.schema);
  });

  let users = 0;
  const newUser = () => `l1u${++users}`;

  async function start(
    count: number,
    options: { proxied?: boolean; l1?: 'on' | 'off'; writeMode?: 'write-through' | 'write-behind' } = {},
  ): Promise<{ procs: L1Process[]; proxies: FaultProxy[] }> {
    const mine: FaultProxy[] = [];
    const configs: L1ProcessConfig[] = [];
    for (let i = 0; i < count; i++) {
      let url = redis.url;
      if (options.proxied) {
        const proxy = await FaultProxy.start(redis.url);
        proxies.push(proxy);
        mine.push(proxy);
        url = proxy.url(redis.url);
      }
      configs.push({
        redisUrl: url,
        databaseUrl: databaseUrl(),
        keyPrefix: names.keyPrefix,
        schema: names.schema,
        l1: options.l1 ?? 'on',
        writeMode: options.writeMode ?? 'write-through',
      });
    }
    const procs = await Promise.all(configs.map((config, i) => L1Process.start(String.fromCharCode(97 + i), config)));
    return { procs, proxies: mine };
  }

  /** Each process reads twice (the second from its L1 when it holds a copy) and must see exactly `expected`. */
  async function allSee(procs: L1Process[], user: string, expected: string[], what: string): Promise<void> {
    for (const p of procs) {
      for (let i = 0; i < 2; i++) expect(contents(await p.read(user)), `${p.name} ${what} (read ${i + 1})`).toEqual(expected);
    }
  }

  async function l1Hits(procs: L1Process[]): Promise<number[]> {
    return Promise.all(procs.map(async (p) => (await p.stats()).l1.hits));
  }

  it.each(['write-through', 'write-behind'] as const)(
    'two processes, %s: every kind of write in one is in the other next read, and each reads its own writes',
    async (writeMode) => {
      const { procs } = await start(2, { writeMode });
      const [a, b] = procs as [L1Process, L1Process];
      const user = newUser();
      const held: { id: string; text: string }[] = [];
      const expected = () => held.map((m) => m.text);
      await allSee(procs, user, [], 'empty');
      for (let i = 0; i < 12; i++) {
        const writer = i % 2 === 0 ? a : b;
        const text = `m${i}`;
        held.push({ id: await writer.add(user, text), text });
        await allSee(procs, user, expected(), `after add ${text} by ${writer.name}`);
      }
      // Edits, a delete, a truncation, a streamed draft and a clear, each by the process that did not write last.
      await b.call('edit', { user, id: held[1]!.id, text: 'm1-edited' });
      held[1]!.text = 'm1-edited';
      await allSee(procs, user, expected(), 'after an edit');
      await a.call('delete', { user, id: held[2]!.id });
      held.splice(2, 1);
      await allSee(procs, user, expected(), 'after a delete');
      await b.call('truncate', { user, id: held[8]!.id });
      held.splice(9);
      await allSee(procs, user, expected(), 'after a truncation');
      held.push({ id: await a.call<string>('draft', { user, text: 'streamed' }), text: 'streamed' });
      await allSee(procs, user, expected(), 'after a draft');
      await b.call('clear', { user });
      held.splice(0);
      await allSee(procs, user, [], 'after a clear');
      held.push({ id: await a.add(user, 'after-clear'), text: 'after-clear' });
      await allSee(procs, user, expected(), 'after a write after the clear');

      // Phone (and booking) too: held in L1, changed in one process, read in the other.
      for (const [writer, phone] of [
        [a, '+15550000001'],
        [b, '+15550000002'],
        [a, null],
      ] as const) {
        for (const p of procs) for (let i = 0; i < 2; i++) await p.call('getPhone', { user });
        await writer.call('phone', phone === null ? { user } : { user, text: phone });
        for (const p of procs) for (let i = 0; i < 2; i++) expect(await p.call('getPhone', { user }), `${p.name} phone after ${writer.name}`).toBe(phone);
      }

      const [sa, sb] = await Promise.all([a.stats(), b.stats()]);
      // L1 really served (so the checks above were of it), and the other process's writes invalidated it.
      for (const s of [sa, sb]) {
        expect(s.l1.enabled).toBe(true);
        expect(s.l1.hits).toBeGreaterThan(10);
        expect(s.l1.invalidations).toBeGreaterThan(3);
      }
    },
    120_000,
  );

  it('three processes writing the same users at once converge, and a write acknowledged before a read began is in it', async () => {
    const { procs } = await start(3);
    const user = newUser();
    const acked: string[] = [];
    await Promise.all(
      procs.map(async (p, w) => {
        for (let i = 0; i < 15; i++) {
          const text = `${p.name}${i}`;
          const before = [...acked];
          await p.add(user, text);
          acked.push(text);
          // Everything acknowledged anywhere before this read began is in it, in every process.
          for (const reader of [procs[(w + 1) % 3]!, procs[(w + 2) % 3]!]) {
            const started = [...acked];
            const seen = contents(await reader.read(user));
            expect(seen, `${reader.name} after ${text}`).toEqual(expect.arrayContaining(started));
            expect(seen).toEqual(expect.arrayContaining(before));
          }
        }
      }),
    );
    const final = contents(await procs[0]!.read(user));
    expect([...final].sort()).toEqual([...acked].sort());
    await allSee(procs, user, final, 'at the end');
    expect(Math.min(...(await l1Hits(procs)))).toBeGreaterThan(0);
  }, 120_000);

  it('Redis unreachable for one process, then for all (the fault proxy): reads are complete after recovery everywhere', async () => {
    const { procs, proxies: cut } = await start(3, { proxied: true });
    const [a, b, c] = procs as [L1Process, L1Process, L1Process];
    const user = newUser();
    const acked: string[] = [];
    const write = async (p: L1Process, text: string) => {
      await p.add(user, text);
      acked.push(text);
    };
    for (let i = 0; i < 6; i++) await write(procs[i % 3]!, `before${i}`);
    await allSee(procs, user, acked, 'before the outage');

    // Only a's Redis: its writes reach PostgreSQL alone; b and c keep their Redis and their L1.
    await cut[0]!.refuse();
    for (let i = 0; i < 4; i++) await write(a, `a-alone${i}`);
    expect((await a.health()).redis).toBe('down');
    expect(contents(await a.read(user))).toEqual(acked); // its own writes, from PostgreSQL
    await write(b, 'b-during');
    expect(contents(await b.read(user))).toEqual(expect.arrayContaining(['b-during']));
    await cut[0]!.pass();
    await expect.poll(async () => (await a.health()).redis, { timeout: 15_000, interval: 100 }).toBe('up');
    await allSee(procs, user, acked, 'after a came back');

    // Every process's Redis at once.
    for (const proxy of cut) await proxy.refuse();
    for (let i = 0; i < 6; i++) await write(procs[i % 3]!, `all-down${i}`);
    for (const p of procs) expect(contents(await p.read(user)), `${p.name} during`).toEqual(acked);
    for (const proxy of cut) await proxy.pass();
    for (const p of procs) await expect.poll(async () => (await p.health()).redis, { timeout: 15_000, interval: 100 }).toBe('up');
    await allSee(procs, user, acked, 'after all came back');
    await write(c, 'after');
    await allSee(procs, user, acked, 'after a write after recovery');
    // L1 serves again once the feed is back (both its connections reconnect through the proxy, with backoff).
    await expect
      .poll(
        async () => {
          const hits = await l1Hits(procs);
          await allSee(procs, user, acked, 'once more');
          return (await l1Hits(procs)).every((h, i) => h > hits[i]!);
        },
        { timeout: 15_000, interval: 200 },
      )
      .toBe(true);
  }, 120_000);

  it('a silent partition of one process from Redis (the proxy hangs): its L1 stops serving within a second or so, its reads come from PostgreSQL', async () => {
    const { procs, proxies: paths } = await start(2, { proxied: true });
    const [a, b] = procs as [L1Process, L1Process];
    const user = newUser();
    const acked: string[] = [];
    for (let i = 0; i < 4; i++) {
      await procs[i % 2]!.add(user, `before${i}`);
      acked.push(`before${i}`);
    }
    await allSee(procs, user, acked, 'before the hang');
    // a's copy serves (its last read was an L1 hit), so only its feed could tell it of b's write.
    await expect
      .poll(
        async () => {
          const hits = (await a.stats()).l1.hits;
          await a.read(user);
          return (await a.stats()).l1.hits > hits;
        },
        { timeout: 10_000 },
      )
      .toBe(true);
    console.log('A stats before', JSON.stringify((await a.stats()).l1));
    await paths[0]!.hang();
    await b.add(user, 'during');

    acked.push('during');
    // a hears nothing from Redis: without a word on its feed its copies stop serving, and its
    // next reads find Redis hung (one deadline), then read PostgreSQL.
    const started = Date.now();
    await expect.poll(async () => contents(await a.read(user)), { timeout: 10_000, interval: 50 }).toEqual(acked);
    const stale = Date.now() - started;
    console.log('A stats', JSON.stringify((await a.stats()).l1), JSON.stringify((await a.stats()).tiers.redis));
    await paths[0]!.pass();
    await expect.poll(async () => (await a.health()).redis, { timeout: 15_000, interval: 100 }).toBe('up');
    await a.add(user, 'after');
    acked.push('after');
    await allSee(procs, user, acked, 'after the hang');
    console.info(`L1 under a silent partition: stale reads for at most ${stale} ms`);
  }, 120_000);

  it('redis-server killed and restarted empty: every process drops its L1 and converges on what PostgreSQL has', async () => {
    const { procs } = await start(2);
    const [a, b] = procs as [L1Process, L1Process];
    const user = newUser();
    const acked: string[] = [];
    for (let i = 0; i < 6; i++) {
      await procs[i % 2]!.add(user, `before${i}`);
      acked.push(`before${i}`);
    }
    await allSee(procs, user, acked, 'before the restart');
    await redis.kill();
    for (let i = 0; i < 3; i++) {
      await a.add(user, `down${i}`).then(
        () => acked.push(`down${i}`),
        () => {},
      );
    }
    await redis.start();
    for (const p of procs) await expect.poll(async () => (await p.health()).redis, { timeout: 15_000, interval: 100 }).toBe('up');
    await allSee(procs, user, acked, 'after the restart');
    // The feed is back: a write in one process is in the other's next read, and L1 serves again.
    await b.add(user, 'after');
    acked.push('after');
    await allSee(procs, user, acked, 'after a write after the restart');
    const hits = await l1Hits(procs);
    await allSee(procs, user, acked, 'once more');
    expect((await l1Hits(procs)).every((h, i) => h > hits[i]!)).toBe(true);
  }, 120_000);

  it("the feed's connections killed (its subscriber, then its tracked reader) while the command connection stays: no stale read, and L1 serves again", async () => {
    const { procs } = await start(3);
    const user = newUser();
    const acked: string[] = [];
    const connections = async (name: string) =>
      ((await direct.client('LIST')) as string)
        .split('\n')
        .filter((line) => line.includes(`name=tiered-conversation-store:${name} `))
        .map((line) => /id=(\d+)/.exec(line)![1]!);
    const allBack = () => expect.poll(async () => (await connections('l1')).length + (await connections('l1-reads')).length, { timeout: 15_000 }).toBe(6);
    for (let round = 0; round < 8; round++) {
      // Every feed back, and every process holding a serving copy.
      await allBack();
      await allSee(procs, user, acked, `round ${round} before`);
      for (const id of await connections(round % 2 === 0 ? 'l1' : 'l1-reads')) await direct.client('KILL', 'ID', id);
      // At once, before the feeds are back: a write by one process, then every process reads.
      const writer = procs[round % 3]!;
      await writer.add(user, `r${round}`);
      acked.push(`r${round}`);
      await allSee(procs, user, acked, `round ${round} after a feed connection was cut`);
    }
    await allBack();
    const hits = await l1Hits(procs);
    await allSee(procs, user, acked, 'after the feeds are back');
    expect((await l1Hits(procs)).every((h, i) => h > hits[i]!)).toBe(true);
  }, 120_000);
});

import type { TieredStore } from '../src/index.js';
import type { Plan } from './config.js';
import type { Raw } from './raw.js';
import type { Report } from './report.js';
import type { Services } from './services.js';

/** What every section gets. */
export interface Ctx {
  svc: Services;
  plan: Plan;
  report: Report;
  raw: Raw;
  progress(message: string): void;
}

export function userIds(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${i}`);
}

/** Reads each user's history once, so the store installs its hot copy in Redis. */
export async function warm(store: TieredStore, users: readonly string[], limit?: number): Promise<void> {
  for (let i = 0; i < users.length; i += 50) {
    await Promise.all(users.slice(i, i + 50).map((user) => store.getHistory(user, limit === undefined ? {} : { limit })));
  }
  await new Promise((resolve) => setTimeout(resolve, 50)); // fills are not awaited by getHistory
}

/** Length of a store's hot list in Redis (the layout `<prefix>:{<user>}:h` is the store's own). */
export async function hotLength(ctx: Ctx, store: string, user: string): Promise<number> {
  return ctx.svc.redis.llen(`${ctx.svc.run}:${store}:{${user}}:h`);
}

/** Fails loudly when a store's hot copies are not where a comparison assumes they are. */
export async function expectHot(ctx: Ctx, store: string, users: readonly string[], length: number): Promise<void> {
  for (const user of users.slice(0, 3)) {
    const found = await hotLength(ctx, store, user);
    if (found !== length) throw new Error(`store ${store}: hot list of ${user} holds ${found} messages, expected ${length}`);
  }
}

import { ErrorCode, UnavailableError } from '../errors.js';
import type { Op } from '../model/ops.js';
import { opBytes } from '../model/sizes.js';

/**
 * Writes this process acknowledged that the durable tier does not have yet, oldest first.
 * Bounded: past its limits `push` refuses (nothing is ever evicted); entries leave only once
 * the durable tier has them.
 */
export class Journal {
  readonly #ops = new Map<string, Op>();
  readonly #byUser = new Map<string, Set<string>>();
  #bytes = 0;

  constructor(
    readonly maxOps: number,
    readonly maxBytes: number,
  ) {}

  get size(): number {
    return this.#ops.size;
  }

  /** Holds `op`; throws `STORE_FULL` past the bound. */
  push(op: Op): void {
    if (!this.tryPush(op)) throw this.#full();
  }

  /** Throws `STORE_FULL` if `op` would not fit. */
  assertRoom(op: Op): void {
    if (!this.#ops.has(op.id) && !this.#fits(op)) throw this.#full();
  }

  #fits(op: Op): boolean {
    return this.#ops.size < this.maxOps && this.#bytes + opBytes(op) <= this.maxBytes;
  }

  #full(): UnavailableError {
    return new UnavailableError(
      ErrorCode.STORE_FULL,
      `the pending journal is full (${this.#ops.size} writes; limit ${this.maxOps}) while PostgreSQL is unreachable: write refused`,
    );
  }

  /** Holds `op` if there is room; false when full. */
  tryPush(op: Op): boolean {
    if (this.#ops.has(op.id)) return true;
    if (!this.#fits(op)) return false;
    this.#ops.set(op.id, op);
    this.#bytes += opBytes(op);
    const ids = this.#byUser.get(op.user) ?? new Set<string>();
    this.#byUser.set(op.user, ids);
    ids.add(op.id);
    return true;
  }

  /** The oldest `count` ops, left in place. */
  peek(count: number): Op[] {
    const out: Op[] = [];
    for (const op of this.#ops.values()) {
      if (out.length >= count) break;
      out.push(op);
    }
    return out;
  }

  /** The id of the oldest op held (it encodes when it was written). */
  oldestId(): string | undefined {
    return this.#ops.keys().next().value;
  }

  forUser(user: string): Op[] {
    const ids = this.#byUser.get(user);
    return ids ? [...ids].map((id) => this.#ops.get(id) as Op) : [];
  }

  users(): string[] {
    return [...this.#byUser.keys()];
  }

  remove(ops: readonly Op[]): void {
    for (const op of ops) {
      if (!this.#ops.delete(op.id)) continue;
      this.#bytes -= opBytes(op);
      const ids = this.#byUser.get(op.user);
      ids?.delete(op.id);
      if (ids?.size === 0) this.#byUser.delete(op.user);
    }
  }

  dropUser(user: string): void {
    this.remove(this.forUser(user));
  }
}

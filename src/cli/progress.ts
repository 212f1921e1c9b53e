import { count, type Stream } from './output.js';

/** Below this many pending writes a pass is quick: no progress is shown. */
const LARGE_JOURNAL = 1000;
const BAR_WIDTH = 30;
const LINE_EVERY_MS = 1000;

/**
 * Progress of a sync pass from polls of the journal's size: a bar redrawn in place on a terminal,
 * a plain line at most once a second otherwise (logs, CI). Silent for small journals.
 */
export class Progress {
  readonly #stream: Stream;
  readonly #active: boolean;
  #total: number;
  #moved = 0;
  #printedAt = 0;
  #printed = -1;

  constructor(stream: Stream, pending: number) {
    this.#stream = stream;
    this.#total = pending;
    this.#active = pending >= LARGE_JOURNAL;
    this.#draw();
  }

  /** The journal now holds `pending` writes (new writes may arrive while the pass runs). */
  update(pending: number): void {
    this.#moved = Math.max(this.#moved, this.#total - pending);
    this.#total = Math.max(this.#total, this.#moved + pending);
    this.#draw();
  }

  /** The pass ended having moved `moved` writes and left `pending`. */
  finish(moved: number, pending: number): void {
    if (!this.#active) return;
    this.#moved = moved;
    this.#total = Math.max(moved + pending, 1);
    if (this.#stream.isTTY) this.#stream.write(`${this.#bar()}\n`);
  }

  #draw(): void {
    if (!this.#active) return;
    if (this.#stream.isTTY) {
      this.#stream.write(this.#bar());
      return;
    }
    const now = Date.now();
    if (this.#moved === this.#printed || now - this.#printedAt < LINE_EVERY_MS) return;
    this.#printed = this.#moved;
    this.#printedAt = now;
    this.#stream.write(`progress: ${count(this.#moved)} of ${count(this.#total)} writes moved (${this.#percent()}%)\n`);
  }

  #bar(): string {
    const done = Math.round((this.#percent() / 100) * BAR_WIDTH);
    // \r and erase-line: the bar is redrawn in place.
    return `\r\x1b[2K[${'#'.repeat(done)}${'-'.repeat(BAR_WIDTH - done)}] ${String(this.#percent()).padStart(3)}%  ${count(this.#moved)} of ${count(this.#total)} writes moved`;
  }

  #percent(): number {
    return this.#total === 0 ? 100 : Math.floor((this.#moved / this.#total) * 100);
  }
}

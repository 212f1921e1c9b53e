import type { SummarizeInput } from '../../src/index.js';

/**
 * A deterministic stand-in for an LLM: the previous summary followed by the contents it is given,
 * '|'-separated. So a summary's text says exactly which messages it covers, in order.
 */
export function standIn(input: SummarizeInput): string {
  return [input.summary ?? '', ...input.messages.map((m) => m.content)].filter((part) => part !== '').join('|');
}

/** A summarize hook counting its calls, running at most `concurrent` at once, released by hand. */
export class GatedHook {
  calls = 0;
  active = 0;
  maxActive = 0;
  readonly inputs: SummarizeInput[] = [];
  #gate: { promise: Promise<void>; open: () => void } | undefined;

  close(): void {
    let open = () => {};
    const promise = new Promise<void>((resolve) => (open = resolve));
    this.#gate = { promise, open };
  }

  open(): void {
    this.#gate?.open();
    this.#gate = undefined;
  }

  readonly hook = async (input: SummarizeInput): Promise<string> => {
    this.calls++;
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    this.inputs.push(input);
    try {
      await this.#gate?.promise;
      return standIn(input);
    } finally {
      this.active--;
    }
  };
}

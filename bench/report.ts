import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { LatencyResult, ThroughputResult } from './harness.js';
import type { Machine } from './machine.js';
import { round, type Summary } from './stats.js';

/** One side of a comparison: latency (sequential calls), throughput, or a plain figure. */
export interface Side {
  label: string;
  summary?: Summary;
  opsPerSec?: number;
  /** Shown instead of the figures when set (sizes, counts). */
  text?: string;
  /** Per-round medians (µs) or rates (ops/s): how much the load drifted. */
  rounds?: number[];
}

export interface Target {
  op: '<=' | '>=';
  value: number;
}

export interface Row {
  section: string;
  operation: string;
  ours: Side;
  baseline?: Side;
  /** ours / baseline: of median latencies, of throughputs, or as stated in `note`. */
  ratio?: number;
  /** Lowest and highest ratio of single rounds: how far load drift moved it during the run. */
  ratioRange?: [number, number];
  target?: Target;
  pass?: boolean;
  note?: string;
}

export class Report {
  readonly rows: Row[] = [];
  readonly extra: Record<string, unknown> = {};

  add(row: Row): Row {
    if (row.ratio !== undefined) row.ratio = round(row.ratio, 3);
    if (row.target && row.ratio !== undefined && row.pass === undefined) row.pass = meets(row.ratio, row.target);
    this.rows.push(row);
    return row;
  }

  /** Latency comparison of [ours, baseline]: ratio of medians. */
  latency(section: string, operation: string, [ours, base]: LatencyResult[], target?: Target, note?: string): Row {
    const row: Row = { section, operation, ours: fromLatency(ours!) };
    if (base) {
      row.baseline = fromLatency(base);
      row.ratio = ours!.summary.medianUs / base.summary.medianUs;
      row.ratioRange = range(ours!.roundMediansUs, base.roundMediansUs);
    }
    if (target) row.target = target;
    if (note) row.note = note;
    return this.add(row);
  }

  /** Throughput comparison of [ours, baseline]: ratio of median rates. */
  throughput(section: string, operation: string, [ours, base]: ThroughputResult[], target?: Target, note?: string): Row {
    const side = (r: ThroughputResult): Side => ({ label: r.label, opsPerSec: r.opsPerSec, summary: r.summary, rounds: r.roundOpsPerSec });
    const row: Row = { section, operation, ours: side(ours!), baseline: side(base!), ratio: ours!.opsPerSec / base!.opsPerSec };
    row.ratioRange = range(ours!.roundOpsPerSec, base!.roundOpsPerSec);
    if (target) row.target = target;
    if (note) row.note = note;
    return this.add(row);
  }

  print(machine: Machine, header: string[]): void {
    const lines = [
      ...header,
      `machine: ${machine.cores} cores, ${machine.cpu}, ${machine.memoryGiB} GiB, ${machine.os}`,
      `software: Node ${machine.node}, Redis ${machine.redis}, PostgreSQL ${machine.postgres}, ioredis ${machine.ioredis}, postgres.js ${machine.postgresJs}`,
      '',
    ];
    const head = ['operation', 'ours', 'median', 'p99', 'baseline', 'median', 'p99', 'ratio', 'rounds', 'target', 'result'];
    const body = this.rows.map((row) => [
      `  ${row.operation}`,
      ...cells(row.ours),
      ...(row.baseline ? cells(row.baseline) : ['', '', '']),
      row.ratio === undefined ? '' : `${row.ratio.toFixed(near(row) ? 3 : 2)}x`,
      row.ratioRange ? `${row.ratioRange[0].toFixed(2)}-${row.ratioRange[1].toFixed(2)}` : '',
      row.target ? `${row.target.op} ${row.target.value}x` : '',
      row.pass === undefined ? '' : row.pass ? 'PASS' : 'MISS',
    ]);
    // A side shown as text spans its label, median and p99 columns; the widths come from the others.
    const spans = (cols: string[], c: number) => (c === 1 || c === 4) && cols[c + 1] === TEXT;
    const widths = head.map((h, c) => Math.max(h.length, ...body.map((cols) => (spans(cols, c) || cols[c] === TEXT ? 0 : cols[c]!.length))));
    const right = new Set([2, 3, 5, 6, 7, 8]);
    const line = (cols: string[]) => {
      let out = '';
      for (let c = 0; c < cols.length; c++) {
        if (cols[c] === TEXT) continue;
        if (spans(cols, c)) out += `${cols[c]!.padEnd(widths[c]! + widths[c + 1]! + widths[c + 2]! + 4)}  `;
        else out += `${right.has(c) ? cols[c]!.padStart(widths[c]!) : cols[c]!.padEnd(widths[c]!)}  `;
      }
      return out.trimEnd();
    };
    lines.push(line(head));
    let section = '';
    for (const [r, row] of this.rows.entries()) {
      if (row.section !== section) {
        section = row.section;
        lines.push(`[${section}]`);
      }
      lines.push(line(body[r]!));
    }
    const notes = this.rows.filter((row) => row.note);
    if (notes.length > 0) lines.push('', 'notes:', ...notes.map((row) => `  ${row.operation}: ${row.note}`));
    const judged = this.rows.filter((row) => row.pass !== undefined);
    lines.push('', `targets: ${judged.filter((row) => row.pass).length} PASS, ${judged.filter((row) => !row.pass).length} MISS`);
    const failures = (this.extra.failures as string[] | undefined) ?? [];
    if (failures.length > 0) lines.push(`FAILED sections (no figures): ${failures.join('; ')}`);
    console.log(lines.join('\n'));
  }

  write(file: string, data: Record<string, unknown>): void {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${JSON.stringify({ ...data, rows: this.rows, ...this.extra }, null, 2)}\n`);
  }
}

/** Per-round ratios ours/baseline, lowest and highest. */
function range(ours: readonly number[], base: readonly number[]): [number, number] {
  const ratios = ours.map((x, i) => x / (base[i] ?? NaN)).filter(Number.isFinite);
  return [round(Math.min(...ratios), 3), round(Math.max(...ratios), 3)];
}

function fromLatency(r: LatencyResult): Side {
  return { label: r.label, summary: r.summary, rounds: r.roundMediansUs };
}

/** A ratio within 0.01 of its target gets a third decimal, so 1.25x never reads as both PASS and MISS. */
function near(row: Row): boolean {
  return row.target !== undefined && row.ratio !== undefined && Math.abs(row.ratio - row.target.value) < 0.01;
}

function meets(ratio: number, target: Target): boolean {
  return target.op === '<=' ? ratio <= target.value : ratio >= target.value;
}

/** Marks the columns a text cell spans. */
const TEXT = '\u0000';

/** label, median, p99 columns of one side. */
function cells(side: Side): [string, string, string] {
  if (side.text !== undefined) return [`${side.label}: ${side.text}`, TEXT, TEXT];
  const p99 = side.summary ? time(side.summary.p99Us) : '';
  if (side.opsPerSec !== undefined) return [side.label, `${rate(side.opsPerSec)}/s`, p99];
  return [side.label, side.summary ? time(side.summary.medianUs) : '', p99];
}

export function time(us: number): string {
  if (!Number.isFinite(us)) return '-';
  if (us >= 10_000) return `${(us / 1000).toFixed(1)} ms`;
  if (us >= 1000) return `${(us / 1000).toFixed(2)} ms`;
  return `${us.toFixed(us >= 100 ? 0 : 1)} us`;
}

export function rate(perSec: number): string {
  if (perSec >= 1e6) return `${(perSec / 1e6).toFixed(2)}M`;
  if (perSec >= 1e4) return `${(perSec / 1e3).toFixed(1)}k`;
  return String(Math.round(perSec));
}

import type { Op } from './ops.js';

/** Approximate bytes an op occupies in RAM: UTF-16 text plus a fixed overhead per object. */
export function opBytes(op: Op): number {
  switch (op.kind) {
    case 'append':
      return 160 + op.content.length * 2 + (op.meta === undefined ? 0 : JSON.stringify(op.meta).length * 2);
    case 'booking':
      return 120 + (op.booking === null ? 0 : JSON.stringify(op.booking).length * 2);
    case 'summary':
      return 160 + op.text.length * 2;
    default:
      return 120;
  }
}

import type { ThreadRecord, ThreadRecordPage } from '../adapters/contract.js';
import type { ThreadPage } from '../types.js';
import { idTime } from './ids.js';
import type { Op } from './ops.js';

/**
 * A durable page of threads with writes still pending (journaled, not yet durable) laid over it.
 * A pending message counts when its id is above the thread's newest durable one (`lastId`), so a
 * message the syncer moved but has not acknowledged yet is not counted twice. New threads appear
 * on the first page only. A pending truncation shows in the counts once it is durable.
 */
export function overlayThreads(page: ThreadRecordPage, pending: readonly Op[], firstPage: boolean): ThreadPage {
  if (pending.length === 0) return { threads: page.threads.map(toInfo), cursor: page.cursor };
  const records = new Map(page.threads.map((t) => [t.id, { ...t }]));
  const touch = (thread: string, at: number): ThreadRecord | undefined => {
    let record = records.get(thread);
    if (!record && firstPage) {
      record = { id: thread, title: null, messages: 0, createdAt: new Date(at), updatedAt: new Date(at), lastId: '' };
      records.set(thread, record);
    }
    if (record && at > record.updatedAt.getTime()) record.updatedAt = new Date(at);
    return record;
  };
  for (const op of pending) {
    switch (op.kind) {
      case 'append': {
        const record = touch(op.thread, op.createdAt);
        if (record && op.id > record.lastId) {
          record.messages++;
          record.lastId = op.id;
        }
        break;
      }
      case 'clear':
      case 'dropThread': {
        const record = records.get(op.thread);
        if (record) record.messages = 0;
        if (record && op.kind === 'dropThread') record.title = null;
        break;
      }
      case 'cut': {
        const record = records.get(op.thread);
        if (record && op.from === op.to) record.messages = Math.max(0, record.messages - 1);
        break;
      }
      case 'title': {
        const record = touch(op.thread, idTime(op.id));
        if (record) record.title = op.title;
        break;
      }
      case 'edit':
        touch(op.thread, op.updatedAt ?? idTime(op.id));
        break;
      case 'delete':
        records.clear();
        break;
      default:
        break;
    }
  }
  const threads = [...records.values()]
    .filter((t) => t.messages > 0 || t.title !== null)
    .sort((a, b) => b.updatedAt.getTime() - a.updatedAt.getTime() || (a.id < b.id ? -1 : 1));
  return { threads: threads.map(toInfo), cursor: page.cursor };
}

function toInfo(record: ThreadRecord): ThreadPage['threads'][number] {
  return { id: record.id, title: record.title, messages: record.messages, createdAt: record.createdAt, updatedAt: record.updatedAt };
}

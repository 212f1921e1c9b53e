import { Composer } from 'grammy';
import type { BookingData } from '../../src/index.js';
import type { BotContext } from './handlers.js';

type Booking = { service: string; date: string };
type Draft = { step: 'service' } | { step: 'date'; service: string };

const EXAMPLE_DATE = '2027-01-31';

/**
 * /book in two steps (service, then date), /booking and /cancel. Everything lives in the user's
 * booking data: a done booking as `{ service, date }`, a booking in progress next to it as `draft`.
 */
export const booking = new Composer<BotContext>();

booking.command('book', async (ctx) => {
  const { done } = read(await ctx.memory.booking());
  await ctx.memory.setBooking({ ...done, draft: { step: 'service' } });
  const replaces = done ? ` It replaces your booking of ${describe(done)} once you are done.` : '';
  return ctx.reply(`Which service would you like to book? For example: haircut, massage, consultation.${replaces} /cancel stops.`);
});

booking.command('cancel', async (ctx) => {
  const { done, draft } = read(await ctx.memory.booking());
  if (!draft) return ctx.reply('There is no booking in progress. /book starts one.');
  await ctx.memory.setBooking(done ?? null);
  return ctx.reply(done ? `Cancelled. You keep your booking: ${describe(done)}.` : 'Cancelled.');
});

booking.command('booking', async (ctx) => {
  const { done, draft } = read(await ctx.memory.booking());
  const lines = [done ? `Your booking: ${describe(done)}.` : 'You have no booking yet. /book makes one.'];
  if (draft)
    lines.push(
      draft.step === 'service'
        ? 'You are making a booking: which service? (/cancel stops)'
        : `You are booking ${draft.service}: which date? Send it as YYYY-MM-DD (/cancel stops).`,
    );
  return ctx.reply(draft && !done ? lines.slice(1).join('\n') : lines.join('\n'));
});

// While a booking is in progress, a text that is not a command answers its current step.
booking.on('message:text', async (ctx, next) => {
  if (ctx.message.text.startsWith('/')) return next();
  const { done, draft } = read(await ctx.memory.booking());
  if (!draft) return next();
  const text = ctx.message.text.trim().replace(/\s+/g, ' ');
  if (draft.step === 'service') {
    if (!text || text.length > 60) return ctx.reply('Please name the service in a few words (at most 60 characters), or /cancel.');
    await ctx.memory.setBooking({ ...done, draft: { step: 'date', service: text } });
    return ctx.reply(`Noted: ${text}. Which date? Send it as YYYY-MM-DD, for example ${EXAMPLE_DATE}.`);
  }
  const date = parseDate(text);
  if (date === 'format')
    return ctx.reply(`I could not read "${clip(text, 40)}" as a date. Please send it as YYYY-MM-DD, for example ${EXAMPLE_DATE} (or /cancel).`);
  if (date === 'calendar') return ctx.reply(`${text} is not a date on the calendar. Please send a real date as YYYY-MM-DD, for example ${EXAMPLE_DATE}.`);
  const booked = { service: draft.service, date };
  await ctx.memory.setBooking(booked);
  return ctx.reply(`Booked: ${describe(booked)}. /booking shows it.`);
});

function read(data: BookingData | null): { done: Booking | undefined; draft: Draft | undefined } {
  const done = typeof data?.service === 'string' && typeof data.date === 'string' ? { service: data.service, date: data.date } : undefined;
  const raw = data?.draft;
  const d = raw && typeof raw === 'object' && !Array.isArray(raw) ? raw : {};
  const draft: Draft | undefined =
    d.step === 'service' ? { step: 'service' } : d.step === 'date' && typeof d.service === 'string' ? { step: 'date', service: d.service } : undefined;
  return { done, draft };
}

/** `YYYY-MM-DD` of a real calendar day, or what is wrong with the text. */
function parseDate(text: string): string | 'format' | 'calendar' {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (!match) return 'format';
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const date = new Date(Date.UTC(year, month - 1, day));
  const real = year >= 1000 && date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
  return real ? match[0] : 'calendar';
}

function describe(b: Booking): string {
  return `${b.service} on ${b.date}`;
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

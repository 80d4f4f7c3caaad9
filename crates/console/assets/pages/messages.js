// Messages: search (recipient, sender, subject, Message-ID, tag, state, time range)
// over GET /v1/messages, cursor-paged; the filters live in the URL (#/messages?...).

import { get, qs, enc } from '../api.js';
import { h, clear, field, input, select, table, values } from '../dom.js';
import { when, size, text } from '../format.js';

const FILTERS = ['recipient', 'sender', 'subject', 'message_id', 'tag', 'state', 'from', 'to'];
export const STATES = ['', 'queued', 'deferred', 'delivered', 'bounced', 'expired', 'cancelled', 'suppressed', 'quarantined'];

function toIso(local) {
  if (!local) return '';
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}
function toLocal(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

export async function render(ctx, main) {
  const q = ctx.query;
  const form = h('form', { class: 'card filters', id: 'message-search', role: 'search', on: { submit: e => {
    e.preventDefault();
    const v = values(form);
    v.from = toIso(v.from); v.to = toIso(v.to);
    location.hash = `#/messages${qs(v)}`;
  } } },
  h('div', { class: 'row' },
    field('Recipient', input('recipient', { value: q.get('recipient'), type: 'search' })),
    field('Sender', input('sender', { value: q.get('sender'), type: 'search' })),
    field('Subject', input('subject', { value: q.get('subject'), type: 'search' })),
    field('Message-ID', input('message_id', { value: q.get('message_id'), type: 'search' })),
    field('Tag', input('tag', { value: q.get('tag'), type: 'search' })),
    field('State', select('state', STATES.map(s => [s, s || 'any']), q.get('state') || '')),
    field('From', input('from', { type: 'datetime-local', value: toLocal(q.get('from')) })),
    field('To', input('to', { type: 'datetime-local', value: toLocal(q.get('to')) }))),
  h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Search'),
    h('a', { href: '#/messages', class: 'button' }, 'Clear')));

  const params = { limit: 25 };
  for (const k of FILTERS) if (q.get(k)) params[k] = q.get(k);
  if (q.get('cursor')) params.cursor = q.get('cursor');
  const results = h('div', { id: 'message-results' });
  clear(main, h('h1', {}, 'Messages'), form, results);

  const page = await get(`/v1/messages${qs(params)}`);
  const items = page.items || [];
  const next = page.next_cursor;
  const here = Object.fromEntries(FILTERS.filter(k => q.get(k)).map(k => [k, q.get(k)]));
  clear(results,
    table([
      ['Created', m => when(m.created_at)],
      ['Message', m => h('a', { href: `#/messages/${enc(m.id)}`, class: 'mono' }, m.id)],
      ['From', m => text(m.from)],
      ['To', m => (m.to || []).join(', ')],
      ['Subject', m => text(m.subject)],
      ['State', m => h('span', { class: `state state-${m.state}` }, text(m.state))],
      ['Size', m => size(m.size)],
      ['Tags', m => (m.tags || []).join(', ')],
    ], items, { empty: 'No message matches.', caption: `${items.length} message(s) on this page` }),
    h('nav', { class: 'pager', 'aria-label': 'Pages' },
      q.get('cursor') ? h('a', { href: `#/messages${qs(here)}`, class: 'button' }, 'First page') : null,
      next ? h('a', { href: `#/messages${qs({ ...here, cursor: next })}`, class: 'button', id: 'next-page' }, 'Next page') : null));
}

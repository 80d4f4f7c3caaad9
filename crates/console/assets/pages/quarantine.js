// Quarantine: messages held by content protection, with release and delete.

import { get, post, del, qs, enc } from '../api.js';
import { h, clear, table, action, toast } from '../dom.js';
import { when, size, text } from '../format.js';

/** The rules that fired, from the `filtered` event's detail. */
function why(f) {
  if (!f || typeof f !== 'object') return text(f);
  const rules = f.rules ?? f.matched ?? f.hits;
  if (Array.isArray(rules)) return rules.map(r => (typeof r === 'object' ? `${r.name ?? r.rule ?? r.id}${r.score != null ? ` (${r.score})` : ''}` : r)).join(', ') + (f.score != null ? ` — score ${f.score}` : '');
  return JSON.stringify(f);
}

export async function render(ctx, main) {
  const data = await get(`/v1/quarantine${qs({ limit: 200 })}`);
  clear(main, h('h1', {}, 'Quarantine'),
    h('p', { class: 'muted' }, 'Messages held by content protection. Releasing one queues it for delivery; deleting cancels it.'),
    table([
      ['Received', m => when(m.received_at ?? m.created_at)],
      ['Message', m => h('a', { href: `#/messages/${enc(m.id)}`, class: 'mono' }, m.id)],
      ['From', m => text(m.mail_from ?? m.from)],
      ['To', m => (m.recipients || []).join(', ')],
      ['Message-ID', m => h('span', { class: 'mono wrap' }, text(m.rfc_message_id))],
      ['Why', m => h('span', { class: 'wrap' }, why(m.filter ?? m.reason))],
      ['Size', m => size(m.size)],
      ['', m => h('span', { class: 'actions' },
        action('Release', async () => { const r = await post(`/v1/messages/${enc(m.id)}/release`); toast(`Released ${r.released ?? 0} recipient(s)`); ctx.refresh(); }, { class: 'primary', 'aria-label': `Release ${m.id}`, 'data-id': m.id }),
        action('Delete', async () => { if (!confirm('Delete this message?')) return; await del(`/v1/messages/${enc(m.id)}`); toast('Deleted'); ctx.refresh(); }, { class: 'danger', 'aria-label': `Delete ${m.id}` }))],
    ], data.messages || [], { class: 'quarantine', empty: 'Nothing in quarantine.' }));
}

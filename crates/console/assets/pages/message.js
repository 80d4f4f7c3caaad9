// One message: envelope, tags and metadata, headers (while the body is stored), size,
// each recipient's state and its timeline (every attempt with exchanger, IP, TLS, the
// remote reply and its duration; opens and clicks), the delivery status reports sent
// about it, from GET /v1/messages/{id}, and the buttons the API allows.

import { get, post, del, enc } from '../api.js';
import { h, clear, section, table, action, toast } from '../dom.js';
import { when, size, ms, text } from '../format.js';

const FINAL = new Set(['delivered', 'bounced', 'expired', 'cancelled', 'suppressed']);

function pick(obj, ...keys) {
  for (const k of keys) if (obj && obj[k] !== undefined && obj[k] !== null && obj[k] !== '') return obj[k];
  return null;
}

function eventTime(e) { return pick(e, 'at', 'created_at', 'timestamp', 'time'); }
function eventType(e) { return pick(e, 'type', 'kind', 'event') || 'event'; }

/** The fields of an attempt, wherever the event keeps them. */
function attempt(e) {
  const d = { ...(e.detail || {}), ...(e.data || {}) };
  return {
    exchanger: pick(d, 'remote_mx', 'mx', 'exchanger', 'host', 'remote_host'),
    ip: pick(d, 'remote_ip', 'ip', 'peer'),
    // A delivery attempt with `tls: null` went in plain text.
    tls: pick(d, 'tls', 'tls_version', 'tls_protocol') ?? ('tls' in d && (d.remote_ip || d.remote_mx) ? 'none' : null),
    reply: replyText(pick(d, 'reply', 'response', 'smtp_reply', 'remote_reply', 'last_reply', 'diagnostic', 'reason')),
    duration: pick(d, 'duration_ms', 'elapsed_ms', 'duration'),
    url: pick(d, 'url', 'link'),
    rest: d,
  };
}

function replyText(r) {
  if (r && typeof r === 'object') return r.text ?? [r.code, r.enhanced].filter(Boolean).join(' ');
  return r;
}

function headerRows(m) {
  const hs = m.headers;
  if (!hs) return [];
  if (Array.isArray(hs)) return hs.map(x => (Array.isArray(x) ? { name: x[0], value: x[1] } : x));
  return Object.entries(hs).map(([name, value]) => ({ name, value: Array.isArray(value) ? value.join(', ') : value }));
}

export async function render(ctx, main) {
  const id = ctx.params[0];
  const m = await get(`/v1/messages/${enc(id)}`);
  const recipients = m.recipients || [];
  const states = new Set(recipients.map(r => r.state));
  const open = recipients.some(r => !FINAL.has(r.state));
  const reload = () => ctx.refresh();

  const buttons = h('div', { class: 'actions' },
    states.has('deferred') || states.has('queued')
      ? action('Retry now', async () => { const r = await post(`/v1/messages/${enc(id)}/retry`); toast(`Retry requested for ${r.retried ?? 0} recipient(s)`); reload(); }, { id: 'retry' }) : null,
    states.has('quarantined')
      ? action('Release from quarantine', async () => { const r = await post(`/v1/messages/${enc(id)}/release`); toast(`Released ${r.released ?? 0} recipient(s)`); reload(); }, { id: 'release', class: 'primary' }) : null,
    open
      ? action(states.has('quarantined') ? 'Delete' : 'Cancel delivery', async () => {
        if (!confirm('Cancel every undelivered recipient of this message?')) return;
        const r = await del(`/v1/messages/${enc(id)}`); toast(`Cancelled ${r.cancelled ?? 0} recipient(s)`); reload();
      }, { id: 'cancel', class: 'danger' }) : null);

  const envelope = [
    ['Message', h('span', { class: 'mono' }, m.id)],
    ['Tenant', text(m.tenant_name || m.tenant_id)],
    ['Envelope sender', text(m.mail_from)],
    ['Message-ID', text(m.rfc_message_id)],
    ['Subject', text(m.subject)],
    ['Size', size(m.size)],
    ['Received', when(m.received_at)],
    ['Source', `${text(m.source)}${m.client_ip ? ` from ${m.client_ip}` : ''}`],
    ['DSN', `RET=${text(m.dsn_ret)} ENVID=${text(m.dsn_envid)}`],
  ];
  envelope.push(['Tags', m.tags?.length ? m.tags.join(', ') : '—']);
  if (m.metadata && typeof m.metadata === 'object') {
    for (const [k, v] of Object.entries(m.metadata)) envelope.push([`Metadata: ${k}`, h('span', { class: 'mono wrap' }, text(v))]);
  }
  const messageEvents = m.events || [];
  const reports = m.reports || [];

  const hdrs = headerRows(m);
  clear(main,
    h('div', { class: 'page-head' }, h('h1', {}, m.subject ? `Message: ${m.subject}` : 'Message'), buttons),
    h('p', {}, h('a', { href: '#/messages' }, '← All messages')),
    section('Envelope', h('dl', { class: 'kv', id: 'envelope' }, envelope.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))),
    section('Headers', m.headers === null
      ? h('p', { class: 'muted', id: 'headers' }, 'The body is no longer stored: its header fields are gone with it.')
      : h('details', { id: 'headers' }, h('summary', {}, `${hdrs.length} header fields`),
        table([['Name', x => x.name], ['Value', x => h('span', { class: 'mono wrap' }, text(x.value))]], hdrs))),
    section('Delivery status reports sent', table([
      ['Report', x => h('a', { href: `#/messages/${enc(x.id)}`, class: 'mono' }, x.id)],
      ['To', x => text(x.to)],
      ['State', x => h('span', { class: `state state-${x.state}` }, x.state)],
      ['Sent', x => when(x.received_at)],
    ], reports, { class: 'reports', empty: 'No report (DSN) was sent about this message.' })),
    messageEvents.length ? section('Message events', table([
      ['When', e => when(eventTime(e))],
      ['Event', e => h('span', { class: `event event-${eventType(e)}` }, eventType(e))],
      ['Detail', e => h('span', { class: 'mono wrap' }, text(attempt(e).url ?? e.detail))],
    ], messageEvents, { class: 'message-events' })) : null,
    recipients.map(r => {
      const events = [...(r.events || [])].sort((a, b) => Number(new Date(eventTime(a))) - Number(new Date(eventTime(b))));
      const opens = events.filter(e => /open/.test(eventType(e))).length + (recipients.length === 1 ? messageEvents.filter(e => /open/.test(eventType(e))).length : 0);
      const clicks = events.filter(e => /click/.test(eventType(e))).length + (recipients.length === 1 ? messageEvents.filter(e => /click/.test(eventType(e))).length : 0);
      return h('section', { class: 'card recipient', 'data-address': r.address },
        h('h2', {}, r.address, ' ', h('span', { class: `state state-${r.state}` }, r.state)),
        h('dl', { class: 'kv' },
          h('dt', {}, 'Attempts'), h('dd', {}, String(r.attempts ?? 0)),
          h('dt', {}, 'Last reply'), h('dd', { class: 'mono wrap last-reply' }, text(replyText(r.last_reply))),
          h('dt', {}, 'Next attempt'), h('dd', {}, when(r.next_attempt_at)),
          h('dt', {}, 'DSN NOTIFY'), h('dd', {}, text(r.dsn_notify)),
          h('dt', {}, 'Opens / clicks'), h('dd', {}, `${opens} / ${clicks}`)),
        h('h3', {}, 'Timeline'),
        table([
          ['When', e => when(eventTime(e))],
          ['Event', e => h('span', { class: `event event-${eventType(e)}` }, eventType(e))],
          ['Exchanger', e => text(attempt(e).exchanger)],
          ['IP', e => text(attempt(e).ip)],
          ['TLS', e => text(attempt(e).tls)],
          ['Reply', e => h('span', { class: 'mono wrap reply' }, text(attempt(e).reply ?? attempt(e).url))],
          ['Duration', e => (attempt(e).duration != null ? ms(Number(attempt(e).duration)) : '—')],
        ], events, { class: 'timeline', empty: 'No events yet.' }));
    }));
}

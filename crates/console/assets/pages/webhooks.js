// Webhooks: add (URL, event types), edit event types, enable/disable, send a test, and
// each webhook's delivery log (status code, attempts, last error).

import { get, post, patch, del, qs, enc } from '../api.js';
import { h, clear, section, field, input, table, action, toast, values } from '../dom.js';
import { when, text } from '../format.js';
import { secretOnce, needTenant } from './keys.js';

export const EVENT_TYPES = ['accepted', 'rejected', 'suppressed', 'deferred', 'delivered', 'bounced', 'expired',
  'cancelled', 'complained', 'domain.dns_error', 'sender_health.warning', 'sender_health.paused',
  'domain.deleted', 'shaping.action', 'tenant.deleted', 'address.erased'];

function eventBoxes(selected) {
  const all = !selected;
  return h('fieldset', { class: 'checks' }, h('legend', {}, 'Event types (none ticked: every type)'),
    EVENT_TYPES.map(t => h('label', {}, h('input', { type: 'checkbox', name: 'event_types', value: t, checked: !all && selected.includes(t) }), ` ${t}`)));
}

function ticked(form) {
  const list = [...form.querySelectorAll('input[name=event_types]:checked')].map(i => i.value);
  return list.length ? list : null;
}

async function list(ctx, main) {
  if (needTenant(ctx, main, 'Webhooks')) return;
  const asOperator = ctx.session.role === 'operator';
  const data = await get(`/v1/webhooks${qs({ tenant: asOperator ? ctx.tenant : '' })}`);
  const form = h('form', { class: 'card', id: 'webhook-form', on: { submit: async e => {
    e.preventDefault();
    try {
      const w = await post('/v1/webhooks', { url: values(form).url, event_types: ticked(form), ...(asOperator ? { tenant_id: ctx.tenant } : {}) });
      await ctx.refresh();
      document.getElementById('new-secret')?.replaceChildren(secretOnce('Signing secret of the new webhook', w.secret, 'Use it to check the Mailroom-Signature header; shown only this once.'));
    } catch (err) { toast(err.message, 'error'); }
  } } },
  h('h2', {}, 'Add a webhook'),
  field('URL', input('url', { type: 'url', required: true, placeholder: 'your endpoint (http or https)' })),
  eventBoxes(null),
  h('button', { type: 'submit', class: 'primary' }, 'Add webhook'));
  clear(main, h('h1', {}, 'Webhooks'), h('div', { id: 'new-secret' }),
    section('Webhooks', table([
      ['URL', w => h('a', { href: `#/webhooks/${enc(w.id)}` }, w.url)],
      ['Events', w => (w.event_types ? w.event_types.join(', ') : 'all')],
      ['Enabled', w => (w.enabled ? 'yes' : 'no')],
      ['Created', w => when(w.created_at)],
    ], data.webhooks || [], { class: 'webhooks', empty: 'No webhooks.' })),
    form);
}

async function detail(ctx, main) {
  const id = ctx.params[0];
  const [w, log] = await Promise.all([
    get(`/v1/webhooks/${enc(id)}`),
    get(`/v1/webhooks/${enc(id)}/deliveries${qs({ limit: 100 })}`),
  ]);
  const edit = h('form', { class: 'card', id: 'webhook-edit', on: { submit: async e => {
    e.preventDefault();
    try { await patch(`/v1/webhooks/${enc(id)}`, { event_types: ticked(edit) }); toast('Saved'); ctx.refresh(); } catch (err) { toast(err.message, 'error'); }
  } } }, h('h2', {}, 'Event types'), eventBoxes(w.event_types), h('button', { type: 'submit', class: 'primary' }, 'Save event types'));
  clear(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Webhook'), h('div', { class: 'actions' },
      action('Send test', async () => {
        const r = await post(`/v1/webhooks/${enc(id)}/test`);
        toast(r.delivered ? `Test delivered (HTTP ${r.status ?? 'ok'})` : `Test not delivered: ${text(r.error ?? r.status)}`, r.delivered ? 'info' : 'error');
        ctx.refresh();
      }, { id: 'send-test' }),
      action(w.enabled ? 'Disable' : 'Enable', async () => { await patch(`/v1/webhooks/${enc(id)}`, { enabled: !w.enabled }); ctx.refresh(); }, { id: 'toggle-enabled' }),
      action('Delete', async () => {
        if (!confirm('Delete this webhook?')) return;
        await del(`/v1/webhooks/${enc(id)}`); ctx.go('webhooks');
      }, { class: 'danger' }))),
    h('p', {}, h('a', { href: '#/webhooks' }, '← All webhooks')),
    section('Settings', h('dl', { class: 'kv' },
      h('dt', {}, 'URL'), h('dd', { class: 'mono wrap' }, w.url),
      h('dt', {}, 'Enabled'), h('dd', { id: 'webhook-enabled' }, w.enabled ? 'yes' : 'no'),
      h('dt', {}, 'Created'), h('dd', {}, when(w.created_at)))),
    edit,
    section('Delivery log', table([
      ['Event', d => text(d.event_type)],
      ['State', d => h('span', { class: `state state-${d.state}` }, text(d.state))],
      ['Status', d => text(d.last_status)],
      ['Attempts', d => text(d.attempts)],
      ['Last error', d => h('span', { class: 'wrap' }, text(d.last_error))],
      ['Updated', d => when(d.updated_at)],
      ['Next attempt', d => when(d.next_attempt_at)],
    ], log.deliveries || [], { class: 'deliveries', empty: 'No deliveries yet.' })));
}

export async function render(ctx, main) {
  return ctx.params.length ? detail(ctx, main) : list(ctx, main);
}

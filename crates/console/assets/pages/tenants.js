// Tenants, operator only: create, and a tenant's page with its status, limits, sandbox
// and sender health (GET /v1/tenants/{id}/health).

import { get, post, patch, enc } from '../api.js';
import { h, clear, section, field, input, select, table, toast, values } from '../dom.js';
import { when, text, pct } from '../format.js';
import { secretOnce } from './keys.js';

const LIMITS = ['messages_per_second', 'messages_per_day', 'max_recipients', 'max_message_size'];

async function list(ctx, main) {
  const data = await get('/v1/tenants');
  const form = h('form', { class: 'inline-form', id: 'tenant-form', on: { submit: async e => {
    e.preventDefault();
    try {
      const t = await post('/v1/tenants', { name: values(form).name });
      sessionStorage.setItem('mailroom.tenant', t.id);
      sessionStorage.setItem('mailroom.new-key', JSON.stringify([t.name, t.api_key]));
      location.reload();
    } catch (err) { toast(err.message, 'error'); }
  } } }, field('Name', input('name', { required: true, pattern: '[A-Za-z0-9._-]{1,64}' })), h('button', { type: 'submit', class: 'primary' }, 'Create tenant'));
  const fresh = sessionStorage.getItem('mailroom.new-key');
  sessionStorage.removeItem('mailroom.new-key');
  let freshBox = null;
  if (fresh) { try { const [n, k] = JSON.parse(fresh); if (k) freshBox = secretOnce(`First API key of ${n}`, k); } catch { /* ignore */ } }
  clear(main, h('h1', {}, 'Tenants'), freshBox,
    table([
      ['Name', t => h('a', { href: `#/tenants/${enc(t.id)}` }, t.name)],
      ['Id', t => h('span', { class: 'mono' }, t.id)],
      ['Status', t => h('span', { class: `state state-${t.status}` }, text(t.status))],
      ['Sandbox', t => (t.sandbox ? 'yes' : 'no')],
      ['Created', t => when(t.created_at)],
    ], data.tenants || [], { class: 'tenants', empty: 'No tenants yet.' }),
    section('Create a tenant', form));
}

async function detail(ctx, main) {
  const id = ctx.params[0];
  const [t, health] = await Promise.all([get(`/v1/tenants/${enc(id)}`), get(`/v1/tenants/${enc(id)}/health`).catch(() => null)]);
  const limits = LIMITS;
  const current = t.limits || {};
  const form = h('form', { class: 'card', id: 'tenant-edit', on: { submit: async e => {
    e.preventDefault();
    const v = values(form);
    const body = { status: v.status, sandbox: form.querySelector('[name=sandbox]').checked };
    for (const k of limits) body[k] = v[k] === undefined ? null : Number(v[k]);
    for (const k of ['track_opens', 'track_clicks', 'list_unsubscribe']) body[k] = form.querySelector(`[name=${k}]`).checked;
    try { await patch(`/v1/tenants/${enc(id)}`, body); toast('Saved'); ctx.refresh(); } catch (err) { toast(err.message, 'error'); }
  } } },
  h('h2', {}, 'Settings'),
  field('Status', select('status', ['active', 'paused', 'suspended'], t.status)),
  h('div', { class: 'field' }, h('label', {}, h('input', { type: 'checkbox', name: 'sandbox', checked: t.sandbox }), ' Sandbox (deliver only to the sandbox recipients)')),
  ['track_opens', 'track_clicks', 'list_unsubscribe'].map(k => h('div', { class: 'field' }, h('label', {}, h('input', { type: 'checkbox', name: k, checked: t[k] }), ` ${k.replace(/_/g, ' ')}`))),
  h('div', { class: 'row' }, limits.map(k => field(k.replace(/_/g, ' '), input(k, { type: 'number', min: 0, step: k === 'messages_per_second' ? 'any' : 1, value: current[k] ?? '' }), 'empty: server default'))),
  h('button', { type: 'submit', class: 'primary' }, 'Save'));
  const flat = (o, pre = '') => Object.entries(o || {}).flatMap(([k, v]) => (v && typeof v === 'object' ? flat(v, `${pre}${k}.`) : [[`${pre}${k}`, v]]));
  const healthRows = health ? flat(health).filter(([k]) => k !== 'tenant_id') : [];
  clear(main, h('h1', {}, `Tenant ${t.name}`), h('p', {}, h('a', { href: '#/tenants' }, '← All tenants')),
    section('Tenant', h('dl', { class: 'kv' }, Object.entries(t).filter(([k, v]) => typeof v !== 'object' || v === null).map(([k, v]) => [h('dt', {}, k.replace(/_/g, ' ')), h('dd', {}, /_at$/.test(k) ? when(v) : text(v))]))),
    form,
    section('Sender health', health ? table([['Measure', r => r[0].replace(/_/g, ' ')], ['Value', r => (/rate|warn|pause/.test(r[0]) && typeof r[1] === 'number' ? pct(r[1]) : text(r[1]))]], healthRows, { class: 'health' }) : h('p', { class: 'muted' }, 'No health data.')));
}

export async function render(ctx, main) {
  return ctx.params.length ? detail(ctx, main) : list(ctx, main);
}

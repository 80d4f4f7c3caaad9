// Sending domains: the list (add one), and a domain's page: status, every DNS record to
// publish with its live state (found vs expected), "check now", DKIM keys and
// rotation, and the records as a zone file to download.

import { get, post, enc } from '../api.js';
import { h, clear, section, field, input, table, action, toast, values } from '../dom.js';
import { when, text } from '../format.js';

function pick(o, ...keys) { for (const k of keys) if (o && o[k] !== undefined && o[k] !== null) return o[k]; return null; }

function recordRows(d) {
  const recs = Array.isArray(d.records) ? d.records : Object.entries(d.records || {}).map(([k, v]) => ({ purpose: k, ...v }));
  return recs.map(r => ({
    purpose: pick(r, 'kind', 'purpose', 'label'),
    problem: pick(r, 'problem'),
    type: pick(r, 'type', 'rtype', 'record_type') || 'TXT',
    name: pick(r, 'name', 'host', 'fqdn'),
    expected: pick(r, 'value', 'expected', 'content'),
    found: pick(r, 'found', 'current', 'actual', 'published'),
    status: pick(r, 'state', 'status', 'correct'),
    ttl: pick(r, 'ttl') || 3600,
  }));
}

/** The records in zone-file syntax (TXT values split into 255-octet strings). */
export function zoneFile(domain, rows) {
  const q = v => {
    const s = String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"');
    const parts = [];
    for (let i = 0; i < s.length; i += 255) parts.push(`"${s.slice(i, i + 255)}"`);
    return parts.join(' ');
  };
  const lines = [`; Records for ${domain}, from Mailroom (${new Date().toISOString()})`, `$ORIGIN ${domain.replace(/\.$/, '')}.`];
  for (const r of rows) {
    if (!r.name || r.expected === null) continue;
    const name = String(r.name).endsWith('.') ? r.name : `${r.name}.`;
    const value = r.type === 'TXT' ? q(r.expected) : String(r.expected);
    lines.push(`${name}\t${r.ttl}\tIN\t${r.type}\t${value}`);
  }
  return lines.join('\n') + '\n';
}

function statusBadge(s) {
  const v = s === true ? 'ok' : s === false ? 'missing' : text(s);
  return h('span', { class: `state state-${v}` }, v);
}

async function list(ctx, main) {
  const asOperator = ctx.session.role === 'operator';
  const data = asOperator ? await get('/v1/domains') : await get(`/v1/tenants/${enc(ctx.tenant)}/domains`);
  const form = h('form', { class: 'inline-form', id: 'domain-form', on: { submit: async e => {
    e.preventDefault();
    try { const d = await post(`/v1/tenants/${enc(ctx.tenant)}/domains`, { name: values(form).name }); ctx.go(`domains/${enc(d.name)}`); } catch (err) { toast(err.message, 'error'); }
  } } }, field('Domain name', input('name', { required: true, placeholder: 'mail.example.com' })), h('button', { type: 'submit', class: 'primary' }, 'Add domain'));
  clear(main, h('h1', {}, 'Domains'),
    table([
      ['Domain', d => h('a', { href: `#/domains/${enc(d.name)}` }, d.name)],
      ['Status', d => statusBadge(d.status)],
      ['Verified', d => (d.verified ? 'yes' : 'no')],
      ['Last checked', d => when(d.last_checked_at)],
      asOperator ? ['Tenant', d => text(d.tenant_id)] : null,
    ].filter(Boolean), data.domains || [], { class: 'domains', empty: 'No sending domains yet.' }),
    ctx.tenant ? section(asOperator ? 'Add a domain to the tenant in view' : 'Add a domain', form) : null);
}

async function detail(ctx, main) {
  const name = ctx.params[0];
  let d = await get(`/v1/domains/${enc(name)}`);
  const draw = () => {
    const rows = recordRows(d);
    const zone = zoneFile(d.name, rows);
    const download = h('a', { class: 'button', download: `${d.name}.zone`, href: URL.createObjectURL(new Blob([zone], { type: 'text/dns' })), id: 'zone-download' }, 'Download zone file');
    clear(main,
      h('div', { class: 'page-head' }, h('h1', {}, d.name, ' ', statusBadge(d.status)), h('div', { class: 'actions' },
        action('Check now', async () => { d = await post(`/v1/domains/${enc(name)}/verify`); toast(`Checked: ${text(d.status)}`); draw(); }, { id: 'check-now', class: 'primary' }),
        action('Rotate DKIM key', async () => {
          if (!confirm('Start a DKIM key rotation? Publish the new selector before the old one is retired.')) return;
          d = await post(`/v1/domains/${enc(name)}/dkim/rotate`); toast('Rotation started'); draw();
        }, { id: 'rotate' }), download)),
      h('p', {}, h('a', { href: '#/domains' }, '← All domains')),
      section('Status', h('dl', { class: 'kv' },
        h('dt', {}, 'Verified'), h('dd', {}, d.verified ? 'yes' : 'no'),
        h('dt', {}, 'Last checked'), h('dd', { id: 'last-checked' }, when(d.last_checked_at)),
        h('dt', {}, 'Verification token'), h('dd', { class: 'mono wrap' }, text(d.verification_token)),
        h('dt', {}, 'Allowed senders'), h('dd', {}, d.allowed_local_parts?.length ? d.allowed_local_parts.join(', ') : 'any'))),
      section('DNS records', table([
        ['Purpose', r => text(r.purpose)],
        ['Type', r => r.type],
        ['Name', r => h('span', { class: 'mono wrap' }, text(r.name))],
        ['Expected', r => h('span', { class: 'mono wrap' }, text(r.expected))],
        ['Found', r => h('span', { class: 'mono wrap' }, r.found == null && r.status === 'correct' ? 'as expected' : text(r.found))],
        ['State', r => [statusBadge(r.status), r.problem ? h('small', { class: 'muted' }, ` ${text(r.problem)}`) : null]],
      ], rows, { class: 'records', empty: 'No records to publish.' })),
      d.last_check ? section('Last check', h('pre', { class: 'mono wrap', id: 'last-check' }, JSON.stringify(d.last_check, null, 2))) : null,
      section('DKIM keys', table([
        ['Selector', k => h('span', { class: 'mono' }, text(k.selector))],
        ['Algorithm', k => text(k.algorithm ?? k.algo)],
        ['State', k => statusBadge(k.state ?? k.status)],
        ['Created', k => when(k.created_at)],
        ['Activated', k => when(k.activated_at)],
        ['Retires', k => when(k.retire_after ?? k.retire_at ?? k.retired_at)],
      ], d.dkim_keys || [], { class: 'dkim', empty: 'No DKIM key.' })));
  };
  draw();
}

export async function render(ctx, main) {
  return ctx.params.length ? detail(ctx, main) : list(ctx, main);
}

// API keys (GET/POST /v1/keys, DELETE /v1/keys/{id}) and SMTP credentials
// (/v1/tenants/{id}/smtp-credentials) of the tenant in view; a new secret is shown once.

import { get, post, del, qs, enc } from '../api.js';
import { h, clear, section, field, input, select, table, action, toast, values } from '../dom.js';
import { when, text } from '../format.js';

export function secretOnce(title, secret, note) {
  const box = h('input', { type: 'text', readonly: true, value: secret, class: 'mono secret-value', 'aria-label': title });
  return h('div', { class: 'notice secret', role: 'alert' },
    h('strong', {}, title), h('p', {}, note || 'Copy it now: it is shown only this once.'), box,
    h('button', { type: 'button', on: { click: async () => { box.select(); try { await navigator.clipboard.writeText(secret); toast('Copied'); } catch { /* select() is the fallback */ } } } }, 'Copy'));
}

export function needTenant(ctx, main, title) {
  if (ctx.tenant) return false;
  clear(main, h('h1', {}, title), h('p', { class: 'notice' }, 'Create a tenant first (Tenants), then pick it in the header.'));
  return true;
}

export async function render(ctx, main) {
  if (needTenant(ctx, main, 'Keys and credentials')) return;
  const tenant = ctx.tenant;
  const asOperator = ctx.session.role === 'operator';
  const [keys, creds] = await Promise.all([
    get(`/v1/keys${qs({ tenant: asOperator ? tenant : '' })}`),
    get(`/v1/tenants/${enc(tenant)}/smtp-credentials`).catch(() => ({ credentials: [] })),
  ]);
  const shown = h('div', { id: 'new-secret' });
  const form = h('form', { class: 'inline-form', id: 'key-form', on: { submit: async e => {
    e.preventDefault();
    const v = values(form);
    try {
      const k = await post('/v1/keys', { name: v.name, scope: v.scope, ...(asOperator ? { tenant_id: tenant } : {}) });
      await ctx.refresh();
      document.getElementById('new-secret')?.replaceChildren(secretOnce(`API key “${k.name}”`, k.api_key));
    } catch (err) { toast(err.message, 'error'); }
  } } },
  field('Name', input('name', { required: true, maxlength: 64 })),
  field('Scope', select('scope', [['full', 'full — everything the tenant may do'], ['send', 'send — submit mail only'], ['read', 'read — GET only']], 'send')),
  h('button', { type: 'submit', class: 'primary' }, 'Create key'));

  clear(main, h('h1', {}, 'Keys and credentials'), shown,
    section('API keys', form,
      table([
        ['Name', k => k.name],
        ['Scope', k => k.scope],
        ['Created', k => when(k.created_at)],
        ['Last used', k => when(k.last_used_at)],
        ['', k => action('Revoke', async () => {
          if (!confirm(`Revoke the key “${k.name}”? Programs using it stop working at once.`)) return;
          await del(`/v1/keys/${enc(k.id)}`); toast(`Revoked ${k.name}`); ctx.refresh();
        }, { class: 'danger', 'aria-label': `Revoke ${k.name}`, 'data-key': k.name })],
      ], keys.keys || [], { class: 'keys', empty: 'No API keys.' })),
    section('SMTP credentials',
      h('p', {}, action('Create SMTP credential', async () => {
        const c = await post(`/v1/tenants/${enc(tenant)}/smtp-credentials`, {});
        await ctx.refresh();
        document.getElementById('new-secret')?.replaceChildren(secretOnce(`SMTP password for ${c.username}`, c.password));
      }, { id: 'new-credential' })),
      table([
        ['Username', c => h('span', { class: 'mono' }, c.username)],
        ['Created', c => when(c.created_at)],
        ['Last used', c => when(c.last_used_at)],
        ['', c => action('Revoke', async () => {
          if (!confirm(`Revoke ${c.username}?`)) return;
          await del(`/v1/tenants/${enc(tenant)}/smtp-credentials/${enc(c.id)}`); toast('Revoked'); ctx.refresh();
        }, { class: 'danger', 'aria-label': `Revoke ${text(c.username)}` })],
      ], creds.credentials || [], { empty: 'No SMTP credentials.' })));
}

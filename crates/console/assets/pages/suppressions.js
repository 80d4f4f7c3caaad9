// Suppressions of the tenant in view: look one address up, add, remove, and CSV import
// and export (the CSV is made and read here, from and into the same API calls).

import { get, post, del, qs, enc, ApiError } from '../api.js';
import { h, clear, section, field, input, select, table, action, toast, values } from '../dom.js';
import { when, text } from '../format.js';
import { needTenant } from './keys.js';

const REASONS = ['manual', 'bounce', 'complaint', 'unsubscribe'];

function csvCell(v) {
  const s = v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Rows of a CSV text (RFC 4180 quoting). */
export function parseCsv(textIn) {
  const rows = [];
  let row = [], cell = '', quoted = false;
  for (let i = 0; i < textIn.length; i++) {
    const c = textIn[i];
    if (quoted) {
      if (c === '"' && textIn[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = false; else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(cell); cell = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && textIn[i + 1] === '\n') i++;
      row.push(cell); rows.push(row); row = []; cell = '';
    } else cell += c;
  }
  if (cell !== '' || row.length) { row.push(cell); rows.push(row); }
  return rows.filter(r => r.some(c => c.trim() !== ''));
}

export async function render(ctx, main) {
  if (needTenant(ctx, main, 'Suppressions')) return;
  const asOperator = ctx.session.role === 'operator';
  const tq = asOperator ? ctx.tenant : '';
  const after = ctx.query.get('after') || '';
  const lookup = ctx.query.get('address') || '';
  let rows, next = null;
  if (lookup) {
    try { rows = [await get(`/v1/suppressions/${enc(lookup)}${qs({ tenant: tq })}`)]; } catch (e) { if (e instanceof ApiError && e.status === 404) rows = []; else throw e; }
  } else {
    const page = await get(`/v1/suppressions${qs({ tenant: tq, after, limit: 50 })}`);
    rows = page.suppressions || [];
    next = page.next_after;
  }

  const search = h('form', { class: 'inline-form', role: 'search', on: { submit: e => {
    e.preventDefault(); location.hash = `#/suppressions${qs({ address: values(search).address })}`;
  } } }, field('Address', input('address', { type: 'search', value: lookup })), h('button', { type: 'submit' }, 'Find'),
  lookup ? h('a', { href: '#/suppressions', class: 'button' }, 'Show all') : null);

  const add = h('form', { class: 'inline-form', id: 'suppression-form', on: { submit: async e => {
    e.preventDefault();
    const v = values(add);
    try { await post('/v1/suppressions', { address: v.address, reason: v.reason, note: v.note, ...(asOperator ? { tenant_id: ctx.tenant } : {}) }); toast(`Suppressed ${v.address}`); ctx.refresh(); } catch (err) { toast(err.message, 'error'); }
  } } },
  field('Address', input('address', { type: 'email', required: true })),
  field('Reason', select('reason', REASONS, 'manual')),
  field('Note', input('note', { maxlength: 500 })),
  h('button', { type: 'submit', class: 'primary' }, 'Add'));

  const file = h('input', { type: 'file', accept: '.csv,text/csv', name: 'csv' });
  const importForm = h('form', { class: 'inline-form', on: { submit: async e => {
    e.preventDefault();
    if (!file.files[0]) return;
    const rows2 = parseCsv(await file.files[0].text());
    if (rows2.length && /address/i.test(rows2[0][0])) rows2.shift();
    let ok = 0; const failed = [];
    for (const [address, reason] of rows2) {
      try { await post('/v1/suppressions', { address: address.trim(), reason: REASONS.includes(reason?.trim()) ? reason.trim() : 'manual', ...(asOperator ? { tenant_id: ctx.tenant } : {}) }); ok++; } catch (err) { failed.push(`${address}: ${err.message}`); }
    }
    toast(`Imported ${ok} address(es)${failed.length ? `, ${failed.length} refused: ${failed.slice(0, 3).join('; ')}` : ''}`, failed.length ? 'error' : 'info');
    ctx.refresh();
  } } }, field('CSV file (address,reason per line)', file), h('button', { type: 'submit' }, 'Import'));

  const exportButton = action('Export CSV', async () => {
    const all = [];
    let cursor = '';
    for (let i = 0; i < 1000; i++) {
      const page = await get(`/v1/suppressions${qs({ tenant: tq, after: cursor, limit: 1000 })}`);
      all.push(...(page.suppressions || []));
      if (!page.next_after) break;
      cursor = page.next_after;
    }
    const lines = ['address,reason,created_at,message_id,detail', ...all.map(s => [s.address, s.reason, new Date(s.created_at).toISOString(), s.message_id, s.detail].map(csvCell).join(','))];
    const a = h('a', { href: URL.createObjectURL(new Blob([lines.join('\r\n') + '\r\n'], { type: 'text/csv' })), download: 'suppressions.csv' });
    document.body.append(a); a.click(); a.remove();
  });

  clear(main, h('h1', {}, 'Suppressions'),
    section('Find', search),
    section('Suppressed addresses', table([
      ['Address', s => h('span', { class: 'mono' }, s.address)],
      ['Reason', s => s.reason],
      ['Detail', s => h('span', { class: 'wrap' }, text(s.detail?.note ?? s.detail?.text ?? s.detail?.reply?.text ?? s.detail))],
      ['Since', s => when(s.created_at)],
      ['', s => action('Remove', async () => { await del(`/v1/suppressions/${enc(s.address)}${qs({ tenant: tq })}`); toast(`Removed ${s.address}`); ctx.refresh(); }, { class: 'danger', 'aria-label': `Remove ${s.address}` })],
    ], rows, { class: 'suppressions', empty: lookup ? `${lookup} is not suppressed.` : 'No suppressed addresses.' }),
    next ? h('a', { class: 'button', href: `#/suppressions${qs({ after: next })}` }, 'Next page') : null),
    section('Add', add),
    section('Import and export', importForm, h('p', {}, exportButton)));
}

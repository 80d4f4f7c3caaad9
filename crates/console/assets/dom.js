// DOM helpers: elements are built with h(), text always goes in as text nodes (never
// innerHTML), so nothing the API returns can become markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;
/** A labelled form control: <label for> + input/select/textarea. */
export function field(label, control, hint) {
  if (!control.id) control.id = `f${++ids}`;
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control,
    hint ? h('small', { class: 'muted' }, hint) : null);
}

export function input(name, attrs = {}) {
  return h('input', { name, type: 'text', ...attrs });
}

export function select(name, options, value) {
  return h('select', { name },
    options.map(o => {
      const [v, t] = Array.isArray(o) ? o : [o, o];
      return h('option', { value: v, selected: v === value }, t);
    }));
}

/** A table; columns are [header, row => cell content]. */
export function table(columns, rows, opts = {}) {
  if (!rows.length) return h('p', { class: 'muted empty' }, opts.empty || 'Nothing here yet.');
  return h('div', { class: 'table-wrap' }, h('table', { class: opts.class || '' },
    opts.caption ? h('caption', {}, opts.caption) : null,
    h('thead', {}, h('tr', {}, columns.map(([t]) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.map(r => h('tr', {}, columns.map(([t, f]) => h('td', { 'data-label': t }, f(r))))))));
}

export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...children);
}

export function button(text, onClick, attrs = {}) {
  return h('button', { type: 'button', ...attrs, on: { click: onClick } }, text);
}

/** Runs `fn` with the button disabled; a failure becomes a toast. */
export function action(text, fn, attrs = {}) {
  const b = button(text, async () => {
    b.disabled = true;
    try { await fn(); } catch (e) { toast(e.message, 'error'); } finally { b.disabled = false; }
  }, attrs);
  return b;
}

export function toast(message, kind = 'info') {
  const t = document.getElementById('toast');
  const item = h('div', { class: `toast ${kind}` }, message);
  t.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 8000 : 4000);
}

export function errorBox(err) {
  return h('div', { class: 'notice error', role: 'alert' }, err.message || String(err));
}

/** Form values as an object (empty strings left out). */
export function values(form) {
  const out = {};
  for (const [k, v] of new FormData(form)) if (v !== '') out[k] = v;
  return out;
}

export function link(href, text, attrs = {}) {
  return h('a', { href, ...attrs }, text);
}
